// Small helpers the stack benches share (api_bench, e2e_bench, flush_bench, restart_bench,
// ws_bench): integer flags, percentiles, /proc/PID/status, argv commands to Redis.
#pragma once

#include <hiredis/hiredis.h>
#include <sys/types.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace klined::bench {

// "--name value" pairs of argv into the ints named; unknown names are ignored.
inline void IntFlags(int argc, char** argv,
                     const std::vector<std::pair<std::string, int*>>& flags) {
  for (int i = 1; i + 1 < argc; i += 2) {
    for (const auto& [name, value] : flags) {
      if (name == argv[i]) *value = std::atoi(argv[i + 1]);
    }
  }
}

// The p-quantile (0..1) of v by rank; 0 when v is empty.
inline double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

// A field of /proc/PID/status ("VmHWM" -> "123456 kB"), "?" when absent.
inline std::string ProcStatus(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field + ":", 0) == 0) {
      const size_t v = line.find_first_not_of(" \t", field.size() + 1);
      return v == std::string::npos ? "?" : line.substr(v);
    }
  }
  return "?";
}

// Queues one command, its arguments binary-safe, on c (redisGetReply reads its reply).
inline void AppendArgv(redisContext* c, const std::vector<std::string>& argv) {
  std::vector<const char*> a;
  std::vector<size_t> l;
  for (const std::string& s : argv) {
    a.push_back(s.data());
    l.push_back(s.size());
  }
  redisAppendCommandArgv(c, static_cast<int>(a.size()), a.data(), l.data());
}

// Sends `cmds` pipelined and reads every reply; a lost connection or an error reply ends
// the bench (`who` names it in the message).
inline void Pipeline(redisContext* c, const std::vector<std::vector<std::string>>& cmds,
                     const char* who) {
  for (const auto& argv : cmds) AppendArgv(c, argv);
  for (size_t i = 0; i < cmds.size(); ++i) {
    void* r = nullptr;
    if (redisGetReply(c, &r) != REDIS_OK) {
      std::fprintf(stderr, "%s: Redis connection lost\n", who);
      std::exit(1);
    }
    auto* rep = static_cast<redisReply*>(r);
    if (rep->type == REDIS_REPLY_ERROR) {
      std::fprintf(stderr, "%s: Redis: %s\n", who, rep->str);
      std::exit(1);
    }
    freeReplyObject(rep);
  }
}

}  // namespace klined::bench
