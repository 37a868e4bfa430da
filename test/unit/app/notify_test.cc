// systemd notify protocol: each Notifier call sends exactly the datagram systemd expects to a
// fake NOTIFY_SOCKET (an AF_UNIX datagram socket bound in a temp dir), and nothing at all is
// sent, without error, when NOTIFY_SOCKET is unset. WatchdogInterval follows WATCHDOG_USEC
// and WATCHDOG_PID like sd_watchdog_enabled.
#include "app/notify.h"

#include <doctest/doctest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>

namespace klined {
namespace {

// A bound datagram socket standing in for systemd; sets NOTIFY_SOCKET while it lives.
class FakeNotifySocket {
 public:
  FakeNotifySocket() {
    char tmpl[] = "/tmp/klined-notify-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/notify.sock";
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
    REQUIRE(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    setenv("NOTIFY_SOCKET", path_.c_str(), 1);
  }
  ~FakeNotifySocket() {
    unsetenv("NOTIFY_SOCKET");
    close(fd_);
    std::filesystem::remove_all(dir_);
  }

  // The next datagram, or nullopt if none arrives within timeout_ms.
  std::optional<std::string> Receive(int timeout_ms = 1000) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) != 1) return std::nullopt;
    char buf[4096];
    const ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n < 0) return std::nullopt;
    return std::string(buf, static_cast<size_t>(n));
  }

 private:
  std::string dir_, path_;
  int fd_ = -1;
};

TEST_CASE("notify: each call sends its exact datagram") {
  FakeNotifySocket sock;
  Notifier n;
  CHECK(Notifier::Enabled());

  CHECK(n.Ready());
  CHECK(sock.Receive() == "READY=1");
  CHECK(n.Ready("consuming trades"));
  CHECK(sock.Receive() == "READY=1\nSTATUS=consuming trades");
  CHECK(n.Status("waiting for redis:\nconnection refused"));
  CHECK(sock.Receive() == "STATUS=waiting for redis: connection refused");
  CHECK(n.Stopping());
  CHECK(sock.Receive() == "STOPPING=1");
  CHECK(n.Watchdog());
  CHECK(sock.Receive() == "WATCHDOG=1");
  CHECK(n.ReadyAfterReload("reloaded"));
  CHECK(sock.Receive() == "READY=1\nSTATUS=reloaded");

  CHECK(n.Reloading());
  const std::optional<std::string> r = sock.Receive();
  REQUIRE(r.has_value());
  const std::string prefix = "RELOADING=1\nMONOTONIC_USEC=";
  REQUIRE(r->rfind(prefix, 0) == 0);
  const std::string usec = r->substr(prefix.size());
  CHECK(!usec.empty());
  CHECK(usec.find_first_not_of("0123456789") == std::string::npos);
  CHECK(std::stoull(usec) > 0);

  CHECK(!sock.Receive(50).has_value());  // nothing else was sent
}

TEST_CASE("notify: without NOTIFY_SOCKET every call is a successful no-op") {
  unsetenv("NOTIFY_SOCKET");
  Notifier n;
  CHECK(!Notifier::Enabled());
  CHECK(n.Ready("x"));
  CHECK(n.Status("x"));
  CHECK(n.Reloading());
  CHECK(n.Stopping());
  CHECK(n.Watchdog());
}

TEST_CASE("notify: a socket nobody listens on is reported, not fatal") {
  setenv("NOTIFY_SOCKET", "/nonexistent-klined-dir/notify.sock", 1);
  Notifier n;
  CHECK(!n.Ready());
  unsetenv("NOTIFY_SOCKET");
}

TEST_CASE("notify: WatchdogInterval follows WATCHDOG_USEC and WATCHDOG_PID") {
  unsetenv("WATCHDOG_PID");
  unsetenv("WATCHDOG_USEC");
  CHECK(Notifier::WatchdogInterval().count() == 0);

  setenv("WATCHDOG_USEC", "2000000", 1);
  CHECK(Notifier::WatchdogInterval().count() == 2000000);

  setenv("WATCHDOG_PID", std::to_string(getpid()).c_str(), 1);
  CHECK(Notifier::WatchdogInterval().count() == 2000000);

  // Meant for another process (e.g. inherited from a parent): off for us.
  setenv("WATCHDOG_PID", std::to_string(getpid() + 1).c_str(), 1);
  CHECK(Notifier::WatchdogInterval().count() == 0);

  setenv("WATCHDOG_PID", std::to_string(getpid()).c_str(), 1);
  setenv("WATCHDOG_USEC", "not-a-number", 1);
  CHECK(Notifier::WatchdogInterval().count() == 0);

  unsetenv("WATCHDOG_PID");
  unsetenv("WATCHDOG_USEC");
}

}  // namespace
}  // namespace klined
