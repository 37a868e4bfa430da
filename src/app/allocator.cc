#include "app/allocator.h"

#include <cstdint>
#include <cstdlib>

#ifdef KLINED_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

namespace klined {
namespace {

std::string CheckAllocator() {
#ifdef KLINED_JEMALLOC
  uint64_t before = 0, after = 0;
  size_t len = sizeof before;
  if (mallctl("thread.allocated", &before, &len, nullptr, 0) != 0) return "system";
  // volatile: the compiler may otherwise pair and remove the malloc/free.
  void* volatile p = std::malloc(1 << 20);
  len = sizeof after;
  const int rc = mallctl("thread.allocated", &after, &len, nullptr, 0);
  std::free(p);
  if (rc != 0 || after - before < (1u << 20)) return "system";
  return std::string("jemalloc ") + JEMALLOC_VERSION;
#else
  return "system";
#endif
}

}  // namespace

const std::string& AllocatorName() {
  static const std::string name = CheckAllocator();
  return name;
}

}  // namespace klined
