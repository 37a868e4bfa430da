#include "base/log.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>

namespace klined {
namespace {

std::atomic<uint8_t> g_level{static_cast<uint8_t>(LogLevel::kInfo)};
std::atomic<uint32_t> g_rate{10};

std::string_view LevelName(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

}  // namespace

std::optional<LogLevel> ParseLogLevel(std::string_view s) {
  for (LogLevel l : {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarn, LogLevel::kError}) {
    if (LevelName(l) == s) return l;
  }
  return std::nullopt;
}

void SetLogLevel(LogLevel level) { g_level.store(static_cast<uint8_t>(level)); }
void SetLogRateLimit(uint32_t lines_per_second) { g_rate.store(lines_per_second); }

bool LogEnabled(LogLevel level) {
  return static_cast<uint8_t>(level) >= g_level.load(std::memory_order_relaxed);
}

void LogLine(LogLevel level, std::string_view event, std::string_view fields) {
  const auto now = std::chrono::system_clock::now();
  const std::time_t secs = std::chrono::system_clock::to_time_t(now);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char ts[32];
  std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  std::string line;
  line.reserve(64 + event.size() + fields.size());
  line.append(ts).append(".");
  char msbuf[8];
  std::snprintf(msbuf, sizeof msbuf, "%03d", static_cast<int>(ms.count()));
  line.append(msbuf).append("Z level=").append(LevelName(level)).append(" event=").append(event);
  if (!fields.empty()) line.append(" ").append(fields);
  line.push_back('\n');
  // One write(2) per line keeps lines from different threads whole.
  [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, line.data(), line.size());
}

bool LogRateLimiter::Allow(uint64_t* suppressed) {
  const int64_t now_s = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::steady_clock::now().time_since_epoch())
                            .count();
  int64_t window = window_.load(std::memory_order_relaxed);
  if (window != now_s && window_.compare_exchange_strong(window, now_s)) {
    count_.store(0, std::memory_order_relaxed);
  }
  if (count_.fetch_add(1, std::memory_order_relaxed) >= g_rate.load(std::memory_order_relaxed)) {
    suppressed_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  *suppressed = suppressed_.exchange(0, std::memory_order_relaxed);
  return true;
}

}  // namespace klined
