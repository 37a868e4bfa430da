// A WebSocket client for the tests (Boost.Beast): connect to 127.0.0.1:port at a target, send
// text or binary frames, read the text messages the server pushes, with timeouts. One thread
// of its own runs the I/O; every message received is queued until Read takes it.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

namespace klined::test {

class WsClient {
 public:
  WsClient();
  ~WsClient();
  WsClient(const WsClient&) = delete;
  WsClient& operator=(const WsClient&) = delete;

  // Connects and completes the handshake at `target` (e.g. "/ws", "/stream?streams=a/b").
  // False, with error() saying why, on any failure (the HTTP status of a refused upgrade too).
  bool Open(int port, const std::string& target);
  void Send(const std::string& text);
  void SendBinary(const std::string& data);
  // Bytes written as they are on the socket, after what was sent before (hand-made frames:
  // fragments, bad UTF-8, protocol violations).
  void SendRaw(const std::string& bytes);
  // A ping; pongs() counts the server's pongs.
  void Ping();
  int pongs() const;
  // Our close frame (code 1000); the server's close frame completes it (closed_cleanly).
  void Close();
  bool closed_cleanly() const;
  // The code of the server's close frame, once Closed (0: the server sent none).
  int close_code() const;
  // Stops reading: the server's messages queue up in its socket (a stalled client).
  void PauseReading();

  // The next text message, or nullopt when none arrived within timeout (or the connection
  // ended and everything received was read).
  std::optional<std::string> Read(std::chrono::milliseconds timeout);
  // True once the connection ended (the server closed it, or an error).
  bool Closed() const;
  std::string error() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace klined::test
