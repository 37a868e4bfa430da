// WebSocket framing; see ws_frame.h.
#include "api/ws_frame.h"

#include <algorithm>

namespace klined::api {

namespace {

uint64_t BigEndian(const std::string& b, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<uint8_t>(b[at + i]);
  return v;
}

bool ValidCloseCode(uint64_t c) {
  return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1011) || (c >= 3000 && c <= 4999);
}

}  // namespace

void AppendFrame(std::string* out, WsOpcode op, std::string_view payload) {
  out->push_back(static_cast<char>(0x80 | static_cast<uint8_t>(op)));
  const size_t n = payload.size();
  if (n < 126) {
    out->push_back(static_cast<char>(n));
  } else if (n <= 0xFFFF) {
    out->push_back(static_cast<char>(126));
    out->push_back(static_cast<char>(n >> 8));
    out->push_back(static_cast<char>(n & 0xFF));
  } else {
    out->push_back(static_cast<char>(127));
    for (int shift = 56; shift >= 0; shift -= 8) {
      out->push_back(static_cast<char>((static_cast<uint64_t>(n) >> shift) & 0xFF));
    }
  }
  out->append(payload);
}

std::string ClosePayload(uint16_t code, std::string_view reason) {
  std::string p;
  p.push_back(static_cast<char>(code >> 8));
  p.push_back(static_cast<char>(code & 0xFF));
  p.append(reason.substr(0, 123));
  return p;
}

bool IsUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<uint8_t>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    int more = 0;
    uint32_t cp = 0, min = 0;
    if ((c & 0xE0) == 0xC0) {
      more = 1, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      more = 2, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      more = 3, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (i + more >= s.size()) return false;  // truncated
    for (int k = 1; k <= more; ++k) {
      const auto cc = static_cast<uint8_t>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // No overlong forms, no surrogates, nothing past U+10FFFF.
    if (cp < min || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return false;
    i += more + 1;
  }
  return true;
}

WsInbound FrameReader::Fail(uint16_t code, std::string reason) {
  done_ = true;
  buf_.clear();
  message_.clear();
  WsInbound out;
  out.kind = WsInbound::kFail;
  out.close_code = code;
  out.payload = std::move(reason);
  return out;
}

WsInbound FrameReader::Next() {
  while (!done_) {
    if (pos_ == buf_.size()) {
      // Everything consumed: give a large buffer back (a session holds few bytes at rest).
      if (buf_.capacity() > 1024) {
        std::string().swap(buf_);
      } else {
        buf_.clear();
      }
      pos_ = 0;
      return {};
    }
    const size_t avail = buf_.size() - pos_;
    if (avail < 2) break;
    const auto b0 = static_cast<uint8_t>(buf_[pos_]);
    const auto b1 = static_cast<uint8_t>(buf_[pos_ + 1]);
    const bool fin = (b0 & 0x80) != 0;
    const uint8_t op = b0 & 0x0F;
    if ((b0 & 0x70) != 0) return Fail(kWsCloseProtocol, "reserved bits set");
    if ((b1 & 0x80) == 0) return Fail(kWsCloseProtocol, "client frame not masked");
    size_t header = 2;
    uint64_t len = b1 & 0x7F;
    if (len == 126) {
      if (avail < 4) break;
      len = BigEndian(buf_, pos_ + 2, 2);
      header = 4;
    } else if (len == 127) {
      if (avail < 10) break;
      len = BigEndian(buf_, pos_ + 2, 8);
      header = 10;
      if ((len >> 63) != 0) return Fail(kWsCloseProtocol, "bad frame length");
    }
    header += 4;  // the mask
    const bool control = (op & 0x8) != 0;
    if (control) {
      if (op != 0x8 && op != 0x9 && op != 0xA) return Fail(kWsCloseProtocol, "unknown opcode");
      if (!fin) return Fail(kWsCloseProtocol, "fragmented control frame");
      if (len > 125) return Fail(kWsCloseProtocol, "control frame too long");
    } else {
      if (op > 0x2) return Fail(kWsCloseProtocol, "unknown opcode");
      if (op == 0x0 && !in_message_) return Fail(kWsCloseProtocol, "continuation of nothing");
      if (op != 0x0 && in_message_) return Fail(kWsCloseProtocol, "message inside a message");
      if (len > max_message_ - message_.size()) return Fail(kWsCloseTooBig, "message too big");
    }
    if (avail < header + len) break;  // bounded: len is at most the message limit here
    const size_t mask_at = pos_ + header - 4;
    std::string payload(static_cast<size_t>(len), '\0');
    for (size_t i = 0; i < payload.size(); ++i) {
      payload[i] = static_cast<char>(buf_[pos_ + header + i] ^ buf_[mask_at + (i & 3)]);
    }
    pos_ += header + static_cast<size_t>(len);

    WsInbound out;
    if (control) {
      if (op == 0x9) {
        out.kind = WsInbound::kPing;
        out.payload = std::move(payload);
        return out;
      }
      if (op == 0xA) {
        out.kind = WsInbound::kPong;
        return out;
      }
      if (payload.size() == 1) return Fail(kWsCloseProtocol, "bad close frame");
      out.close_code = 1005;
      if (payload.size() >= 2) {
        const uint64_t code = BigEndian(payload, 0, 2);
        if (!ValidCloseCode(code)) return Fail(kWsCloseProtocol, "bad close code");
        if (!IsUtf8(std::string_view(payload).substr(2))) {
          return Fail(kWsCloseBadData, "close reason not UTF-8");
        }
        out.close_code = static_cast<uint16_t>(code);
      }
      done_ = true;
      out.kind = WsInbound::kClose;
      return out;
    }
    if (op != 0x0) {
      in_message_ = true;
      message_text_ = op == 0x1;
      message_.clear();
    }
    message_.append(payload);
    if (!fin) continue;
    in_message_ = false;
    if (message_text_ && !IsUtf8(message_)) return Fail(kWsCloseBadData, "text not UTF-8");
    out.kind = message_text_ ? WsInbound::kText : WsInbound::kBinary;
    out.payload = std::move(message_);
    message_.clear();
    return out;
  }
  // An incomplete frame: keep its bytes only.
  if (pos_ > 0) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  return {};
}

}  // namespace klined::api
