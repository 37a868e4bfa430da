// Candle algebra and the contract's candle JSON.
//
// DESIGN
// A refused trade or merge leaves its output exactly as it was: Merge computes every checked sum
// into a local and commits only when all fit; Apply, which is hotter, adds in place and undoes
// on refusal (see there). Neither allocates.
// AppendCandleJson runs for every dirty candle on every flush: it reserves once and formats
// into stack buffers (std::to_chars for integers, Decimal::Format for decimals), so the string
// grows by three memcpys and nothing else. ParseCandleJson reads back what AppendCandleJson
// wrote (from Redis, i.e. data we do not fully trust): it is bounds-checked byte by byte and
// never asserts, so garbage is refused, not crashed on.
#include "klined/candle.h"

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cstring>
#include <optional>

namespace klined {

Candle Candle::Empty(Interval iv, int64_t open_time, UtcOffset tz, Decimal carry) {
  Candle c;
  c.open_time = open_time;
  c.close_time = BucketClose(iv, open_time, tz);
  c.interval = iv;
  c.open = c.high = c.low = c.close = carry;
  return c;
}

namespace {

// The cold half of Candle::Apply: undoes the first `applied` sums of t. Each of them fit, so
// subtracting its addend restores the old value exactly.
[[gnu::noinline, gnu::cold]] bool RefuseTrade(Candle* c, const Trade& t, int applied) {
  if (applied >= 1) (void)Decimal::Sub(c->volume, t.qty, &c->volume);
  if (applied >= 2) (void)Decimal::Sub(c->quote_volume, t.quote, &c->quote_volume);
  if (applied >= 3) (void)Decimal::Sub(c->taker_volume, t.qty, &c->taker_volume);
  return false;
}

}  // namespace

// Runs for every interval of every trade, so it is shaped for the compiler. Sums are added in
// place and undone on the (cold) refusal path, instead of being staged in locals and committed
// at the end: staging four 128-bit values made GCC spill them through the stack and SSE
// registers, with store-forwarding stalls, and took ~1.5x the time (bench/candle_bench.cc).
bool Candle::Apply(const Trade& t) {
  if (!Decimal::Add(volume, t.qty, &volume)) [[unlikely]] {
    return RefuseTrade(this, t, 0);
  }
  if (!Decimal::Add(quote_volume, t.quote, &quote_volume)) [[unlikely]] {
    return RefuseTrade(this, t, 1);
  }
  if (!t.buyer_maker) {
    if (!Decimal::Add(taker_volume, t.qty, &taker_volume)) [[unlikely]] {
      return RefuseTrade(this, t, 2);
    }
    if (!Decimal::Add(taker_quote_volume, t.quote, &taker_quote_volume)) [[unlikely]] {
      return RefuseTrade(this, t, 3);
    }
  }
  if (count == 0) [[unlikely]] {
    // The carried prices of an empty candle are not trades: the first trade replaces them.
    open = high = low = close = t.price;
    first_id = last_id = t.id;
  } else {
    // Ids are distinct per symbol (the engine drops duplicates), so open/close depend on ids
    // only, never on arrival order.
    if (t.id < first_id) {
      first_id = t.id;
      open = t.price;
    }
    if (t.id > last_id) {
      last_id = t.id;
      close = t.price;
    }
    if (t.price > high) high = t.price;
    if (t.price < low) low = t.price;
  }
  ++count;
  return true;
}

bool Merge(const Candle& a, const Candle& b, Candle* out) {
  // Merging across buckets is a bug in the caller, not bad input.
  assert(a.interval == b.interval && a.open_time == b.open_time);
  if (b.empty()) {  // identity; for two empty candles this keeps a's carry
    *out = a;
    return true;
  }
  if (a.empty()) {
    *out = b;
    return true;
  }
  Candle r = a;  // a local, so out may alias a or b and stays untouched on refusal
  if (!Decimal::Add(a.volume, b.volume, &r.volume) ||
      !Decimal::Add(a.quote_volume, b.quote_volume, &r.quote_volume) ||
      !Decimal::Add(a.taker_volume, b.taker_volume, &r.taker_volume) ||
      !Decimal::Add(a.taker_quote_volume, b.taker_quote_volume, &r.taker_quote_volume)) {
    return false;
  }
  if (b.first_id < a.first_id) {
    r.first_id = b.first_id;
    r.open = b.open;
  }
  if (b.last_id > a.last_id) {
    r.last_id = b.last_id;
    r.close = b.close;
  }
  r.high = std::max(a.high, b.high);
  r.low = std::min(a.low, b.low);
  r.count = a.count + b.count;
  *out = r;
  return true;
}

namespace {

// Fixed text of the JSON, split around the symbol (the only part of unbounded length). The
// bounds are the literal text plus the widest value of every field, so writes cannot overrun.
constexpr int kMaxInt64Chars = 20;  // "-9223372036854775808"
constexpr int kMaxIntervalChars = 3;
constexpr size_t kHeadMax = sizeof(R"({"t":,"T":,"s":")") - 1 + 2 * kMaxInt64Chars;
constexpr size_t kTailText = sizeof(R"(","i":"","f":,"L":,"o":"","h":"","l":"","c":"",)"
                                    R"("v":"","q":"","V":"","Q":"","n":,"x":false})") -
                             1;
constexpr size_t kTailMax =
    kTailText + kMaxIntervalChars + 3 * kMaxInt64Chars + 8 * Decimal::kMaxChars;

char* PutLiteral(char* p, std::string_view s) {
  std::memcpy(p, s.data(), s.size());
  return p + s.size();
}

// Callers size the buffer for kMaxInt64Chars, so to_chars cannot fail.
char* PutInt(char* p, int64_t v) { return std::to_chars(p, p + kMaxInt64Chars, v).ptr; }

char* PutDecimal(char* p, std::string_view key_prefix, Decimal d) {
  p = PutLiteral(p, key_prefix);
  return p + d.Format(p);
}

}  // namespace

void AppendCandleJson(const Candle& c, std::string_view symbol, bool closed, std::string* out) {
  char head[kHeadMax];
  char tail[kTailMax];
  char* p = head;
  p = PutLiteral(p, R"({"t":)");
  p = PutInt(p, c.open_time);
  p = PutLiteral(p, R"(,"T":)");
  p = PutInt(p, c.close_time);
  p = PutLiteral(p, R"(,"s":")");
  const size_t head_len = static_cast<size_t>(p - head);

  p = tail;
  p = PutLiteral(p, R"(","i":")");
  p = PutLiteral(p, IntervalName(c.interval));
  p = PutLiteral(p, R"(","f":)");
  p = PutInt(p, c.first_id);
  p = PutLiteral(p, R"(,"L":)");
  p = PutInt(p, c.last_id);
  p = PutDecimal(p, R"(,"o":")", c.open);
  p = PutDecimal(p, R"(","h":")", c.high);
  p = PutDecimal(p, R"(","l":")", c.low);
  p = PutDecimal(p, R"(","c":")", c.close);
  p = PutDecimal(p, R"(","v":")", c.volume);
  p = PutDecimal(p, R"(","q":")", c.quote_volume);
  p = PutDecimal(p, R"(","V":")", c.taker_volume);
  p = PutDecimal(p, R"(","Q":")", c.taker_quote_volume);
  p = PutLiteral(p, R"(","n":)");
  p = PutInt(p, c.count);
  p = PutLiteral(p, closed ? R"(,"x":true})" : R"(,"x":false})");
  const size_t tail_len = static_cast<size_t>(p - tail);

  out->reserve(out->size() + head_len + symbol.size() + tail_len);
  out->append(head, head_len);
  out->append(symbol);
  out->append(tail, tail_len);
}

std::string CandleJson(const Candle& c, std::string_view symbol, bool closed) {
  std::string s;
  AppendCandleJson(c, symbol, closed, &s);
  return s;
}

namespace {

constexpr bool IsJsonSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

constexpr bool IsSymbolChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

// A cursor over untrusted text: every read is bounds-checked, every failure is a false return.
class Reader {
 public:
  explicit Reader(std::string_view s) : s_(s) {}

  bool AtEnd() const { return i_ == s_.size(); }

  // Insignificant JSON whitespace is accepted between tokens; we never write any, but a
  // candle edited by hand or re-encoded by a script stays readable.
  void SkipSpace() {
    while (i_ < s_.size() && IsJsonSpace(s_[i_])) ++i_;
  }

  bool Consume(char c) {
    SkipSpace();
    if (i_ >= s_.size() || s_[i_] != c) return false;
    ++i_;
    return true;
  }

  // A JSON string without escapes (nothing we write needs one; a backslash is refused).
  bool String(std::string_view* out) {
    if (!Consume('"')) return false;
    const size_t start = i_;
    while (i_ < s_.size() && s_[i_] != '"') {
      const unsigned char c = static_cast<unsigned char>(s_[i_]);
      if (c == '\\' || c < 0x20) return false;
      ++i_;
    }
    if (i_ >= s_.size()) return false;
    *out = s_.substr(start, i_ - start);
    ++i_;  // closing quote
    return true;
  }

  // A JSON integer (optional '-', no leading zeros, no fraction or exponent) that fits int64.
  bool Int(int64_t* out) {
    SkipSpace();
    const size_t start = i_;
    if (i_ < s_.size() && s_[i_] == '-') ++i_;
    const size_t digits = i_;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
    if (i_ == digits) return false;
    if (s_[digits] == '0' && i_ - digits > 1) return false;
    const char* first = s_.data() + start;
    const char* last = s_.data() + i_;
    const auto [ptr, ec] = std::from_chars(first, last, *out);  // range-checked
    return ec == std::errc() && ptr == last;
  }

  bool Bool(bool* out) {
    SkipSpace();
    const std::string_view rest = s_.substr(i_);
    if (rest.starts_with("true")) {
      i_ += 4;
      *out = true;
      return true;
    }
    if (rest.starts_with("false")) {
      i_ += 5;
      *out = false;
      return true;
    }
    return false;
  }

 private:
  std::string_view s_;
  size_t i_ = 0;
};

bool StoredDecimal(Reader* r, Decimal* out) {
  std::string_view text;
  return r->String(&text) && ParseStoredDecimal(text, out) == DecimalError::kOk;
}

bool ValidSymbol(std::string_view s) {
  if (s.empty() || s.size() > Symbol::kMaxLen) return false;
  return std::all_of(s.begin(), s.end(), IsSymbolChar);
}

// Invariants every candle built by Empty/Apply/Merge satisfies. Checking them on load keeps a
// corrupted stored candle from entering the merge algebra (whose results would be garbage).
bool Consistent(const Candle& c) {
  if (c.close_time < c.open_time || c.count < 0) return false;
  const Decimal zero;
  if (c.volume < zero || c.quote_volume < zero || c.taker_volume < zero ||
      c.taker_quote_volume < zero || c.taker_volume > c.volume ||
      c.taker_quote_volume > c.quote_volume) {
    return false;
  }
  if (c.count == 0) {
    return c.first_id == kNoTradeId && c.last_id == kNoTradeId && c.volume.IsZero() &&
           c.quote_volume.IsZero() && c.open == c.high && c.open == c.low && c.open == c.close;
  }
  return c.first_id >= 1 && c.first_id <= c.last_id && c.low <= c.open && c.low <= c.close &&
         c.open <= c.high && c.close <= c.high;
}

}  // namespace

bool ParseCandleJson(std::string_view json, Candle* out, std::string_view* symbol, bool* closed) {
  // Every field is required exactly once; bit i of `seen` stands for kKeys[i].
  constexpr std::string_view kKeys = "tTsifLohlcvqVQnx";
  constexpr unsigned kAllSeen = (1u << kKeys.size()) - 1;
  Candle c;
  std::string_view sym;
  bool x = false;
  unsigned seen = 0;

  Reader r(json);
  if (!r.Consume('{')) return false;
  do {
    std::string_view key;
    if (!r.String(&key) || key.size() != 1 || !r.Consume(':')) return false;
    const size_t field = kKeys.find(key[0]);
    if (field == std::string_view::npos) return false;  // unknown field
    const unsigned bit = 1u << field;
    if ((seen & bit) != 0) return false;  // duplicate field
    seen |= bit;
    bool ok = false;
    switch (key[0]) {
      case 't':
        ok = r.Int(&c.open_time);
        break;
      case 'T':
        ok = r.Int(&c.close_time);
        break;
      case 's':
        ok = r.String(&sym) && ValidSymbol(sym);
        break;
      case 'i': {
        std::string_view name;
        std::optional<Interval> iv;
        ok = r.String(&name) && (iv = ParseInterval(name)).has_value();
        if (ok) c.interval = *iv;
        break;
      }
      case 'f':
        ok = r.Int(&c.first_id);
        break;
      case 'L':
        ok = r.Int(&c.last_id);
        break;
      case 'o':
        ok = StoredDecimal(&r, &c.open);
        break;
      case 'h':
        ok = StoredDecimal(&r, &c.high);
        break;
      case 'l':
        ok = StoredDecimal(&r, &c.low);
        break;
      case 'c':
        ok = StoredDecimal(&r, &c.close);
        break;
      case 'v':
        ok = StoredDecimal(&r, &c.volume);
        break;
      case 'q':
        ok = StoredDecimal(&r, &c.quote_volume);
        break;
      case 'V':
        ok = StoredDecimal(&r, &c.taker_volume);
        break;
      case 'Q':
        ok = StoredDecimal(&r, &c.taker_quote_volume);
        break;
      case 'n':
        ok = r.Int(&c.count);
        break;
      case 'x':
        ok = r.Bool(&x);
        break;
    }
    if (!ok) return false;
  } while (r.Consume(','));
  if (!r.Consume('}')) return false;
  r.SkipSpace();
  if (!r.AtEnd() || seen != kAllSeen || !Consistent(c)) return false;
  *out = c;
  *symbol = sym;
  *closed = x;
  return true;
}

}  // namespace klined
