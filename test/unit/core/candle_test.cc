// Candle algebra and candle JSON.
//
// The property tests check the claim the whole engine rests on: a candle is a commutative
// monoid keyed by trade id, so however a bucket's trades are shuffled, batched and merged
// (in any order and tree shape), the result equals applying them one by one in id order.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "klined/candle.h"
#include "klined/decimal.h"
#include "klined/interval.h"
#include "klined/trade.h"
#include "trade_text.h"

namespace klined {
namespace {

constexpr UtcOffset kUtc{0};
constexpr int64_t kOpen = 1732147200000;  // 2024-11-21 00:00 UTC, a 1m (and 1d) bucket open

Decimal Dec(std::string_view s) { return test::StoredDec(s); }

Trade MakeTrade(TradeId id, std::string_view price, std::string_view qty, bool buyer_maker,
                int64_t time_ms = kOpen) {
  return test::TradeFromText(id, time_ms, price, qty, buyer_maker);
}

Candle Fold(Candle c, const std::vector<Trade>& trades) {
  for (const Trade& t : trades) REQUIRE(c.Apply(t));
  return c;
}

// --- Random generation --------------------------------------------------------------------

std::string RandomDigits(std::mt19937_64& rng, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s.push_back(static_cast<char>('0' + rng() % 10));
  return s;
}

// A positive decimal string with up to max_int integer digits and exactly `frac` written
// fractional digits (trailing zeros included, as a producer might send them).
std::string RandomDecimalText(std::mt19937_64& rng, int max_int, int frac) {
  for (;;) {
    const int int_digits = static_cast<int>(rng() % (max_int + 1));
    std::string s = int_digits == 0 ? "0" : RandomDigits(rng, int_digits);
    if (frac > 0) {
      s.push_back('.');
      s += RandomDigits(rng, frac);
    }
    ParsedDecimal p;
    if (ParseDecimalString(s, &p) == DecimalError::kOk && p.value.IsPositive()) return s;
  }
}

// A trade whose price and quantity carry at most 18 fractional digits together (the
// contract's limit), so the quote is exact. `max_int` bounds integer digits of each operand;
// the product is retried until it fits.
Trade RandomTrade(std::mt19937_64& rng, TradeId id, int max_int) {
  for (;;) {
    const int pf = static_cast<int>(rng() % 19);
    const int qf = static_cast<int>(rng() % (19 - pf));
    ParsedDecimal p, q;
    REQUIRE(ParseDecimalString(RandomDecimalText(rng, max_int, pf), &p) == DecimalError::kOk);
    REQUIRE(ParseDecimalString(RandomDecimalText(rng, max_int, qf), &q) == DecimalError::kOk);
    Trade t;
    if (MultiplyExact(p, q, &t.quote) != DecimalError::kOk) continue;
    t.price = p.value;
    t.qty = q.value;
    t.id = id;
    t.time_ms = kOpen;
    t.buyer_maker = rng() % 2 == 0;
    return t;
  }
}

// n distinct ids in [1, 2^63-1], sometimes dense (adjacent ids), sometimes spread out.
std::vector<TradeId> RandomIds(std::mt19937_64& rng, size_t n) {
  const bool dense = rng() % 2 == 0;
  const uint64_t base = 1 + rng() % (1ULL << 40);
  std::vector<TradeId> ids;
  while (ids.size() < n) {
    const uint64_t raw = dense ? base + rng() % (4 * n) : 1 + rng() % ((1ULL << 63) - 1);
    ids.push_back(static_cast<TradeId>(raw));
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  }
  return ids;
}

std::vector<Trade> RandomBucketTrades(std::mt19937_64& rng, size_t n, int max_int) {
  std::vector<Trade> trades;
  for (TradeId id : RandomIds(rng, n)) trades.push_back(RandomTrade(rng, id, max_int));
  return trades;  // in id order
}

Interval RandomInterval(std::mt19937_64& rng) {
  return kAllIntervals[rng() % kAllIntervals.size()];
}

UtcOffset RandomOffset(std::mt19937_64& rng) {
  constexpr int64_t kOffsets[] = {0, 8 * 3600000, -(5 * 3600000 + 1800000), 14 * 60000};
  return UtcOffset{kOffsets[rng() % 4]};
}

Candle RandomEmpty(std::mt19937_64& rng, Interval iv, int64_t open, UtcOffset tz) {
  return Candle::Empty(iv, open, tz, Dec(RandomDecimalText(rng, 6, static_cast<int>(rng() % 9))));
}

// Merges `parts` in random order and random tree shape, writing results through every
// aliasing form Merge allows (out == a, out == b, out distinct).
Candle MergeRandomly(std::mt19937_64& rng, std::vector<Candle> parts) {
  while (parts.size() > 1) {
    const size_t i = rng() % parts.size();
    size_t j = rng() % (parts.size() - 1);
    if (j >= i) ++j;
    switch (rng() % 3) {
      case 0:
        REQUIRE(Merge(parts[i], parts[j], &parts[i]));
        break;
      case 1:
        REQUIRE(Merge(parts[i], parts[j], &parts[j]));
        std::swap(parts[i], parts[j]);
        break;
      default: {
        Candle out;
        REQUIRE(Merge(parts[i], parts[j], &out));
        parts[i] = out;
      }
    }
    parts.erase(parts.begin() + static_cast<std::ptrdiff_t>(j));
  }
  return parts.front();
}

// --- Apply and JSON: exact strings ----------------------------------------------------------

TEST_CASE("candle: contract example serializes byte for byte") {
  Candle c = test::ContractExampleCandle();  // contract section 3's example
  const std::string expected =
      R"({"t":1732147200000,"T":1732147259999,"s":"BTCUSDT","i":"1m",)"
      R"("f":101,"L":180,"o":"43210.5","h":"43250","l":"43200.1","c":"43249.9",)"
      R"("v":"12.5","q":"540123.75","V":"6.1","Q":"263601.4","n":80,"x":false})";
  CHECK(CandleJson(c, "BTCUSDT", false) == expected);

  Candle back;
  std::string_view sym;
  bool closed = true;
  REQUIRE(ParseCandleJson(expected, &back, &sym, &closed));
  CHECK(back == c);
  CHECK(sym == "BTCUSDT");
  CHECK(!closed);
}

TEST_CASE("candle: single trade replaces the carry and sets every field") {
  Candle c = Candle::Empty(Interval::k1m, kOpen, kUtc, Dec("43000"));
  REQUIRE(c.Apply(MakeTrade(101, "43210.50", "0.0100", false, kOpen + 123)));
  CHECK(CandleJson(c, "BTCUSDT", false) ==
        R"({"t":1732147200000,"T":1732147259999,"s":"BTCUSDT","i":"1m","f":101,"L":101,)"
        R"("o":"43210.5","h":"43210.5","l":"43210.5","c":"43210.5","v":"0.01","q":"432.105",)"
        R"("V":"0.01","Q":"432.105","n":1,"x":false})");
}

TEST_CASE("candle: multiple trades, taker volumes, open/close by id in any arrival order") {
  const Trade t101 = MakeTrade(101, "43210.5", "0.01", /*buyer_maker=*/false);
  const Trade t102 = MakeTrade(102, "43250", "2", /*buyer_maker=*/true);
  const Trade t103 = MakeTrade(103, "43200.1", "0.5", /*buyer_maker=*/false);
  const Trade t104 = MakeTrade(104, "43249.9", "1.49", /*buyer_maker=*/true);
  const std::string expected =
      R"({"t":1732147200000,"T":1732147259999,"s":"BTCUSDT","i":"1m","f":101,"L":104,)"
      R"("o":"43210.5","h":"43250","l":"43200.1","c":"43249.9","v":"4","q":"172974.506",)"
      R"("V":"0.51","Q":"22032.155","n":4,"x":true})";
  const Candle empty = Candle::Empty(Interval::k1m, kOpen, kUtc, Dec("1"));
  const Candle in_order = Fold(empty, {t101, t102, t103, t104});
  CHECK(CandleJson(in_order, "BTCUSDT", true) == expected);
  // Out of id order: the lowest id still opens and the highest still closes.
  CHECK(Fold(empty, {t103, t101, t104, t102}) == in_order);
  CHECK(Fold(empty, {t104, t103, t102, t101}) == in_order);

  SUBCASE("buyer_maker true counts in v/q only") {
    const Candle c = Fold(empty, {t102});
    CHECK(c.volume == Dec("2"));
    CHECK(c.quote_volume == Dec("86500"));
    CHECK(c.taker_volume.IsZero());
    CHECK(c.taker_quote_volume.IsZero());
  }
  SUBCASE("buyer_maker false counts in v/q and V/Q") {
    const Candle c = Fold(empty, {t103});
    CHECK(c.taker_volume == Dec("0.5"));
    CHECK(c.taker_quote_volume == Dec("21600.05"));
    CHECK(c.taker_volume == c.volume);
  }
}

TEST_CASE("candle: empty candle carries the previous close") {
  const Candle e = Candle::Empty(Interval::k1m, kOpen + 60000, kUtc, Dec("43249.9"));
  CHECK(e.empty());
  CHECK(e.close_time == kOpen + 2 * 60000 - 1);
  CHECK(CandleJson(e, "BTCUSDT", false) ==
        R"({"t":1732147260000,"T":1732147319999,"s":"BTCUSDT","i":"1m","f":-1,"L":-1,)"
        R"("o":"43249.9","h":"43249.9","l":"43249.9","c":"43249.9","v":"0","q":"0","V":"0",)"
        R"("Q":"0","n":0,"x":false})");

  // Close times come from the interval's calendar, offset included.
  const Candle month = Candle::Empty(Interval::k1M, 1730419200000, kUtc, Dec("1"));  // 2024-11-01
  CHECK(month.close_time == 1733011200000 - 1);                                      // 2024-12-01
  const Candle day8 =
      Candle::Empty(Interval::k1d, kOpen - 8 * 3600000, UtcOffset{8 * 3600000}, Dec("1"));
  CHECK(day8.close_time == kOpen + 16 * 3600000 - 1);

  SUBCASE("empty is the identity of Merge, on either side") {
    const Candle full = Fold(Candle::Empty(Interval::k1m, kOpen + 60000, kUtc, Dec("7")),
                             {MakeTrade(5, "2", "3", false)});
    Candle out;
    REQUIRE(Merge(e, full, &out));
    CHECK(out == full);
    REQUIRE(Merge(full, e, &out));
    CHECK(out == full);
  }
  SUBCASE("two empty candles keep the first one's carry") {
    const Candle other = Candle::Empty(Interval::k1m, kOpen + 60000, kUtc, Dec("1"));
    Candle out;
    REQUIRE(Merge(e, other, &out));
    CHECK(out == e);
    REQUIRE(Merge(other, e, &out));
    CHECK(out == other);
  }
}

// --- Overflow refusal ---------------------------------------------------------------------

TEST_CASE("candle: a sum past 20 integer digits is refused and changes nothing") {
  const Candle empty = Candle::Empty(Interval::k1m, kOpen, kUtc, Dec("1"));
  SUBCASE("volume") {
    const Candle c = Fold(empty, {MakeTrade(1, "1", "99999999999999999999", false)});
    Candle after = c;
    CHECK_FALSE(after.Apply(MakeTrade(2, "0.5", "1", false)));
    CHECK(after == c);
    // The largest value that still fits is accepted.
    const Candle d =
        Fold(empty, {MakeTrade(1, "1", "99999999999999999999.99999999999999999", false)});
    after = d;
    CHECK(after.Apply(MakeTrade(2, "1", "0.000000000000000009", false)));
    CHECK(after.volume.raw() == Decimal::kMaxRaw);
    CHECK_FALSE(after.Apply(MakeTrade(3, "1", "0.000000000000000001", false)));
  }
  SUBCASE("quote volume alone: volume is not bumped either") {
    const Candle c = Fold(empty, {MakeTrade(1, "99999999999999999999", "1", true)});
    Candle after = c;
    CHECK_FALSE(after.Apply(MakeTrade(2, "1", "1", true)));  // v fits, q does not
    CHECK(after == c);
    CHECK_FALSE(after.Apply(MakeTrade(0, "1", "1", false)));  // nor with taker sums
    CHECK(after == c);
  }
  SUBCASE("whichever of the four sums fails, the earlier ones are rolled back") {
    // White-box: Apply adds v, q, V, Q in place in that order and undoes on refusal. A
    // consistent candle has V <= v and Q <= q, so V or Q failing alone needs a hand-made one.
    const Candle base = Fold(empty, {MakeTrade(1, "2", "3", false)});
    for (int which = 0; which < 4; ++which) {
      CAPTURE(which);
      Candle c = base;
      Decimal* field[] = {&c.volume, &c.quote_volume, &c.taker_volume, &c.taker_quote_volume};
      *field[which] = Decimal::FromRaw(Decimal::kMaxRaw);
      const Candle before = c;
      CHECK_FALSE(c.Apply(MakeTrade(2, "1", "1", /*buyer_maker=*/false)));
      CHECK(c == before);
      if (which >= 2) {  // a maker-side trade does not touch V/Q, so it still applies
        CHECK(c.Apply(MakeTrade(3, "1", "1", /*buyer_maker=*/true)));
      }
    }
  }
  SUBCASE("merge refuses and leaves out untouched, aliased or not") {
    const Candle a = Fold(empty, {MakeTrade(1, "1", "60000000000000000000", false)});
    const Candle b = Fold(empty, {MakeTrade(2, "1", "50000000000000000000", false)});
    Candle out = Candle::Empty(Interval::k1m, kOpen, kUtc, Dec("3"));
    const Candle before = out;
    CHECK_FALSE(Merge(a, b, &out));
    CHECK(out == before);
    Candle alias = a;
    CHECK_FALSE(Merge(alias, b, &alias));
    CHECK(alias == a);
    CHECK_FALSE(Merge(b, alias, &alias));
    CHECK(alias == a);
  }
}

// --- Property tests: the monoid -------------------------------------------------------------

TEST_CASE("candle property: shuffle, batch and merge in any tree equals applying in id order") {
  std::mt19937_64 rng(20241121);
  for (int iter = 0; iter < 5000; ++iter) {
    CAPTURE(iter);
    const Interval iv = RandomInterval(rng);
    const UtcOffset tz = RandomOffset(rng);
    const int64_t open = BucketOpen(iv, static_cast<int64_t>(rng() % 4'000'000'000'000ULL), tz);
    const size_t n = 1 + rng() % 48;
    std::vector<Trade> trades = RandomBucketTrades(rng, n, /*max_int=*/6);

    const Candle reference = Fold(RandomEmpty(rng, iv, open, tz), trades);
    REQUIRE(reference.count == static_cast<int64_t>(n));
    REQUIRE(reference.first_id == trades.front().id);
    REQUIRE(reference.last_id == trades.back().id);
    REQUIRE(reference.open == trades.front().price);
    REQUIRE(reference.close == trades.back().price);

    std::shuffle(trades.begin(), trades.end(), rng);
    std::vector<Candle> parts;
    for (size_t i = 0; i < trades.size();) {
      const size_t len = 1 + rng() % (trades.size() - i);
      Candle part = RandomEmpty(rng, iv, open, tz);
      for (size_t k = i; k < i + len; ++k) REQUIRE(part.Apply(trades[k]));
      parts.push_back(part);
      i += len;
      // Empty batches (a shard with nothing for this bucket) are identities whatever they carry.
      if (rng() % 4 == 0) parts.push_back(RandomEmpty(rng, iv, open, tz));
    }
    std::shuffle(parts.begin(), parts.end(), rng);
    CHECK(MergeRandomly(rng, parts) == reference);
  }
}

TEST_CASE("candle property: Merge is commutative and associative, empty is its identity") {
  std::mt19937_64 rng(7);
  for (int iter = 0; iter < 2000; ++iter) {
    CAPTURE(iter);
    const Interval iv = RandomInterval(rng);
    const UtcOffset tz = RandomOffset(rng);
    const int64_t open = BucketOpen(iv, static_cast<int64_t>(rng() % 4'000'000'000'000ULL), tz);
    // Three candles over disjoint id sets of one bucket.
    const std::vector<Trade> trades = RandomBucketTrades(rng, 3 + rng() % 30, /*max_int=*/8);
    Candle c[3] = {RandomEmpty(rng, iv, open, tz), RandomEmpty(rng, iv, open, tz),
                   RandomEmpty(rng, iv, open, tz)};
    for (const Trade& t : trades) REQUIRE(c[rng() % 3].Apply(t));
    const Candle& a = c[0];
    const Candle& b = c[1];
    const Candle& d = c[2];

    Candle ab, ba, ab_d, bd, a_bd;
    REQUIRE(Merge(a, b, &ab));
    REQUIRE(Merge(b, a, &ba));
    if (!(a.empty() && b.empty())) CHECK(ab == ba);  // two empties differ only in carry
    REQUIRE(Merge(ab, d, &ab_d));
    REQUIRE(Merge(b, d, &bd));
    REQUIRE(Merge(a, bd, &a_bd));
    CHECK(ab_d == a_bd);
    CHECK(ab_d == Fold(RandomEmpty(rng, iv, open, tz), trades));

    const Candle e = RandomEmpty(rng, iv, open, tz);
    Candle ae, ea;
    REQUIRE(Merge(a, e, &ae));
    REQUIRE(Merge(e, a, &ea));
    CHECK(ae == a);
    CHECK(ea == (a.empty() ? e : a));
  }
}

// --- JSON round trip and rejection ----------------------------------------------------------

std::string RandomSymbol(std::mt19937_64& rng) {
  static constexpr std::string_view kChars =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";
  std::string s(1 + rng() % Symbol::kMaxLen, 'A');
  for (char& ch : s) ch = kChars[rng() % kChars.size()];
  return s;
}

TEST_CASE("candle property: AppendCandleJson then ParseCandleJson gives the same candle") {
  std::mt19937_64 rng(42);
  std::string json = "prefix";  // Append appends: existing content is kept
  for (int iter = 0; iter < 5000; ++iter) {
    CAPTURE(iter);
    const Interval iv = RandomInterval(rng);
    const UtcOffset tz = RandomOffset(rng);
    const int64_t open = BucketOpen(iv, static_cast<int64_t>(rng() % 4'000'000'000'000ULL), tz);
    Candle c = RandomEmpty(rng, iv, open, tz);
    // Up to 20-digit operands: exercises the widest decimals; stop at the first refusal.
    const int max_int = rng() % 4 == 0 ? 20 : 6;
    for (const Trade& t : RandomBucketTrades(rng, rng() % 6, max_int)) {
      if (!c.Apply(t)) break;
    }
    const std::string sym = RandomSymbol(rng);
    const bool closed = rng() % 2 == 0;

    json.resize(6);
    AppendCandleJson(c, sym, closed, &json);
    REQUIRE(json.starts_with("prefix"));
    const std::string_view text = std::string_view(json).substr(6);
    CAPTURE(text);
    CHECK(text == CandleJson(c, sym, closed));
    Candle back;
    std::string_view back_sym;
    bool back_closed = !closed;
    REQUIRE(ParseCandleJson(text, &back, &back_sym, &back_closed));
    CHECK(back == c);
    CHECK(back_sym == sym);
    CHECK(back_closed == closed);
  }
}

TEST_CASE("candle: ParseCandleJson accepts any field order and JSON whitespace") {
  const Candle c = Fold(Candle::Empty(Interval::k1M, 1730419200000, kUtc, Dec("1")),
                        {MakeTrade(9, "1.5", "2", false), MakeTrade(10, "1.25", "4", true)});
  const std::string reordered =
      R"( { "x" : true , "n":2,"Q":"3","V":"2","q":"8","v":"6","c":"1.25","l":"1.25","h":"1.5",)"
      R"("o":"1.5","L":10,"f":9,"i":"1M","s":"ETH-USD","T":1733011199999,"t":1730419200000 } )";
  Candle back;
  std::string_view sym;
  bool closed = false;
  REQUIRE(ParseCandleJson(reordered, &back, &sym, &closed));
  CHECK(back == c);
  CHECK(sym == "ETH-USD");
  CHECK(closed);
}

TEST_CASE("candle: ParseCandleJson rejects malformed input and leaves outputs untouched") {
  const std::string good =
      R"({"t":1732147200000,"T":1732147259999,"s":"BTCUSDT","i":"1m","f":101,"L":180,)"
      R"("o":"43210.5","h":"43250","l":"43200.1","c":"43249.9","v":"12.5","q":"540123.75",)"
      R"("V":"6.1","Q":"263601.4","n":80,"x":false})";
  Candle out = Candle::Empty(Interval::k3d, 0, kUtc, Dec("5"));
  const Candle sentinel = out;
  std::string_view sym = "unchanged";
  bool closed = true;
  REQUIRE(ParseCandleJson(good, &out, &sym, &closed));
  out = sentinel;
  sym = "unchanged";
  closed = true;

  auto replace = [&](std::string_view from, std::string_view to) {
    std::string s = good;
    const size_t at = s.find(from);
    REQUIRE(at != std::string::npos);
    s.replace(at, from.size(), to);
    return s;
  };
  const std::vector<std::string> bad = {
      "", "{}", "[]", "null", good + " x", good + "}", "{" + good,
      replace(R"("t":1732147200000,)", ""),               // missing field
      replace(R"("x":false)", R"("x":false,"x":false)"),  // duplicate field
      replace(R"("x":false)", R"("x":false,"e":1)"),      // unknown field
      replace(R"("x":false)", R"("x":false,)"),           // trailing comma
      replace(R"("x":false)", R"("x":0)"),                // ill-typed bool
      replace(R"("x":false)", R"("x":fals)"), replace(R"("n":80)", R"("n":"80")"),  // ill-typed int
      replace(R"("n":80)", R"("n":080)"),                                           // leading zero
      replace(R"("n":80)", R"("n":80.0)"),                                          // fraction
      replace(R"("n":80)", R"("n":8e1)"),                                           // exponent
      replace(R"("n":80)", R"("n":-)"),
      replace(R"("t":1732147200000)", R"("t":9223372036854775808)"),  // int64 overflow
      replace(R"("o":"43210.5")", R"("o":43210.5)"),                  // decimal not a string
      replace(R"("o":"43210.5")", R"("o":"4.3e4")"),                  // exponent
      replace(R"("o":"43210.5")", R"("o":".5")"),
      replace(R"("o":"43210.5")", R"("o":"1.0000000000000000001")"),  // 19 fractional digits
      replace(R"("v":"12.5")", R"("v":"100000000000000000000")"),     // 21 integer digits
      replace(R"("o":"43210.5")", R"("o":"43210\u002e5")"),           // escape
      replace(R"("i":"1m")", R"("i":"2m")"),                          // unknown interval
      replace(R"("i":"1m")", R"("i":"1M ")"),
      replace(R"("s":"BTCUSDT")", R"("s":"")"),  // bad symbols
      replace(R"("s":"BTCUSDT")", R"("s":"BTC/USDT")"),
      replace(R"("s":"BTCUSDT")", R"("s":"ABCDEFGHIJABCDEFGHIJABCDEFGHIJABC")"),  // 33 chars
      replace(R"("s":"BTCUSDT")", R"("s":BTCUSDT)"),
      replace(R"("s":"BTCUSDT")", R"("s":"BTC"USDT")"), replace(R"("t":)", R"("tt":)"),  // long key
      replace(R"("t":)", R"("t" 1)"),  // missing colon
      replace(R"(,"T")", R"("T")"),    // missing comma
      // Well-formed but impossible candles (corruption must not enter the merge algebra).
      replace(R"("n":80)", R"("n":-1)"),                        // negative count
      replace(R"("n":80)", R"("n":0)"),                         // empty with ids
      replace(R"("f":101,"L":180)", R"("f":181,"L":180)"),      // f > L
      replace(R"("h":"43250")", R"("h":"43210")"),              // high below open
      replace(R"("l":"43200.1")", R"("l":"43249.95")"),         // low above close
      replace(R"("V":"6.1")", R"("V":"12.6")"),                 // V > v
      replace(R"("Q":"263601.4")", R"("Q":"-1")"),              // negative volume
      replace(R"("T":1732147259999)", R"("T":1732147199999)"),  // close before open
  };
  for (const std::string& s : bad) {
    CAPTURE(s);
    CHECK_FALSE(ParseCandleJson(s, &out, &sym, &closed));
    CHECK(out == sentinel);
    CHECK(sym == "unchanged");
    CHECK(closed);
  }
  // Every strict prefix is incomplete.
  for (size_t len = 0; len < good.size(); ++len) {
    CAPTURE(len);
    CHECK_FALSE(ParseCandleJson(std::string_view(good).substr(0, len), &out, &sym, &closed));
  }
}

TEST_CASE("candle: ParseCandleJson survives mutated and random input") {
  // Not a fuzzer, but runs under ASan/UBSan in CI: each mutation must be refused or parse into
  // a candle that writes back to valid JSON that parses to the same candle.
  const std::string good =
      CandleJson(Fold(Candle::Empty(Interval::k1h, kOpen, kUtc, Dec("1")),
                      {MakeTrade(3, "0.000000001", "123456789.123456789", false),
                       MakeTrade(4, "2", "1", true)}),
                 "A.b_c-9", true);
  std::mt19937_64 rng(99);
  static constexpr std::string_view kAlphabet =
      "{}[]\":,-.0123456789 etrufalsxnTLfivqQVochlms\\\x01";
  int parsed = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::string s = good;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < edits; ++k) {
      const size_t at = rng() % (s.size() + 1);
      switch (rng() % 3) {
        case 0:
          if (at < s.size()) s[at] = kAlphabet[rng() % kAlphabet.size()];
          break;
        case 1:
          if (at < s.size()) s.erase(at, 1);
          break;
        default:
          s.insert(at, 1, kAlphabet[rng() % kAlphabet.size()]);
      }
    }
    if (iter % 4 == 0) {  // pure garbage too
      s.resize(rng() % 64);
      for (char& ch : s) ch = static_cast<char>(rng());
    }
    Candle c;
    std::string_view sym;
    bool closed;
    if (ParseCandleJson(s, &c, &sym, &closed)) {
      ++parsed;
      Candle again;
      std::string_view sym2;
      bool closed2;
      const std::string rewritten = CandleJson(c, sym, closed);
      REQUIRE(ParseCandleJson(rewritten, &again, &sym2, &closed2));
      CHECK(again == c);
    }
  }
  CHECK(parsed > 0);  // some mutations (digits, whitespace) stay valid
}

}  // namespace
}  // namespace klined
