// Trade decoding: a strict single-pass JSON reader specialised for trade messages. The
// lexical layer (scanner, escapes, integer tokens) is core/json_reader.h; this file maps
// members to trade fields and judges them. A fast path (FastDecode) first tries the shape
// real feeds send (one object, one-byte names, no whitespace or escapes, string decimals,
// integer ids and times) and takes the message only if every check passes; anything else,
// and every rejection, is decided by the general reader, so the fast path changes no result
// (property test in trade_decoder_test.cc: 200,000 random and mutated messages, both ways).
//
// DESIGN
// The reader walks the message once with a pointer, never copies it and never allocates
// (beyond growth of the caller's output vector). A trade object's members are scanned into
// one Slot per mapped field (a view of the raw token plus its JSON type); every other member
// is validated and skipped. Only after the whole object has been read are the slots judged,
// so one bad field never hides a JSON syntax error later in the message.
//
// Decisions the contract leaves to us (tests in test/unit/core/trade_decoder_test.cc):
// - Syntax is RFC 8259, strictly: whitespace is space/tab/LF/CR only, strings must be valid
//   UTF-8 with valid escapes (a \uD800-\uDBFF must be followed by a \uDC00-\uDFFF, a lone
//   low surrogate is an error), numbers follow JSON's grammar, no BOM, nothing but whitespace
//   after the top-level value. Containers nest at most kMaxDepth deep. Any violation, a
//   top-level value that is not an object or array, or truncated input makes the whole
//   message malformed_json: it counts as ONE rejected trade and nothing from it is appended,
//   even elements of an array that were good before the error.
// - An empty array is a valid message with no trades: accepted 0, rejected 0.
// - In an array, a non-object element is bad_type; each object element is judged alone.
// - A trade object's reason is the first failing check in this order:
//     1. a mapped member appearing twice in one object       -> malformed_json
//     2. a required member (s t p q T) absent                -> missing_field
//     3. a member of the wrong JSON type, checked s t p q T m -> bad_type
//        (null is a wrong type for required members; only m accepts it, as false)
//        including lexical form: t and epoch-ms T must be integer tokens (1.0 and 1e3 are
//        not), a price/qty string must match the decimal grammar, and an ISO-8601 T must
//        parse as below
//     4. symbol length or characters                         -> bad_symbol
//     5. values, in order t, p, q, p*q, T: t outside 1..2^63-1 -> out_of_range; p or q
//        negative or zero -> non_positive (a negative value is non_positive whatever its
//        magnitude), more than 20 integer digits -> out_of_range, more than 18 fractional
//        digits -> too_precise; p and q together more than 18 fractional digits ->
//        too_precise, p*q past 20 integer digits -> out_of_range; T < 0 or beyond int64 ->
//        out_of_range, T > now_ms + max_future_skew_ms -> future_time.
// - Member names are compared after decoding escapes ("\u0073" matches "s"); names without
//   a backslash are compared in place. String values are likewise unescaped before they are
//   judged; an escaped value string longer than kMaxUnescaped bytes after decoding is
//   bad_type (bad_symbol for the symbol, which cannot be valid at that length anyway).
// - ISO-8601 time (kIso8601, or a string under kAuto): the profile in core/iso8601.h; a
//   string outside it (a time without a zone designator included) is bad_type.
#include "klined/trade_decoder.h"
#include "core/iso8601.h"
#include "core/json_reader.h"

#include <array>
#include <bit>
#include <charconv>
#include <cstring>
#include <limits>
#include <utility>

namespace klined {

std::string_view RejectReasonName(RejectReason r) {
  switch (r) {
    case RejectReason::kMalformedJson:
      return "malformed_json";
    case RejectReason::kMissingField:
      return "missing_field";
    case RejectReason::kBadType:
      return "bad_type";
    case RejectReason::kBadSymbol:
      return "bad_symbol";
    case RejectReason::kNonPositive:
      return "non_positive";
    case RejectReason::kOutOfRange:
      return "out_of_range";
    case RejectReason::kTooPrecise:
      return "too_precise";
    case RejectReason::kFutureTime:
      return "future_time";
    case RejectReason::kOutOfOrder:
      return "out_of_order";
    case RejectReason::kStoreCorrupt:
      return "store_corrupt";
  }
  return "unknown";
}

std::string TradeJson(const Trade& t) {
  std::string j;
  j.reserve(128);
  char num[24];
  auto append_int = [&j, &num](int64_t v) {
    auto [end, ec] = std::to_chars(num, num + sizeof num, v);
    j.append(num, end);
  };
  j.append("{\"s\":\"").append(t.symbol.view()).append("\",\"t\":");
  append_int(t.id);
  j.append(",\"p\":\"");
  t.price.AppendTo(&j);
  j.append("\",\"q\":\"");
  t.qty.AppendTo(&j);
  j.append("\",\"T\":");
  append_int(t.time_ms);
  j.append(",\"m\":").append(t.buyer_maker ? "true" : "false").append("}");
  return j;
}

namespace {

using json::Byte;
using json::IsDigit;
using json::kMaxUnescaped;
using json::ParseJsonInt;
using json::Reader;
using json::Slot;
using json::StringValue;
using json::Tok;
using json::Unescape;

constexpr std::array<bool, 256> MakeSymbolTable() {
  std::array<bool, 256> t = {};
  for (int c = 'A'; c <= 'Z'; ++c) t[static_cast<size_t>(c)] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[static_cast<size_t>(c)] = true;
  for (int c = '0'; c <= '9'; ++c) t[static_cast<size_t>(c)] = true;
  t['.'] = t['_'] = t['-'] = true;
  return t;
}
constexpr std::array<bool, 256> kSymbolChar = MakeSymbolTable();

constexpr std::array<UInt128, Decimal::kScale + 1> kPow10 = [] {
  std::array<UInt128, Decimal::kScale + 1> t = {};
  for (int i = 0; i <= Decimal::kScale; ++i) t[static_cast<size_t>(i)] = decimal_internal::Pow10(i);
  return t;
}();

// kMaxProduct[f]: the largest product of mantissas with f fractional digits in total whose
// value stays within kMaxRaw once scaled to 18 places.
constexpr std::array<UInt128, Decimal::kScale + 1> kMaxProduct = [] {
  std::array<UInt128, Decimal::kScale + 1> t = {};
  for (int f = 0; f <= Decimal::kScale; ++f) {
    t[static_cast<size_t>(f)] =
        static_cast<UInt128>(Decimal::kMaxRaw) / decimal_internal::Pow10(Decimal::kScale - f);
  }
  return t;
}();

// Fast path for the decimals real feeds send: `digits` or `digits.digits` with at most 19
// digits in all, so the mantissa fits 64 bits and no limit can be exceeded. Gives exactly
// ParseDecimalString's result (and ParseJsonNumber's, for a non-negative JSON number without
// exponent). False: not of this shape; the caller falls back to the general parser, which
// also produces every error.
bool ParseShortDecimal(const char* p, size_t n, ParsedDecimal* out) {
  if (n == 0 || n > 20) return false;
  const char* const end = p + n;
  const char* q = p;
  uint64_t v = 0;  // may wrap for 20 digits; such input is refused below
  while (q < end && IsDigit(*q)) v = v * 10 + static_cast<uint64_t>(*q++ - '0');
  const long int_digits = q - p;
  long frac = 0;
  if (q < end) {
    if (*q++ != '.') return false;
    const char* const frac_begin = q;
    while (q < end && IsDigit(*q)) v = v * 10 + static_cast<uint64_t>(*q++ - '0');
    frac = q - frac_begin;
    if (frac == 0 || q != end) return false;
  }
  if (int_digits == 0 || int_digits + frac > 19) return false;
  while (frac > 0 && v % 10 == 0) {  // trailing fractional zeros are not significant
    v /= 10;
    --frac;
  }
  if (v == 0) {
    *out = ParsedDecimal{};
    return true;
  }
  out->mantissa = v;
  out->frac_digits = static_cast<int>(frac);
  out->value = Decimal::FromRaw(
      static_cast<Int128>(static_cast<UInt128>(v) * kPow10[static_cast<size_t>(18 - frac)]));
  return true;
}

// MultiplyExact for non-negative operands, without its runtime power-of-ten loop when both
// mantissas fit 64 bits (their product then fits 128). Same results.
DecimalError Multiply(const ParsedDecimal& a, const ParsedDecimal& b, Decimal* out) {
  if ((a.mantissa >> 64) != 0 || (b.mantissa >> 64) != 0) return MultiplyExact(a, b, out);
  const int frac = a.frac_digits + b.frac_digits;
  if (frac > Decimal::kScale) return DecimalError::kTooPrecise;
  const UInt128 product =
      static_cast<UInt128>(static_cast<uint64_t>(a.mantissa)) * static_cast<uint64_t>(b.mantissa);
  if (product > kMaxProduct[static_cast<size_t>(frac)]) return DecimalError::kOutOfRange;
  *out = Decimal::FromRaw(
      static_cast<Int128>(product * kPow10[static_cast<size_t>(Decimal::kScale - frac)]));
  return DecimalError::kOk;
}

enum Field : int { kSymbolF, kIdF, kPriceF, kQtyF, kTimeF, kMakerF, kFieldCount };

// Field names for one Decode call, as views so matching does not touch std::string.
using decoder_internal::Names;
static_assert(Names::kFields == kFieldCount);

constexpr uint8_t LenByte(size_t n) { return static_cast<uint8_t>(n < 254 ? n : 254); }

Names MakeNames(const TradeFieldMap& fields) {
  Names n;
  n.name = {fields.symbol, fields.id, fields.price, fields.qty, fields.time, fields.buyer_maker};
  for (int f = 0; f < kFieldCount; ++f) {
    const std::string_view name = n.name[static_cast<size_t>(f)];
    if (name.size() > n.max_len) n.max_len = name.size();
    const bool never = f == kMakerF && name.empty();  // empty name: never read
    n.first |= static_cast<uint64_t>(name.empty() ? 0 : Byte(name[0])) << (8 * f);
    n.len |= static_cast<uint64_t>(never ? 255 : LenByte(name.size())) << (8 * f);
    if (name.size() == 1) n.one_byte[Byte(name[0])] |= static_cast<uint8_t>(1u << f);
  }
  return n;
}

// Bitmask of the fields named by this member name (raw bytes between the quotes).
unsigned MatchFields(const Names& names, const char* raw, size_t raw_len, bool escaped) {
  if (raw_len == 1 && !escaped) return names.one_byte[Byte(raw[0])];
  std::string_view member(raw, raw_len);
  char buf[kMaxUnescaped];
  if (escaped) {
    size_t n;
    // Decoded longer than any configured name (or than buf): matches nothing.
    if (!Unescape(raw, raw_len, buf, sizeof buf, &n) || n > names.max_len) return 0;
    member = std::string_view(buf, n);
  } else if (raw_len > names.max_len) {
    return 0;
  }
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  constexpr uint64_t kLow7 = 0x7F * kOnes;
  const uint64_t first = member.empty() ? 0 : Byte(member[0]);
  const uint64_t diff =
      (names.first ^ (first * kOnes)) | (names.len ^ (LenByte(member.size()) * kOnes));
  // 0x80 in byte f when field f's first byte and length both match (exact, no carries).
  uint64_t candidates = ~(((diff & kLow7) + kLow7) | diff | kLow7) & ((1ULL << 48) - 1);
  unsigned mask = 0;
  while (candidates != 0) {
    const int f = __builtin_ctzll(candidates) / 8;
    candidates &= candidates - 1;
    const std::string_view name = names.name[static_cast<size_t>(f)];
    if (name.size() == member.size() &&
        (name.size() <= 1 || std::memcmp(name.data(), member.data(), name.size()) == 0)) {
      mask |= 1u << f;
    }
  }
  return mask;
}

void Count(RejectReason reason, DecodeResult* r) {
  if (r->rejected == 0) r->first_reason = reason;
  ++r->rejected;
  ++r->by_reason[static_cast<size_t>(reason)];
}

RejectReason DecimalReason(DecimalError e) {
  return e == DecimalError::kTooPrecise ? RejectReason::kTooPrecise : RejectReason::kOutOfRange;
}

// A price or quantity slot, parsed. `err` keeps the parser's verdict for the value phase.
struct DecimalField {
  ParsedDecimal parsed;
  DecimalError err = DecimalError::kOk;
  bool negative = false;
};

// Type phase for a price or quantity: false means bad_type.
bool ParseDecimalSlot(const Slot& s, DecimalField* out) {
  if (s.tok == Tok::kNumber) {
    // The scanner already checked the grammar, and a negative value is non_positive whatever
    // its digits, so it needs no parsing.
    out->negative = s.begin[0] == '-';
    if (out->negative || ParseShortDecimal(s.begin, s.len, &out->parsed)) return true;
    out->err = ParseJsonNumber(std::string_view(s.begin, s.len), &out->parsed);
    return out->err != DecimalError::kSyntax;
  }
  if (s.tok != Tok::kString) return false;
  if (!s.escaped && ParseShortDecimal(s.begin, s.len, &out->parsed)) return true;
  char buf[kMaxUnescaped];
  std::string_view v;
  if (!StringValue(s, buf, &v)) return false;
  out->err = ParseDecimalString(v, &out->parsed);
  return out->err != DecimalError::kSyntax;
}

// Value phase for a price or quantity.
bool CheckDecimal(const DecimalField& d, RejectReason* reason) {
  if (d.negative) {
    *reason = RejectReason::kNonPositive;
    return false;
  }
  if (d.err != DecimalError::kOk) {
    *reason = DecimalReason(d.err);
    return false;
  }
  if (!d.parsed.value.IsPositive()) {
    *reason = RejectReason::kNonPositive;
    return false;
  }
  return true;
}

struct Context {
  const Names& names;
  TimeFormat time_format;
  int64_t latest_ms;  // now_ms + max_future_skew_ms, saturated: later trades are future_time
};

int64_t LatestAllowed(int64_t now_ms, int64_t max_future_skew_ms) {
  int64_t latest;
  if (__builtin_add_overflow(now_ms, max_future_skew_ms, &latest)) {
    latest = max_future_skew_ms > 0 ? std::numeric_limits<int64_t>::max()
                                    : std::numeric_limits<int64_t>::min();
  }
  return latest;
}

// Judges one trade object's slots; on success fills *t.
bool Judge(const Context& ctx, const std::array<Slot, kFieldCount>& slot, Trade* t,
           RejectReason* reason) {
  auto fail = [reason](RejectReason r) {
    *reason = r;
    return false;
  };
  // 2. presence
  for (int f = kSymbolF; f <= kTimeF; ++f) {
    if (slot[f].tok == Tok::kNone) return fail(RejectReason::kMissingField);
  }
  // 3. types and lexical forms
  const Slot& sym = slot[kSymbolF];
  const Slot& id = slot[kIdF];
  const Slot& time = slot[kTimeF];
  if (sym.tok != Tok::kString) return fail(RejectReason::kBadType);
  if (id.tok != Tok::kNumber || !id.integer) return fail(RejectReason::kBadType);
  DecimalField price, qty;
  if (!ParseDecimalSlot(slot[kPriceF], &price)) return fail(RejectReason::kBadType);
  if (!ParseDecimalSlot(slot[kQtyF], &qty)) return fail(RejectReason::kBadType);
  const bool epoch_time = time.tok == Tok::kNumber && time.integer;
  bool iso_time = false;
  int64_t iso_ms = 0;
  if (time.tok == Tok::kString && ctx.time_format != TimeFormat::kEpochMs) {
    char buf[kMaxUnescaped];
    std::string_view v;
    iso_time = StringValue(time, buf, &v) && ParseIso8601(v, &iso_ms);
  }
  if (ctx.time_format == TimeFormat::kIso8601 ? !iso_time : !(epoch_time || iso_time)) {
    return fail(RejectReason::kBadType);
  }
  switch (slot[kMakerF].tok) {
    case Tok::kNone:
    case Tok::kNull:
    case Tok::kFalse:
      t->buyer_maker = false;
      break;
    case Tok::kTrue:
      t->buyer_maker = true;
      break;
    default:
      return fail(RejectReason::kBadType);
  }
  // 4. symbol
  {
    char buf[kMaxUnescaped];
    std::string_view v;
    if (!StringValue(sym, buf, &v) || !IsValidSymbol(v)) return fail(RejectReason::kBadSymbol);
    t->symbol = Symbol(v);
  }
  // 5. values
  bool negative;
  int64_t magnitude;
  if (!ParseJsonInt(id, &negative, &magnitude) || negative || magnitude == 0) {
    return fail(RejectReason::kOutOfRange);
  }
  t->id = magnitude;
  if (!CheckDecimal(price, reason) || !CheckDecimal(qty, reason)) return false;
  const DecimalError product = Multiply(price.parsed, qty.parsed, &t->quote);
  if (product != DecimalError::kOk) return fail(DecimalReason(product));
  t->price = price.parsed.value;
  t->qty = qty.parsed.value;
  if (iso_time) {
    t->time_ms = iso_ms;
  } else {
    if (!ParseJsonInt(time, &negative, &magnitude)) return fail(RejectReason::kOutOfRange);
    t->time_ms = negative ? -magnitude : magnitude;
  }
  if (t->time_ms < 0) return fail(RejectReason::kOutOfRange);
  if (t->time_ms > ctx.latest_ms) return fail(RejectReason::kFutureTime);
  return true;
}

// Reads the trade object at the reader (at its '{') and judges it: appends the trade or
// counts its reason. False only on a JSON syntax error.
bool DecodeObject(const Context& ctx, int depth, Reader* rd, std::vector<Trade>* out,
                  DecodeResult* result) {
  std::array<Slot, kFieldCount> slot;
  bool duplicate = false;
  rd->Consume('{');
  rd->SkipWhitespace();
  if (!rd->Consume('}')) {
    for (;;) {
      const char* name;
      size_t name_len;
      bool escaped;
      if (!rd->Peek('"') || !rd->ScanString(&name, &name_len, &escaped)) return false;
      rd->SkipWhitespace();
      if (!rd->Consume(':')) return false;
      rd->SkipWhitespace();
      const unsigned mask = MatchFields(ctx.names, name, name_len, escaped);
      if (mask == 0) {
        if (!rd->SkipValue(depth + 1)) return false;
      } else {
        Slot value;
        if (!rd->ScanValue(depth + 1, &value)) return false;
        for (unsigned m = mask; m != 0; m &= m - 1) {
          const int f = __builtin_ctz(m);
          if (slot[f].tok != Tok::kNone) duplicate = true;
          slot[f] = value;
        }
      }
      rd->SkipWhitespace();
      if (rd->Consume('}')) break;
      if (!rd->Consume(',')) return false;
      rd->SkipWhitespace();
    }
  }
  Trade t;
  RejectReason reason = RejectReason::kMalformedJson;  // 1. duplicate member
  if (!duplicate && Judge(ctx, slot, &t, &reason)) {
    out->push_back(t);
    ++result->accepted;
  } else {
    Count(reason, result);
  }
  return true;
}

// The message body: one object or an array. False on a JSON syntax error.
bool DecodeMessage(const Context& ctx, Reader* rd, std::vector<Trade>* out, DecodeResult* result) {
  rd->SkipWhitespace();
  if (rd->Peek('{')) {
    if (!DecodeObject(ctx, 0, rd, out, result)) return false;
  } else if (rd->Consume('[')) {
    rd->SkipWhitespace();
    if (!rd->Consume(']')) {
      for (;;) {
        if (rd->Peek('{')) {
          if (!DecodeObject(ctx, 1, rd, out, result)) return false;
        } else {
          if (!rd->SkipValue(1)) return false;
          Count(RejectReason::kBadType, result);
        }
        rd->SkipWhitespace();
        if (rd->Consume(']')) break;
        if (!rd->Consume(',')) return false;
        rd->SkipWhitespace();
      }
    }
  } else {
    return false;
  }
  rd->SkipWhitespace();
  return rd->AtEnd();
}

// The fast path: one trade object exactly as real feeds send it: no whitespace, no escapes,
// plain ASCII strings, one-byte member names, string decimals, integer times and ids,
// true/false flags, and values that pass every check. Fills *t and returns true only when
// the general path would accept the message with the same trade; anything else (including
// every rejection) returns false and the general path decodes the message and says why.
// Only used when every configured name is one byte and the time may be an epoch integer.
bool FastDecode(const Context& ctx, const char* p, const char* const end, Trade* t) {
  if (end - p < 2 || *p != '{' || end[-1] != '}') return false;
  ++p;
  std::array<Slot, kFieldCount> raw;  // begin and len of each mapped value
  bool maker = false;
  unsigned seen = 0;
  while (true) {
    if (p >= end || *p != '"') return false;
    const char* const name = ++p;
    while (p < end && json::kPlainStringByte[Byte(*p)]) ++p;
    if (p >= end || *p != '"') return false;
    const unsigned mask = p - name == 1 ? ctx.names.one_byte[Byte(*name)] : 0u;
    if (++p >= end || *p != ':' || (mask & (mask - 1)) != 0 || (mask & seen) != 0) return false;
    seen |= mask;
    const char* const value = ++p;
    if (p >= end) return false;
    bool is_string = false;
    if (*p == '"') {
      ++p;
      while (p < end && json::kPlainStringByte[Byte(*p)]) ++p;
      if (p >= end || *p != '"') return false;
      ++p;
      is_string = true;
    } else if (*p >= '1' && *p <= '9') {
      p = json::SkipDigitRun(p + 1, end);
      if (p < end && (*p == '.' || *p == 'e' || *p == 'E')) return false;
    } else if (end - p >= 4 && std::memcmp(p, "true", 4) == 0) {
      p += 4;
      if (mask != 0) maker = true;  // a mapped boolean is the maker flag (checked below)
    } else if (end - p >= 5 && std::memcmp(p, "false", 5) == 0) {
      p += 5;
    } else {
      return false;
    }
    if (mask != 0) {
      const int f = __builtin_ctz(mask);
      const bool want_string = f == kSymbolF || f == kPriceF || f == kQtyF;
      const bool boolean = *value == 't' || *value == 'f';
      if ((f == kMakerF) != boolean || (f != kMakerF && want_string != is_string)) return false;
      Slot& r = raw[static_cast<size_t>(f)];
      r.begin = is_string ? value + 1 : value;
      r.len = static_cast<size_t>(p - r.begin) - (is_string ? 1 : 0);
    }
    if (p >= end) return false;
    if (*p == '}') break;
    if (*p++ != ',') return false;
  }
  if (p + 1 != end) return false;
  constexpr unsigned kRequired =
      (1u << kSymbolF) | (1u << kIdF) | (1u << kPriceF) | (1u << kQtyF) | (1u << kTimeF);
  if ((seen & kRequired) != kRequired) return false;
  const std::string_view sym(raw[kSymbolF].begin, raw[kSymbolF].len);
  if (!IsValidSymbol(sym)) return false;
  // Integers: digits without a leading zero (checked above), within int64.
  bool negative;
  int64_t id, time;
  ParsedDecimal price, qty;
  if (!ParseJsonInt(raw[kIdF], &negative, &id) || !ParseJsonInt(raw[kTimeF], &negative, &time) ||
      !ParseShortDecimal(raw[kPriceF].begin, raw[kPriceF].len, &price) ||
      !ParseShortDecimal(raw[kQtyF].begin, raw[kQtyF].len, &qty) || !price.value.IsPositive() ||
      !qty.value.IsPositive() || Multiply(price, qty, &t->quote) != DecimalError::kOk) {
    return false;
  }
  if (time > ctx.latest_ms) return false;
  t->symbol = Symbol(sym);
  t->id = id;
  t->time_ms = time;
  t->price = price.value;
  t->qty = qty.value;
  t->buyer_maker = (seen & (1u << kMakerF)) != 0 && maker;
  return true;
}

}  // namespace

bool IsValidSymbol(std::string_view s) {
  if (s.empty() || s.size() > Symbol::kMaxLen) return false;
  for (const char c : s) {
    if (!kSymbolChar[Byte(c)]) return false;
  }
  return true;
}

TradeDecoder::TradeDecoder(TradeFieldMap fields, int64_t max_future_skew_ms)
    : fields_(std::move(fields)),
      names_(MakeNames(fields_)),
      max_future_skew_ms_(max_future_skew_ms) {
  // FastDecode reads one-byte names only and never an ISO-8601 time.
  bool one_byte = fields_.time_format != TimeFormat::kIso8601;
  for (int f = 0; f < kFieldCount; ++f) {
    const size_t n = names_.name[static_cast<size_t>(f)].size();
    one_byte &= n == 1 || (f == kMakerF && n == 0);
  }
  fast_path_allowed_ = fast_path_ = one_byte;
}

DecodeResult TradeDecoder::Decode(std::string_view message, int64_t now_ms,
                                  std::vector<Trade>* out) {
  const Context ctx{names_, fields_.time_format, LatestAllowed(now_ms, max_future_skew_ms_)};
  const size_t base = out->size();
  DecodeResult result;
  if (fast_path_) {
    Trade t;
    if (FastDecode(ctx, message.data(), message.data() + message.size(), &t)) {
      out->push_back(t);
      result.accepted = 1;
      return result;
    }
  }
  Reader rd(message.data(), message.data() + message.size());
  if (!DecodeMessage(ctx, &rd, out, &result)) {
    // Undecodable: one rejected trade, and nothing of it reaches the engine.
    out->erase(out->begin() + static_cast<std::ptrdiff_t>(base), out->end());
    result = DecodeResult{};
    Count(RejectReason::kMalformedJson, &result);
  }
  return result;
}

}  // namespace klined
