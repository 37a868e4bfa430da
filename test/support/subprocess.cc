#include "subprocess.h"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "temp_dir.h"

extern char** environ;

namespace klined::test {
namespace {

// Process groups of live children, readable from signal handlers: fixed slots of
// lock-free atomics, 0 = free.
constexpr int kMaxChildren = 256;
std::atomic<pid_t> g_groups[kMaxChildren];

void RegisterGroup(pid_t pgid) {
  for (auto& slot : g_groups) {
    pid_t expected = 0;
    if (slot.compare_exchange_strong(expected, pgid)) return;
  }
  // Full: the destructor and PDEATHSIG still clean up; only signal-time cleanup is lost.
}

void UnregisterGroup(pid_t pgid) {
  for (auto& slot : g_groups) {
    pid_t expected = pgid;
    if (slot.compare_exchange_strong(expected, 0)) return;
  }
}

// Async-signal-safe: kill(2) and atomic loads only.
void KillAllGroups() {
  for (auto& slot : g_groups) {
    pid_t g = slot.load();
    if (g > 0) kill(-g, SIGKILL);
  }
}

constexpr int kCleanupSignals[] = {SIGINT,  SIGTERM, SIGHUP, SIGQUIT, SIGSEGV,
                                   SIGABRT, SIGBUS,  SIGFPE, SIGILL};
struct sigaction g_previous[sizeof(kCleanupSignals) / sizeof(kCleanupSignals[0])];

void OnFatalSignal(int sig) {
  KillAllGroups();
  // Restore whatever was there before us and let it see the signal once we return
  // (a synchronous fault re-triggers; an asynchronous one stays pending).
  for (size_t i = 0; i < sizeof(kCleanupSignals) / sizeof(kCleanupSignals[0]); ++i) {
    if (kCleanupSignals[i] == sig) sigaction(sig, &g_previous[i], nullptr);
  }
  raise(sig);
}

// Installed during static initialisation, i.e. before doctest installs its own
// crash handlers, which then chain to these.
struct CleanupInstaller {
  CleanupInstaller() {
    std::atexit(KillAllGroups);
    for (size_t i = 0; i < sizeof(kCleanupSignals) / sizeof(kCleanupSignals[0]); ++i) {
      struct sigaction sa {};
      sa.sa_handler = OnFatalSignal;
      sigemptyset(&sa.sa_mask);
      sigaction(kCleanupSignals[i], &sa, &g_previous[i]);
    }
  }
} g_cleanup_installer;

std::filesystem::path UniqueLogPath(const std::filesystem::path& dir, const std::string& base,
                                    const std::string& ext) {
  std::filesystem::path p = dir / (base + ext);
  for (int i = 1; std::filesystem::exists(p); ++i) {
    p = dir / (base + "." + std::to_string(i) + ext);
  }
  return p;
}

int OpenLog(const std::filesystem::path& p) {
  int fd = open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "open " + p.string());
  return fd;
}

}  // namespace

bool ExitStatus::Exited() const { return WIFEXITED(raw); }
int ExitStatus::Code() const { return WIFEXITED(raw) ? WEXITSTATUS(raw) : -1; }
bool ExitStatus::Signaled() const { return WIFSIGNALED(raw); }
int ExitStatus::Signal() const { return WIFSIGNALED(raw) ? WTERMSIG(raw) : 0; }
std::string ExitStatus::Describe() const {
  if (Exited()) return "exited with code " + std::to_string(Code());
  if (Signaled()) return std::string("killed by signal ") + strsignal(Signal());
  return "status " + std::to_string(raw);
}

std::string FindBinary(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    if (access(name.c_str(), X_OK) == 0) return name;
    throw std::runtime_error("not executable: " + name);
  }
  std::string path = std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin";
  path += ":/usr/sbin:/sbin:/usr/local/sbin";
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(start, end - start);
    if (!dir.empty()) {
      std::string candidate = dir + "/" + name;
      if (access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    start = end + 1;
  }
  throw std::runtime_error("binary not found in PATH, /usr/sbin or /sbin: " + name);
}

Subprocess::Subprocess(const std::string& binary, std::vector<std::string> args,
                       SubprocessOptions options)
    : name_(options.name.empty() ? std::filesystem::path(binary).filename().string()
                                 : options.name) {
  const std::string exe = FindBinary(binary);
  std::filesystem::path dir = options.log_dir.empty() ? "." : options.log_dir;
  stdout_path_ = UniqueLogPath(dir, name_, ".stdout");
  stderr_path_ = UniqueLogPath(dir, name_, ".stderr");

  // Everything the child needs is prepared before fork: after fork in a
  // multithreaded parent only async-signal-safe calls are allowed.
  std::vector<std::string> argv_s;
  argv_s.push_back(exe);
  for (auto& a : args) argv_s.push_back(std::move(a));
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::vector<std::string> env_s;
  for (char** e = environ; *e; ++e) {
    std::string_view kv = *e;
    std::string_view key = kv.substr(0, kv.find('='));
    bool overridden = false;
    for (const auto& o : options.env) {
      if (std::string_view(o).substr(0, o.find('=')) == key) overridden = true;
    }
    if (!overridden) env_s.emplace_back(kv);
  }
  for (const auto& o : options.env) env_s.push_back(o);
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);

  int out_fd = OpenLog(stdout_path_);
  int err_fd = OpenLog(stderr_path_);
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int status_pipe[2];  // child writes errno here if exec fails; EOF = exec succeeded
  if (null_fd < 0 || pipe2(status_pipe, O_CLOEXEC) != 0) {
    int e = errno;
    close(out_fd);
    close(err_fd);
    if (null_fd >= 0) close(null_fd);
    throw std::system_error(e, std::generic_category(), "spawn " + name_);
  }
  const char* cwd = options.cwd.empty() ? nullptr : options.cwd.c_str();
  const pid_t parent = getpid();

  pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // parent died before prctl took effect
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGPIPE, SIG_DFL);  // ignored dispositions survive exec; handlers do not
    int err = 0;
    if (cwd && chdir(cwd) != 0) err = errno;
    if (!err && (dup2(null_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)) err = errno;
    if (!err) {
      syscall(SYS_close_range, 3u, ~0u, 0x4u /* CLOSE_RANGE_CLOEXEC */);
      execve(exe.c_str(), argv.data(), envp.data());
      err = errno;
    }
    ssize_t ignored = write(status_pipe[1], &err, sizeof(err));
    (void)ignored;
    _exit(127);
  }
  int fork_errno = errno;
  close(out_fd);
  close(err_fd);
  close(null_fd);
  close(status_pipe[1]);
  if (pid < 0) {
    close(status_pipe[0]);
    throw std::system_error(fork_errno, std::generic_category(), "fork " + name_);
  }
  setpgid(pid, pid);  // also here, so the group exists before we signal it
  pid_ = pid;
  RegisterGroup(pid_);

  int child_err = 0;
  ssize_t n;
  do {
    n = read(status_pipe[0], &child_err, sizeof(child_err));
  } while (n < 0 && errno == EINTR);
  close(status_pipe[0]);
  if (n > 0) {
    KillAndReap();
    throw std::system_error(child_err, std::generic_category(), "exec " + exe);
  }
}

Subprocess::~Subprocess() { KillAndReap(); }

Subprocess::Subprocess(Subprocess&& other) noexcept
    : name_(std::move(other.name_)),
      pid_(other.pid_),
      status_(other.status_),
      stdout_path_(std::move(other.stdout_path_)),
      stderr_path_(std::move(other.stderr_path_)) {
  other.pid_ = -1;
}

Subprocess& Subprocess::operator=(Subprocess&& other) noexcept {
  if (this != &other) {
    KillAndReap();
    name_ = std::move(other.name_);
    pid_ = other.pid_;
    status_ = other.status_;
    stdout_path_ = std::move(other.stdout_path_);
    stderr_path_ = std::move(other.stderr_path_);
    other.pid_ = -1;
  }
  return *this;
}

void Subprocess::KillAndReap() {
  if (pid_ <= 0 || status_) return;
  kill(-pid_, SIGKILL);
  int st = 0;
  while (waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
  }
  status_ = ExitStatus{st};
  UnregisterGroup(pid_);
}

void Subprocess::Signal(int sig) {
  if (pid_ > 0 && !status_) kill(-pid_, sig);
}

std::optional<ExitStatus> Subprocess::Wait(milliseconds timeout) {
  if (pid_ <= 0 || status_) return status_;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto nap = std::chrono::microseconds(500);
  for (;;) {
    int st = 0;
    pid_t r = waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      status_ = ExitStatus{st};
      kill(-pid_, SIGKILL);  // stragglers in the group (e.g. redis' fork children)
      UnregisterGroup(pid_);
      return status_;
    }
    if (r < 0 && errno != EINTR) throw std::system_error(errno, std::generic_category(), "waitpid");
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(nap);
    nap = std::min<std::chrono::microseconds>(nap * 2, std::chrono::milliseconds(20));
  }
}

ExitStatus Subprocess::Stop(milliseconds grace) {
  Terminate();
  if (auto st = Wait(grace)) return *st;
  KillAndReap();
  return *status_;
}

bool Subprocess::Running() { return pid_ > 0 && !Wait(milliseconds(0)); }

std::optional<std::string> Subprocess::WaitForLine(std::string_view prefix, milliseconds timeout,
                                                   Stream stream) {
  const auto& path = stream == Stream::kStdout ? stdout_path_ : stderr_path_;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    // Check liveness first so output written just before exit is still seen.
    bool alive = Running();
    std::string text = ReadFile(path);
    size_t pos = 0;
    while (pos < text.size()) {
      size_t nl = text.find('\n', pos);
      if (nl == std::string::npos) break;  // incomplete line: wait for the rest
      std::string_view line(text.data() + pos, nl - pos);
      if (line.substr(0, prefix.size()) == prefix) return std::string(line);
      pos = nl + 1;
    }
    if (!alive || std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(milliseconds(5));
  }
}

std::string Subprocess::Stdout() const { return ReadFile(stdout_path_); }
std::string Subprocess::Stderr() const { return ReadFile(stderr_path_); }

std::string Subprocess::OutputTail(size_t max_bytes) const {
  auto tail = [max_bytes](std::string s) {
    return s.size() > max_bytes ? "..." + s.substr(s.size() - max_bytes) : s;
  };
  std::string r = "--- " + name_ + " stderr (" + stderr_path_.string() + "):\n" + tail(Stderr());
  r += "\n--- " + name_ + " stdout (" + stdout_path_.string() + "):\n" + tail(Stdout());
  if (status_) r += "\n--- " + name_ + " " + status_->Describe();
  return r;
}

std::multimap<std::string, std::filesystem::path> ThreadsOf(pid_t pid) {
  std::multimap<std::string, std::filesystem::path> threads;
  for (const auto& task :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    std::getline(comm, name);
    threads.emplace(std::move(name), task.path());
  }
  return threads;
}

}  // namespace klined::test
