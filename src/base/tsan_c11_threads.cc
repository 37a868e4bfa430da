// ThreadSanitizer builds only (meson: b_sanitize=thread): C11 threads on top of pthreads.
//
// Debian's librdkafka is built on C11 threads (thrd_create, mtx_lock, cnd_wait ...). glibc
// implements those on its internal pthread functions, which ThreadSanitizer does not intercept:
// a thread made by thrd_create is unknown to it and crashes at its first malloc, and locks
// taken through mtx_lock are invisible to it. These definitions, linked into every executable
// of a TSan build, take the place of glibc's (the executable's symbols win over a shared
// library's) and forward to the intercepted pthread functions. On glibc thrd_t is pthread_t,
// and mtx_t / cnd_t / tss_t are pthread_mutex_t / pthread_cond_t / pthread_key_t in size and
// layout, so the casts are exact.
#include <errno.h>
#include <pthread.h>
#include <threads.h>

#include <cstdint>
#include <new>

static_assert(sizeof(mtx_t) == sizeof(pthread_mutex_t));
static_assert(sizeof(cnd_t) == sizeof(pthread_cond_t));
static_assert(sizeof(thrd_t) == sizeof(pthread_t));

namespace {

int Result(int rc) {
  switch (rc) {
    case 0:
      return thrd_success;
    case ENOMEM:
      return thrd_nomem;
    case ETIMEDOUT:
      return thrd_timedout;
    case EBUSY:
      return thrd_busy;
    default:
      return thrd_error;
  }
}

pthread_mutex_t* M(mtx_t* m) { return reinterpret_cast<pthread_mutex_t*>(m); }
pthread_cond_t* C(cnd_t* c) { return reinterpret_cast<pthread_cond_t*>(c); }

struct Start {
  thrd_start_t func;
  void* arg;
};

void* Trampoline(void* p) {
  const Start s = *static_cast<Start*>(p);
  delete static_cast<Start*>(p);
  return reinterpret_cast<void*>(static_cast<intptr_t>(s.func(s.arg)));
}

}  // namespace

extern "C" {

int thrd_create(thrd_t* thr, thrd_start_t func, void* arg) {
  auto* s = new (std::nothrow) Start{func, arg};
  if (s == nullptr) return thrd_nomem;
  const int rc = pthread_create(thr, nullptr, Trampoline, s);
  if (rc != 0) delete s;
  return Result(rc);
}

int thrd_join(thrd_t thr, int* res) {
  void* out = nullptr;
  const int rc = pthread_join(thr, &out);
  if (rc == 0 && res != nullptr) *res = static_cast<int>(reinterpret_cast<intptr_t>(out));
  return Result(rc);
}

int thrd_detach(thrd_t thr) { return Result(pthread_detach(thr)); }

int mtx_init(mtx_t* m, int type) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  if ((type & mtx_recursive) != 0) pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
  const int rc = pthread_mutex_init(M(m), &a);
  pthread_mutexattr_destroy(&a);
  return Result(rc);
}

int mtx_lock(mtx_t* m) { return Result(pthread_mutex_lock(M(m))); }
int mtx_trylock(mtx_t* m) { return Result(pthread_mutex_trylock(M(m))); }
int mtx_timedlock(mtx_t* m, const struct timespec* ts) {
  return Result(pthread_mutex_timedlock(M(m), ts));
}
int mtx_unlock(mtx_t* m) { return Result(pthread_mutex_unlock(M(m))); }
void mtx_destroy(mtx_t* m) { pthread_mutex_destroy(M(m)); }

int cnd_init(cnd_t* c) { return Result(pthread_cond_init(C(c), nullptr)); }
int cnd_signal(cnd_t* c) { return Result(pthread_cond_signal(C(c))); }
int cnd_broadcast(cnd_t* c) { return Result(pthread_cond_broadcast(C(c))); }
int cnd_wait(cnd_t* c, mtx_t* m) { return Result(pthread_cond_wait(C(c), M(m))); }
int cnd_timedwait(cnd_t* c, mtx_t* m, const struct timespec* ts) {
  return Result(pthread_cond_timedwait(C(c), M(m), ts));
}
void cnd_destroy(cnd_t* c) { pthread_cond_destroy(C(c)); }

int tss_create(tss_t* key, tss_dtor_t dtor) {
  return Result(pthread_key_create(reinterpret_cast<pthread_key_t*>(key), dtor));
}
void* tss_get(tss_t key) { return pthread_getspecific(static_cast<pthread_key_t>(key)); }
int tss_set(tss_t key, void* v) {
  return Result(pthread_setspecific(static_cast<pthread_key_t>(key), v));
}
void tss_delete(tss_t key) { pthread_key_delete(static_cast<pthread_key_t>(key)); }

void call_once(once_flag* flag, void (*func)(void)) {
  static_assert(sizeof(once_flag) == sizeof(pthread_once_t));
  pthread_once(reinterpret_cast<pthread_once_t*>(flag), func);
}

}  // extern "C"
