// The lexical layer of the trade decoder: a strict RFC 8259 scanner over a byte range (no
// copies, no allocation), the raw token of one member value (Slot), escape decoding and
// exact integer conversion. Internal to src/core (trade_decoder.cc); see the DESIGN notes
// there for the decisions the contract leaves open.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string_view>

namespace klined::json {

// Deep enough for any real payload, shallow enough that recursion stays a few KiB of stack.
inline constexpr int kMaxDepth = 64;
// Escaped value strings are decoded into a stack buffer of this size. Real values are far
// shorter (a symbol is at most 32 bytes, a decimal at most 39 significant characters).
inline constexpr size_t kMaxUnescaped = 256;

// Bytes a string can hold as they are: printable ASCII other than '"' and '\\'.
constexpr std::array<bool, 256> MakePlainStringTable() {
  std::array<bool, 256> t = {};
  for (int c = 0x20; c < 0x80; ++c) t[static_cast<size_t>(c)] = true;
  t['"'] = t['\\'] = false;
  return t;
}
inline constexpr std::array<bool, 256> kPlainStringByte = MakePlainStringTable();

constexpr bool IsDigit(char c) { return c >= '0' && c <= '9'; }
constexpr bool IsWhitespace(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }
constexpr uint8_t Byte(char c) { return static_cast<uint8_t>(c); }

// Eight-digit steps for numbers (timestamps and ids are 9-19 digits), on little-endian
// targets where a memcpy'd word holds the first byte lowest.
inline constexpr bool kSwar = std::endian::native == std::endian::little;

inline uint64_t Load8(const char* p) {
  uint64_t w;
  std::memcpy(&w, p, 8);
  return w;
}

// All 8 bytes of w are ASCII digits: high nibble 3 and low nibble + 6 not carrying into it.
// (A byte >= 0xFA may carry into its neighbour, but then its own high nibble already fails.)
constexpr bool AllDigits(uint64_t w) {
  constexpr uint64_t kHighNibbles = 0xF0F0F0F0F0F0F0F0ULL;
  return ((w & kHighNibbles) | (((w + 0x0606060606060606ULL) & kHighNibbles) >> 4)) ==
         0x3333333333333333ULL;
}

// The value of 8 ASCII digits loaded by Load8 (first digit most significant).
constexpr uint32_t Parse8Digits(uint64_t w) {
  w = (w & 0x0F0F0F0F0F0F0F0FULL) * 2561 >> 8;
  w = (w & 0x00FF00FF00FF00FFULL) * 6553601 >> 16;
  return static_cast<uint32_t>((w & 0x0000FFFF0000FFFFULL) * 42949672960001ULL >> 32);
}

// The end of the run of digits starting at p.
inline const char* SkipDigitRun(const char* p, const char* end) {
  if constexpr (kSwar) {
    while (end - p >= 8 && AllDigits(Load8(p))) p += 8;
  }
  while (p < end && IsDigit(*p)) ++p;
  return p;
}

// Value of 4 hex digits at p (which must hold 4 bytes), or -1.
inline int Hex4(const char* p) {
  int v = 0;
  for (int i = 0; i < 4; ++i) {
    const char c = p[i];
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else {
      return -1;
    }
    v = v * 16 + d;
  }
  return v;
}

// The JSON type of a scanned token.
enum class Tok : uint8_t { kNone, kString, kNumber, kTrue, kFalse, kNull, kObject, kArray };

// One mapped member's value as it appears in the message.
struct Slot {
  const char* begin = nullptr;  // string: bytes between the quotes; number: the token
  size_t len = 0;
  Tok tok = Tok::kNone;  // kNone: member absent
  bool escaped = false;  // string holds at least one backslash escape
  bool integer = false;  // number has neither fraction nor exponent
};

// Decodes the escapes of a string already validated by Reader::ScanString into buf.
// False if the decoded string would exceed cap bytes.
inline bool Unescape(const char* p, size_t n, char* buf, size_t cap, size_t* out_len) {
  const char* const end = p + n;
  size_t o = 0;
  while (p < end) {
    const char c = *p++;
    if (c != '\\') {
      if (o == cap) return false;
      buf[o++] = c;
      continue;
    }
    const char e = *p++;
    uint32_t cp;
    switch (e) {
      case 'b':
        cp = '\b';
        break;
      case 'f':
        cp = '\f';
        break;
      case 'n':
        cp = '\n';
        break;
      case 'r':
        cp = '\r';
        break;
      case 't':
        cp = '\t';
        break;
      case 'u': {
        cp = static_cast<uint32_t>(Hex4(p));
        p += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF) {  // validated: "\uDC00-\uDFFF" follows
          const uint32_t lo = static_cast<uint32_t>(Hex4(p + 2));
          p += 6;
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        break;
      }
      default:  // '"', '\\', '/'
        cp = static_cast<uint8_t>(e);
        break;
    }
    char enc[4];
    size_t k;
    if (cp < 0x80) {
      enc[0] = static_cast<char>(cp);
      k = 1;
    } else if (cp < 0x800) {
      enc[0] = static_cast<char>(0xC0 | (cp >> 6));
      enc[1] = static_cast<char>(0x80 | (cp & 0x3F));
      k = 2;
    } else if (cp < 0x10000) {
      enc[0] = static_cast<char>(0xE0 | (cp >> 12));
      enc[1] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      enc[2] = static_cast<char>(0x80 | (cp & 0x3F));
      k = 3;
    } else {
      enc[0] = static_cast<char>(0xF0 | (cp >> 18));
      enc[1] = static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      enc[2] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      enc[3] = static_cast<char>(0x80 | (cp & 0x3F));
      k = 4;
    }
    if (cap - o < k) return false;
    std::memcpy(buf + o, enc, k);
    o += k;
  }
  *out_len = o;
  return true;
}

// A string slot's value with escapes decoded: in place when it has none, else into buf
// (kMaxUnescaped bytes). False if it does not fit.
inline bool StringValue(const Slot& s, char* buf, std::string_view* out) {
  if (!s.escaped) {
    *out = std::string_view(s.begin, s.len);
    return true;
  }
  size_t n;
  if (!Unescape(s.begin, s.len, buf, kMaxUnescaped, &n)) return false;
  *out = std::string_view(buf, n);
  return true;
}

// Strict RFC 8259 scanner over [p, end). Every Scan/Skip function expects p_ at the first
// byte of its token and returns false on a syntax error (including running out of input).
class Reader {
 public:
  Reader(const char* p, const char* end) : p_(p), end_(end) {}

  void SkipWhitespace() {
    // Every byte that may start or end a token is above ' ', so one compare usually decides.
    while (p_ < end_ && Byte(*p_) <= ' ' && IsWhitespace(*p_)) ++p_;
  }
  bool AtEnd() const { return p_ == end_; }
  bool Peek(char c) const { return p_ < end_ && *p_ == c; }
  bool Consume(char c) {
    if (!Peek(c)) return false;
    ++p_;
    return true;
  }

  bool ScanString(const char** begin, size_t* len, bool* escaped) {
    ++p_;  // opening quote
    const char* const start = p_;
    bool esc = false;
    for (;;) {
      while (p_ < end_ && kPlainStringByte[Byte(*p_)]) ++p_;
      if (p_ >= end_) return false;
      const uint8_t c = Byte(*p_);
      if (c == '"') break;
      if (c == '\\') {
        esc = true;
        if (!ScanEscape()) return false;
      } else if (c < 0x20) {
        return false;  // control characters must be escaped
      } else if (!ScanUtf8()) {
        return false;
      }
    }
    *begin = start;
    *len = static_cast<size_t>(p_ - start);
    *escaped = esc;
    ++p_;  // closing quote
    return true;
  }

  // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  bool ScanNumber(const char** begin, size_t* len, bool* integer) {
    const char* const start = p_;
    if (p_ < end_ && *p_ == '-') ++p_;
    if (p_ >= end_) return false;
    if (*p_ == '0') {
      ++p_;
    } else if (*p_ >= '1' && *p_ <= '9') {
      p_ = SkipDigitRun(p_ + 1, end_);
    } else {
      return false;
    }
    bool is_int = true;
    if (p_ < end_ && *p_ == '.') {
      ++p_;
      is_int = false;
      if (!SkipDigits()) return false;
    }
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      ++p_;
      is_int = false;
      if (p_ < end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      if (!SkipDigits()) return false;
    }
    *begin = start;
    *len = static_cast<size_t>(p_ - start);
    *integer = is_int;
    return true;
  }

  // Scans one value into *slot; containers are validated and skipped. depth: containers
  // enclosing this value.
  bool ScanValue(int depth, Slot* slot) {
    if (p_ >= end_) return false;
    switch (*p_) {
      case '"':
        slot->tok = Tok::kString;
        return ScanString(&slot->begin, &slot->len, &slot->escaped);
      case '{':
        slot->tok = Tok::kObject;
        return SkipObject(depth);
      case '[':
        slot->tok = Tok::kArray;
        return SkipArray(depth);
      case 't':
        slot->tok = Tok::kTrue;
        return ScanLiteral("true", 4);
      case 'f':
        slot->tok = Tok::kFalse;
        return ScanLiteral("false", 5);
      case 'n':
        slot->tok = Tok::kNull;
        return ScanLiteral("null", 4);
      default:
        slot->tok = Tok::kNumber;
        return ScanNumber(&slot->begin, &slot->len, &slot->integer);
    }
  }

  bool SkipValue(int depth) {
    Slot ignored;
    return ScanValue(depth, &ignored);
  }

 private:
  bool SkipDigits() {
    const char* const start = p_;
    p_ = SkipDigitRun(p_, end_);
    return p_ > start;
  }

  bool ScanLiteral(const char* word, size_t n) {
    if (static_cast<size_t>(end_ - p_) < n || std::memcmp(p_, word, n) != 0) return false;
    p_ += n;
    return true;
  }

  // At a backslash inside a string.
  bool ScanEscape() {
    if (end_ - p_ < 2) return false;
    switch (p_[1]) {
      case '"':
      case '\\':
      case '/':
      case 'b':
      case 'f':
      case 'n':
      case 'r':
      case 't':
        p_ += 2;
        return true;
      case 'u':
        break;
      default:
        return false;
    }
    if (end_ - p_ < 6) return false;
    const int cp = Hex4(p_ + 2);
    if (cp < 0 || (cp >= 0xDC00 && cp <= 0xDFFF)) return false;  // lone low surrogate
    p_ += 6;
    if (cp < 0xD800 || cp > 0xDBFF) return true;
    // A high surrogate must be followed by an escaped low one.
    if (end_ - p_ < 6 || p_[0] != '\\' || p_[1] != 'u') return false;
    const int lo = Hex4(p_ + 2);
    if (lo < 0xDC00 || lo > 0xDFFF) return false;
    p_ += 6;
    return true;
  }

  // At a byte >= 0x80 inside a string: one well-formed UTF-8 sequence (RFC 3629 table 3-7:
  // no overlongs, no surrogates, nothing past U+10FFFF).
  bool ScanUtf8() {
    const uint8_t c = Byte(*p_);
    size_t n;
    uint8_t lo = 0x80, hi = 0xBF;  // bounds of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (static_cast<size_t>(end_ - p_) < n) return false;
    const uint8_t c1 = Byte(p_[1]);
    if (c1 < lo || c1 > hi) return false;
    for (size_t i = 2; i < n; ++i) {
      if ((Byte(p_[i]) & 0xC0) != 0x80) return false;
    }
    p_ += n;
    return true;
  }

  bool SkipObject(int depth) {
    if (depth >= kMaxDepth) return false;
    ++p_;
    SkipWhitespace();
    if (Consume('}')) return true;
    for (;;) {
      const char* name;
      size_t name_len;
      bool escaped;
      if (!Peek('"') || !ScanString(&name, &name_len, &escaped)) return false;
      SkipWhitespace();
      if (!Consume(':')) return false;
      SkipWhitespace();
      if (!SkipValue(depth + 1)) return false;
      SkipWhitespace();
      if (Consume('}')) return true;
      if (!Consume(',')) return false;
      SkipWhitespace();
    }
  }

  bool SkipArray(int depth) {
    if (depth >= kMaxDepth) return false;
    ++p_;
    SkipWhitespace();
    if (Consume(']')) return true;
    for (;;) {
      if (!SkipValue(depth + 1)) return false;
      SkipWhitespace();
      if (Consume(']')) return true;
      if (!Consume(',')) return false;
      SkipWhitespace();
    }
  }

  const char* p_;
  const char* const end_;
};

// A validated JSON integer token as sign and magnitude; false if |value| > INT64_MAX.
inline bool ParseJsonInt(const Slot& s, bool* negative, int64_t* magnitude) {
  const char* p = s.begin;
  const char* const end = s.begin + s.len;
  *negative = *p == '-';
  if (*negative) ++p;
  if (end - p > 19) return false;  // no leading zeros in JSON: 20+ digits is >= 10^19
  uint64_t v = 0;                  // 19 digits < 2^64: cannot wrap
  if constexpr (kSwar) {
    for (; end - p >= 8; p += 8) v = v * 100'000'000 + Parse8Digits(Load8(p));
  }
  for (; p < end; ++p) v = v * 10 + static_cast<uint64_t>(*p - '0');
  if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
  *magnitude = static_cast<int64_t>(v);
  return true;
}

}  // namespace klined::json
