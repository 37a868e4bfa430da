// Leveled, one-line, key=value logging to stderr (journald picks it up).
//
// LOG(kInfo, "event.name", "key=" << v << " other=" << w);
// LOG_RATE(...) is for hot paths: each call site logs at most log.rate_limit_per_s lines a
// second and reports how many it suppressed. Thread-safe; never a line per trade.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <sstream>
#include <string_view>

namespace klined {

enum class LogLevel : uint8_t { kDebug, kInfo, kWarn, kError };

std::optional<LogLevel> ParseLogLevel(std::string_view s);
void SetLogLevel(LogLevel level);
void SetLogRateLimit(uint32_t lines_per_second);
bool LogEnabled(LogLevel level);
void LogLine(LogLevel level, std::string_view event, std::string_view fields);

// Per-call-site limiter: a one-second window with an atomic counter.
class LogRateLimiter {
 public:
  // True if this line may be written; *suppressed gets the count dropped since the last one.
  bool Allow(uint64_t* suppressed);

 private:
  std::atomic<int64_t> window_{0};
  std::atomic<uint32_t> count_{0};
  std::atomic<uint64_t> suppressed_{0};
};

}  // namespace klined

#define KLINED_LOG_IMPL(level, event, fields, extra)                           \
  do {                                                                         \
    std::ostringstream klined_log_os_;                                         \
    klined_log_os_ << fields extra;                                            \
    ::klined::LogLine(::klined::LogLevel::level, event, klined_log_os_.str()); \
  } while (0)

#define LOG(level, event, fields)                          \
  do {                                                     \
    if (::klined::LogEnabled(::klined::LogLevel::level)) { \
      KLINED_LOG_IMPL(level, event, fields, );             \
    }                                                      \
  } while (0)

#define LOG_RATE(level, event, fields)                                                    \
  do {                                                                                    \
    static ::klined::LogRateLimiter klined_log_rl_;                                       \
    uint64_t klined_log_suppressed_ = 0;                                                  \
    if (::klined::LogEnabled(::klined::LogLevel::level) &&                                \
        klined_log_rl_.Allow(&klined_log_suppressed_)) {                                  \
      KLINED_LOG_IMPL(level, event, fields, << " suppressed=" << klined_log_suppressed_); \
    }                                                                                     \
  } while (0)
