// WebSocket framing (RFC 6455) for the server side of the stream sessions, after the handshake.
//
// DESIGN
// Beast does the upgrade handshake; the frames after it are ours, because Beast writes one
// message per operation (one send system call per frame), and a stream session writes every
// frame queued for its client in one send: on loopback a send costs ~10 us of the API thread
// whatever its size, so with 3 streams per client that is a third of the cost, and far less
// for a client whose queue filled up. Reads are ours for the same reason: Beast's read answers
// a ping with a pong and a close with a close on the socket on its own, which would interleave
// with our writes.
//
// Server frames are unmasked and unfragmented (AppendFrame). Client frames (FrameReader) must
// be masked; fragmented messages are reassembled; control frames (ping, pong, close) may come
// between the fragments of a message. A protocol violation, a message past the size limit and
// a text message that is not UTF-8 end the connection with the close code RFC 6455 names
// (1002, 1009, 1007).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace klined::api {

enum class WsOpcode : uint8_t {
  kContinuation = 0x0,
  kText = 0x1,
  kBinary = 0x2,
  kClose = 0x8,
  kPing = 0x9,
  kPong = 0xA,
};

// Close codes used here.
inline constexpr uint16_t kWsCloseNormal = 1000;
inline constexpr uint16_t kWsCloseProtocol = 1002;
inline constexpr uint16_t kWsCloseBadData = 1007;
inline constexpr uint16_t kWsCloseTooBig = 1009;

// Appends one unmasked, final frame.
void AppendFrame(std::string* out, WsOpcode op, std::string_view payload);
// A close frame's payload: the code (big endian) and a reason (at most 123 bytes).
std::string ClosePayload(uint16_t code, std::string_view reason);

bool IsUtf8(std::string_view s);

// One thing the client sent.
struct WsInbound {
  enum Kind : uint8_t {
    kNone,    // nothing complete yet: read more
    kText,    // a whole text message
    kBinary,  // a whole binary message
    kPing,    // payload: answer with a pong carrying it
    kPong,
    kClose,   // close_code: the client's (1005 when it gave none)
    kFail,    // the connection must end: close_code and payload (the reason)
  };
  Kind kind = kNone;
  uint16_t close_code = 0;
  std::string payload;
};

// Reassembles the client's frames from the bytes read. Holds at most one frame in progress
// (bounded by the message limit) and the fragments of one message.
class FrameReader {
 public:
  explicit FrameReader(size_t max_message) : max_message_(max_message) {}

  void Feed(const char* data, size_t n) { buf_.append(data, n); }
  // The next complete thing in what was fed; kNone when more bytes are needed. After kFail
  // or kClose every call returns kNone.
  WsInbound Next();

  // Bytes held (fed and not yet consumed, plus a message's fragments so far).
  size_t held() const { return buf_.size() - pos_ + message_.size(); }

 private:
  WsInbound Fail(uint16_t code, std::string reason);

  size_t max_message_;
  std::string buf_;
  size_t pos_ = 0;            // start of the first unconsumed byte of buf_
  std::string message_;       // fragments of the message in progress
  bool in_message_ = false;   // a first fragment came; continuations follow
  bool message_text_ = false;
  bool done_ = false;  // failed or closed
};

}  // namespace klined::api
