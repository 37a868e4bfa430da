// Names the calling thread (at most 15 characters, as Linux allows), so `top -H`, perf and
// gdb tell klined's threads apart: consumer, shard-N, flush-N, timer, persist.
#pragma once

#include <pthread.h>

#include <string>

namespace klined {

inline void NameThisThread(std::string name) {
  if (name.size() > 15) name.resize(15);
  pthread_setname_np(pthread_self(), name.c_str());
}

}  // namespace klined
