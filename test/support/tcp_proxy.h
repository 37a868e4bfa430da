// A TCP proxy between klined and a real redis-server, for fault tests that need a reply to go
// missing at an exact point: after Redis ran the command, before klined read the answer.
//
// It listens on 127.0.0.1 (a free port) and forwards every connection to the target. Armed
// with LoseRepliesTo(pattern, n), it forwards the next n client writes that contain `pattern`
// as usual, swallows whatever the server answers, and once the server has been quiet for a
// moment (everything forwarded has run) closes both sides: the client sees its connection
// drop with the reply unread. SplitNext(pattern, between) forwards the first RESP command of
// the next client write that holds `pattern` and two or more whole commands, runs `between`
// (say, SCRIPT FLUSH on another connection), then forwards the rest: a pipeline whose later
// calls meet a Redis that lost its scripts.
// One thread runs the proxy (poll over every socket); the controls may be called from any.
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace klined::test {

class TcpProxy {
 public:
  TcpProxy(std::string target_host, int target_port);
  ~TcpProxy();
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  void LoseRepliesTo(std::string pattern, int n);
  void SplitNext(std::string pattern, std::function<void()> between);
  int replies_lost() const { return replies_lost_.load(); }
  int splits() const { return splits_.load(); }

 private:
  void Run();

  std::string host_;
  int target_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  int wake_[2] = {-1, -1};  // a pipe that wakes the poll loop to stop
  std::atomic<bool> stop_{false};
  std::atomic<int> replies_lost_{0};
  std::atomic<int> splits_{0};
  std::mutex mu_;  // guards the armed faults below
  std::string lose_pattern_;
  int lose_left_ = 0;
  std::string split_pattern_;
  std::function<void()> split_between_;
  std::thread thread_;
};

}  // namespace klined::test
