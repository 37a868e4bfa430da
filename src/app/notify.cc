#include "app/notify.h"

#include <systemd/sd-daemon.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "base/log.h"

namespace klined {
namespace {

// One line: systemd shows STATUS= verbatim, and a newline would start another assignment.
std::string OneLine(std::string_view text) {
  std::string s(text);
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

uint64_t MonotonicUsec() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
}

}  // namespace

bool Notifier::Send(const std::string& state) {
  const int r = sd_notify(0, state.c_str());
  if (r < 0) {
    LOG_RATE(kWarn, "notify.failed",
             "error=\"" << std::strerror(-r) << "\" socket=\""
                        << (std::getenv("NOTIFY_SOCKET") ? std::getenv("NOTIFY_SOCKET") : "")
                        << "\"");
    return false;
  }
  return true;
}

bool Notifier::Ready(std::string_view status) {
  return Send(status.empty() ? "READY=1" : "READY=1\nSTATUS=" + OneLine(status));
}

bool Notifier::Status(std::string_view text) { return Send("STATUS=" + OneLine(text)); }

bool Notifier::Reloading() {
  return Send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(MonotonicUsec()));
}

bool Notifier::ReadyAfterReload(std::string_view status) { return Ready(status); }

bool Notifier::Stopping() { return Send("STOPPING=1"); }

bool Notifier::Watchdog() { return Send("WATCHDOG=1"); }

std::chrono::microseconds Notifier::WatchdogInterval() {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) <= 0) return std::chrono::microseconds(0);
  return std::chrono::microseconds(usec);
}

bool Notifier::Enabled() {
  const char* s = std::getenv("NOTIFY_SOCKET");
  return s != nullptr && *s != '\0';
}

}  // namespace klined
