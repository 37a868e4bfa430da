// systemd's notify protocol (sd_notify) for Type=notify services.
//
// DESIGN
// A thin wrapper over libsystemd's sd_notify: each call sends one datagram of
// newline-separated KEY=VALUE assignments to $NOTIFY_SOCKET. When NOTIFY_SOCKET is unset (not
// under systemd, or a test) every call is a no-op that reports success. The environment is
// read on every call (sd_notify does that), so a test can set it before the first call.
// Threads: only the control thread calls this. sd_notify does not block beyond one sendmsg()
// on a datagram socket; a failure is logged (rate-limited) and otherwise ignored: systemd
// notices a missing READY=1 or WATCHDOG=1 by itself.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

namespace klined {

class Notifier {
 public:
  // Sends READY=1 (and STATUS= if status is not empty): startup is complete.
  bool Ready(std::string_view status = {});
  // STATUS=text: a one-line human status shown by `systemctl status`. Newlines are replaced.
  bool Status(std::string_view text);
  // RELOADING=1 with MONOTONIC_USEC=now (systemd >= 253 requires it for Type=notify-reload;
  // older versions ignore it): a SIGHUP reload started.
  bool Reloading();
  // READY=1 after a reload (plus STATUS= if not empty): the reload is finished.
  bool ReadyAfterReload(std::string_view status = {});
  // STOPPING=1: the drain began.
  bool Stopping();
  // WATCHDOG=1: keep-alive ping; send it only when the service proved it is alive.
  bool Watchdog();
  // The watchdog timeout systemd expects pings within (WatchdogSec=, via WATCHDOG_USEC and
  // WATCHDOG_PID), or zero when the watchdog is off. Ping at half of it.
  static std::chrono::microseconds WatchdogInterval();
  // True when $NOTIFY_SOCKET is set.
  static bool Enabled();

  // Sends `state` as it is (several assignments separated by '\n'). True on success or when
  // notification is off.
  bool Send(const std::string& state);
};

}  // namespace klined
