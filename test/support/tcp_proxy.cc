#include "tcp_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <vector>

namespace klined::test {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// The end of the RESP array command starting at `at`, or npos if it is not complete here.
size_t CommandEnd(std::string_view b, size_t at) {
  auto number = [&b](size_t* pos, char tag, long* out) {
    if (*pos >= b.size() || b[*pos] != tag) return false;
    const size_t eol = b.find("\r\n", *pos);
    if (eol == std::string_view::npos) return false;
    *out = std::strtol(std::string(b.substr(*pos + 1, eol - *pos - 1)).c_str(), nullptr, 10);
    *pos = eol + 2;
    return true;
  };
  size_t pos = at;
  long n = 0;
  if (!number(&pos, '*', &n)) return std::string_view::npos;
  for (long i = 0; i < n; ++i) {
    long len = 0;
    if (!number(&pos, '$', &len)) return std::string_view::npos;
    pos += static_cast<size_t>(len) + 2;
    if (pos > b.size()) return std::string_view::npos;
  }
  return pos;
}

int ConnectTo(const std::string& host, int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, host.c_str(), &a.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

}  // namespace

TcpProxy::TcpProxy(std::string target_host, int target_port)
    : host_(std::move(target_host)), target_port_(target_port) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = 0;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(listen_fd_, 64) != 0) {
    throw std::runtime_error("TcpProxy: cannot listen");
  }
  socklen_t len = sizeof a;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
  if (::pipe(wake_) != 0) throw std::runtime_error("TcpProxy: pipe");
  thread_ = std::thread([this] { Run(); });
}

TcpProxy::~TcpProxy() {
  stop_.store(true);
  const char c = 0;
  (void)!::write(wake_[1], &c, 1);
  if (thread_.joinable()) thread_.join();
  ::close(listen_fd_);
  ::close(wake_[0]);
  ::close(wake_[1]);
}

void TcpProxy::LoseRepliesTo(std::string pattern, int n) {
  std::lock_guard lock(mu_);
  lose_pattern_ = std::move(pattern);
  lose_left_ = n;
}

void TcpProxy::SplitNext(std::string pattern, std::function<void()> between) {
  std::lock_guard lock(mu_);
  split_pattern_ = std::move(pattern);
  split_between_ = std::move(between);
}

void TcpProxy::Run() {
  struct Pair {
    int client = -1;
    int server = -1;
    bool dropping = false;   // the server's answers are swallowed
    int64_t drop_at_ms = 0;  // ... and the pair is closed at this time
  };
  std::vector<Pair> pairs;
  std::vector<char> buf(1 << 16);
  auto close_pair = [](Pair& p) {
    if (p.client >= 0) ::close(p.client);
    if (p.server >= 0) ::close(p.server);
    p.client = p.server = -1;
  };
  while (!stop_.load()) {
    std::vector<pollfd> fds = {{wake_[0], POLLIN, 0}, {listen_fd_, POLLIN, 0}};
    for (const Pair& p : pairs) {
      fds.push_back({p.client, POLLIN, 0});
      fds.push_back({p.server, POLLIN, 0});
    }
    ::poll(fds.data(), fds.size(), 10);
    if (stop_.load()) break;
    const size_t polled = pairs.size();  // a pair accepted below is polled next time
    if (fds[1].revents & POLLIN) {
      const int c = ::accept(listen_fd_, nullptr, nullptr);
      if (c >= 0) {
        const int s = ConnectTo(host_, target_port_);
        if (s < 0) {
          ::close(c);
        } else {
          const int one = 1;
          ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          pairs.push_back({c, s, false, 0});
        }
      }
    }
    const int64_t now = NowMs();
    for (size_t i = 0; i < polled; ++i) {
      Pair& p = pairs[i];
      const short cev = fds[2 + 2 * i].revents;
      const short sev = fds[3 + 2 * i].revents;
      if (p.client < 0) continue;
      if (cev & (POLLIN | POLLHUP | POLLERR)) {
        const ssize_t n = ::recv(p.client, buf.data(), buf.size(), 0);
        if (n <= 0) {
          close_pair(p);
          continue;
        }
        const std::string_view data(buf.data(), static_cast<size_t>(n));
        std::function<void()> between;
        bool lose = false;
        size_t split_at = std::string_view::npos;
        {
          std::lock_guard lock(mu_);
          if (split_between_ && data.find(split_pattern_) != std::string_view::npos) {
            const size_t first = CommandEnd(data, 0);
            if (first != std::string_view::npos &&
                CommandEnd(data, first) != std::string_view::npos) {
              split_at = first;
              between = std::move(split_between_);
              split_between_ = nullptr;
            }
          }
          if (split_at == std::string_view::npos && lose_left_ > 0 &&
              data.find(lose_pattern_) != std::string_view::npos) {
            --lose_left_;
            lose = true;
          }
        }
        if (split_at != std::string_view::npos) {
          WriteAll(p.server, data.data(), split_at);
          // Let Redis run the first command before the other connection's command.
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
          between();
          ++splits_;
          WriteAll(p.server, data.data() + split_at, data.size() - split_at);
        } else if (!WriteAll(p.server, data.data(), data.size())) {
          close_pair(p);
          continue;
        }
        if (lose) {
          p.dropping = true;
          p.drop_at_ms = now + 300;
        }
      }
      if (p.server >= 0 && (sev & (POLLIN | POLLHUP | POLLERR))) {
        const ssize_t n = ::recv(p.server, buf.data(), buf.size(), 0);
        if (n <= 0) {
          close_pair(p);
          continue;
        }
        if (p.dropping) {
          p.drop_at_ms = now + 100;  // closed once the server has been quiet this long
        } else if (!WriteAll(p.client, buf.data(), static_cast<size_t>(n))) {
          close_pair(p);
          continue;
        }
      }
      if (p.dropping && now >= p.drop_at_ms) {
        close_pair(p);
        ++replies_lost_;
      }
    }
    std::erase_if(pairs, [](const Pair& p) { return p.client < 0; });
  }
  for (Pair& p : pairs) close_pair(p);
}

}  // namespace klined::test
