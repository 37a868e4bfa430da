// WebSocket framing without I/O: server frames, client frames reassembled, every violation.
#include <doctest/doctest.h>

#include <random>

#include "api/ws_frame.h"

using namespace klined::api;

namespace {

// A client frame: masked with `mask`, the length in its shortest form unless `len_bytes`
// forces 2 (16-bit) or 8 (64-bit).
std::string ClientFrame(uint8_t first_byte, std::string_view payload, uint32_t mask = 0x12345678,
                        int len_bytes = 0, bool masked = true) {
  std::string f;
  f.push_back(static_cast<char>(first_byte));
  const uint8_t m = masked ? 0x80 : 0;
  const size_t n = payload.size();
  if (len_bytes == 0) len_bytes = n < 126 ? 0 : (n <= 0xFFFF ? 2 : 8);
  if (len_bytes == 0) {
    f.push_back(static_cast<char>(m | n));
  } else {
    f.push_back(static_cast<char>(m | (len_bytes == 2 ? 126 : 127)));
    for (int i = len_bytes - 1; i >= 0; --i) f.push_back(static_cast<char>((n >> (8 * i)) & 0xFF));
  }
  const char key[4] = {static_cast<char>(mask >> 24), static_cast<char>(mask >> 16),
                       static_cast<char>(mask >> 8), static_cast<char>(mask)};
  if (masked) f.append(key, 4);
  for (size_t i = 0; i < n; ++i) f.push_back(static_cast<char>(payload[i] ^ (masked ? key[i & 3] : 0)));
  return f;
}

WsInbound FeedAll(FrameReader* r, const std::string& bytes) {
  r->Feed(bytes.data(), bytes.size());
  return r->Next();
}

}  // namespace

TEST_CASE("ws frame: server frames carry the length in its shortest form, unmasked") {
  std::string out;
  AppendFrame(&out, WsOpcode::kText, "hi");
  CHECK(out == std::string("\x81\x02hi", 4));
  out.clear();
  const std::string mid(300, 'a');
  AppendFrame(&out, WsOpcode::kText, mid);
  CHECK(out.substr(0, 4) == std::string("\x81\x7e\x01\x2c", 4));
  CHECK(out.size() == 4 + 300);
  out.clear();
  const std::string big(70000, 'b');
  AppendFrame(&out, WsOpcode::kBinary, big);
  CHECK(out.substr(0, 10) == std::string("\x82\x7f\x00\x00\x00\x00\x00\x01\x11\x70", 10));
  out.clear();
  AppendFrame(&out, WsOpcode::kPing, "");
  CHECK(out == std::string("\x89\x00", 2));
  CHECK(ClosePayload(1009, "too big") == std::string("\x03\xf1too big", 9));
}

TEST_CASE("ws frame: messages in one read, split at every byte, fragmented, with controls") {
  const std::string stream = ClientFrame(0x81, R"({"method":"LIST_SUBSCRIPTIONS","id":1})") +
                             ClientFrame(0x89, "ping!") +
                             ClientFrame(0x01, "frag", 0xdeadbeef) +   // text, not final
                             ClientFrame(0x8A, "") +                   // a pong between fragments
                             ClientFrame(0x00, "ment", 0x01020304) +   // continuation
                             ClientFrame(0x80, std::string(200, 'z')) +  // final continuation
                             ClientFrame(0x82, "\x01\x02") +
                             ClientFrame(0x81, std::string(1000, 'y'), 7, 8) +  // 64-bit length
                             ClientFrame(0x88, ClosePayload(1000, "bye"));
  const auto check = [&](FrameReader& r, std::vector<WsInbound>& got) {
    REQUIRE(got.size() == 7);
    CHECK(got[0].kind == WsInbound::kText);
    CHECK(got[0].payload == R"({"method":"LIST_SUBSCRIPTIONS","id":1})");
    CHECK(got[1].kind == WsInbound::kPing);
    CHECK(got[1].payload == "ping!");
    CHECK(got[2].kind == WsInbound::kPong);
    CHECK(got[3].kind == WsInbound::kText);
    CHECK(got[3].payload == "fragment" + std::string(200, 'z'));
    CHECK(got[4].kind == WsInbound::kBinary);
    CHECK(got[4].payload == "\x01\x02");
    CHECK(got[5].payload == std::string(1000, 'y'));
    CHECK(got[6].kind == WsInbound::kClose);
    CHECK(got[6].close_code == 1000);
    CHECK(r.Next().kind == WsInbound::kNone);  // nothing after a close
    CHECK(r.held() == 0);
  };
  SUBCASE("all at once") {
    FrameReader r(4096);
    r.Feed(stream.data(), stream.size());
    std::vector<WsInbound> got;
    for (WsInbound in = r.Next(); in.kind != WsInbound::kNone; in = r.Next()) got.push_back(in);
    check(r, got);
  }
  SUBCASE("one byte at a time") {
    FrameReader r(4096);
    std::vector<WsInbound> got;
    for (char c : stream) {
      r.Feed(&c, 1);
      for (WsInbound in = r.Next(); in.kind != WsInbound::kNone; in = r.Next()) got.push_back(in);
    }
    check(r, got);
  }
  SUBCASE("random splits") {
    std::mt19937 rng(5);
    for (int round = 0; round < 50; ++round) {
      FrameReader r(4096);
      std::vector<WsInbound> got;
      size_t at = 0;
      while (at < stream.size()) {
        const size_t n = std::min<size_t>(stream.size() - at, 1 + rng() % 300);
        r.Feed(stream.data() + at, n);
        at += n;
        for (WsInbound in = r.Next(); in.kind != WsInbound::kNone; in = r.Next()) got.push_back(in);
      }
      check(r, got);
    }
  }
}

TEST_CASE("ws frame: every violation ends the connection with RFC 6455's code") {
  struct Case {
    const char* what;
    std::string bytes;
    uint16_t code;
  };
  const std::vector<Case> cases = {
      {"unmasked", ClientFrame(0x81, "x", 0, 0, false), kWsCloseProtocol},
      {"reserved bit", ClientFrame(0xC1, "x"), kWsCloseProtocol},
      {"unknown data opcode", ClientFrame(0x83, "x"), kWsCloseProtocol},
      {"unknown control opcode", ClientFrame(0x8B, "x"), kWsCloseProtocol},
      {"fragmented ping", ClientFrame(0x09, "x"), kWsCloseProtocol},
      {"long ping", ClientFrame(0x89, std::string(126, 'p')), kWsCloseProtocol},
      {"continuation of nothing", ClientFrame(0x80, "x"), kWsCloseProtocol},
      {"message inside a message", ClientFrame(0x01, "a") + ClientFrame(0x81, "b"),
       kWsCloseProtocol},
      {"one-byte close", ClientFrame(0x88, "\x03"), kWsCloseProtocol},
      {"bad close code", ClientFrame(0x88, ClosePayload(999, "")), kWsCloseProtocol},
      {"too big", ClientFrame(0x81, std::string(4097, 'x')), kWsCloseTooBig},
      {"too big in fragments", ClientFrame(0x01, std::string(4000, 'x')) +
                                   ClientFrame(0x80, std::string(97, 'x')),
       kWsCloseTooBig},
      {"not UTF-8", ClientFrame(0x81, "\xff\xfe"), kWsCloseBadData},
      {"truncated UTF-8", ClientFrame(0x81, "ok\xe2\x82"), kWsCloseBadData},
      {"overlong UTF-8", ClientFrame(0x81, "\xc0\xaf"), kWsCloseBadData},
      {"surrogate", ClientFrame(0x81, "\xed\xa0\x80"), kWsCloseBadData},
  };
  for (const Case& c : cases) {
    CAPTURE(c.what);
    FrameReader r(4096);
    WsInbound in = FeedAll(&r, c.bytes);
    if (in.kind != WsInbound::kFail) in = r.Next();  // a first, valid fragment
    CHECK(in.kind == WsInbound::kFail);
    CHECK(in.close_code == c.code);
    CHECK(r.Next().kind == WsInbound::kNone);
  }
  // A 64-bit length past the limit fails at its header, before any payload arrives.
  FrameReader r(4096);
  std::string header("\x81\xff\x00\x00\x00\x01\x00\x00\x00\x00", 10);
  CHECK(FeedAll(&r, header).kind == WsInbound::kFail);
}

TEST_CASE("ws frame: UTF-8 validation") {
  CHECK(IsUtf8(""));
  CHECK(IsUtf8("plain ascii"));
  CHECK(IsUtf8("\xc3\xa9t\xc3\xa9"));           // été
  CHECK(IsUtf8("\xe2\x82\xac"));                // €
  CHECK(IsUtf8("\xf0\x9f\x93\x88"));            // a chart emoji
  CHECK(!IsUtf8("\xf4\x90\x80\x80"));           // past U+10FFFF
  CHECK(!IsUtf8("\x80"));                       // a lone continuation byte
  CHECK(!IsUtf8("\xe0\x80\xaf"));               // overlong
  CHECK(!IsUtf8("\xf0\x9f\x93"));               // truncated
}
