// Tests for include/klined/decimal.h: the contract's decimal grammars, exact conversion, the
// 20-integer / 18-fractional digit limits, checked arithmetic and canonical formatting.
// Expected products and formatted values were computed with Python's decimal module
// (precision 100) and hardcoded.
#include "klined/decimal.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <random>
#include <string>

namespace klined {
namespace {

using decimal_internal::Pow10;

constexpr Int128 kOne = Decimal::kOne;
constexpr Int128 kMaxRaw = Decimal::kMaxRaw;

const char* ErrorName(DecimalError e) {
  switch (e) {
    case DecimalError::kOk:
      return "ok";
    case DecimalError::kSyntax:
      return "syntax";
    case DecimalError::kOutOfRange:
      return "out_of_range";
    case DecimalError::kTooPrecise:
      return "too_precise";
  }
  return "?";
}

// Formats through the public API so a failing CHECK shows a readable value.
std::string Str(Decimal d) { return d.ToString(); }

std::string Str(UInt128 v) {
  if (v == 0) return "0";
  std::string s;
  for (; v != 0; v /= 10) s.insert(s.begin(), static_cast<char>('0' + static_cast<int>(v % 10)));
  return s;
}

struct ParseCase {
  const char* text;
  DecimalError err;
  const char* formatted;  // canonical value when err is kOk
};

// Shared by both grammars: inputs that are valid in both and mean the same value.
void CheckParsed(const ParseCase& c, DecimalError err, const ParsedDecimal& p) {
  CAPTURE(c.text);
  CHECK(std::string(ErrorName(err)) == ErrorName(c.err));
  if (err == DecimalError::kOk && c.err == DecimalError::kOk) {
    CHECK(Str(p.value) == c.formatted);
    // The mantissa and fractional digit count reproduce the value exactly.
    REQUIRE(p.frac_digits >= 0);
    REQUIRE(p.frac_digits <= Decimal::kScale);
    const UInt128 magnitude = p.mantissa * Pow10(Decimal::kScale - p.frac_digits);
    const Int128 raw = p.value.raw();
    CHECK(Str(magnitude) == Str(static_cast<UInt128>(raw < 0 ? -raw : raw)));
  }
}

TEST_CASE("Decimal: ParseDecimalString grammar") {
  const ParseCase kCases[] = {
      {"0", DecimalError::kOk, "0"},        {"007", DecimalError::kOk, "7"},
      {"1.50", DecimalError::kOk, "1.5"},   {"0.0", DecimalError::kOk, "0"},
      {"000.000", DecimalError::kOk, "0"},  {"1", DecimalError::kOk, "1"},
      {"10", DecimalError::kOk, "10"},      {"100.001", DecimalError::kOk, "100.001"},
      {"0.05", DecimalError::kOk, "0.05"},  {"43210.5", DecimalError::kOk, "43210.5"},
      {"", DecimalError::kSyntax, ""},      {".5", DecimalError::kSyntax, ""},
      {"5.", DecimalError::kSyntax, ""},    {".", DecimalError::kSyntax, ""},
      {"+1", DecimalError::kSyntax, ""},    {"-1", DecimalError::kSyntax, ""},
      {"-0", DecimalError::kSyntax, ""},    {"1e5", DecimalError::kSyntax, ""},
      {"1E5", DecimalError::kSyntax, ""},   {" 1", DecimalError::kSyntax, ""},
      {"1 ", DecimalError::kSyntax, ""},    {"1,5", DecimalError::kSyntax, ""},
      {"1..2", DecimalError::kSyntax, ""},  {"1.2.3", DecimalError::kSyntax, ""},
      {"0x10", DecimalError::kSyntax, ""},  {"NaN", DecimalError::kSyntax, ""},
      {"1_000", DecimalError::kSyntax, ""},
  };
  for (const ParseCase& c : kCases) {
    ParsedDecimal p;
    CheckParsed(c, ParseDecimalString(c.text, &p), p);
  }
  // An embedded NUL is not a terminator.
  ParsedDecimal p;
  CHECK(ParseDecimalString(std::string_view("1\0", 2), &p) == DecimalError::kSyntax);
}

TEST_CASE("Decimal: ParseDecimalString keeps significant digits only") {
  struct Case {
    const char* text;
    uint64_t mantissa;
    int frac_digits;
  };
  const Case kCases[] = {
      {"1.50", 15, 1}, {"1.5000000000000000000000", 15, 1},
      {"100", 100, 0}, {"007.00", 7, 0},
      {"0.05", 5, 2},  {"0.000000000000000001", 1, 18},
      {"0", 0, 0},     {"120.0340", 120034, 3},
  };
  for (const Case& c : kCases) {
    CAPTURE(c.text);
    ParsedDecimal p;
    REQUIRE(ParseDecimalString(c.text, &p) == DecimalError::kOk);
    CHECK(Str(p.mantissa) == Str(UInt128{c.mantissa}));
    CHECK(p.frac_digits == c.frac_digits);
  }
}

TEST_CASE("Decimal: ParseJsonNumber grammar") {
  const ParseCase kCases[] = {
      {"0", DecimalError::kOk, "0"},           {"-0", DecimalError::kOk, "0"},
      {"-0.0", DecimalError::kOk, "0"},        {"0.0e-5", DecimalError::kOk, "0"},
      {"1", DecimalError::kOk, "1"},           {"-1.25", DecimalError::kOk, "-1.25"},
      {"1e5", DecimalError::kOk, "100000"},    {"1E5", DecimalError::kOk, "100000"},
      {"1e+5", DecimalError::kOk, "100000"},   {"1e-5", DecimalError::kOk, "0.00001"},
      {"1.5e-3", DecimalError::kOk, "0.0015"}, {"12.5e1", DecimalError::kOk, "125"},
      {"12.5e-1", DecimalError::kOk, "1.25"},  {"0.5e1", DecimalError::kOk, "5"},
      {"1e0", DecimalError::kOk, "1"},         {"1e007", DecimalError::kOk, "10000000"},
      {"-3.000e2", DecimalError::kOk, "-300"}, {"43210.50", DecimalError::kOk, "43210.5"},
      {"", DecimalError::kSyntax, ""},         {"-", DecimalError::kSyntax, ""},
      {"01", DecimalError::kSyntax, ""},       {"00", DecimalError::kSyntax, ""},
      {"-01", DecimalError::kSyntax, ""},      {"1.", DecimalError::kSyntax, ""},
      {"1.e5", DecimalError::kSyntax, ""},     {".1", DecimalError::kSyntax, ""},
      {"-.1", DecimalError::kSyntax, ""},      {"1e", DecimalError::kSyntax, ""},
      {"1e+", DecimalError::kSyntax, ""},      {"1e-", DecimalError::kSyntax, ""},
      {"1e5.5", DecimalError::kSyntax, ""},    {"1ee5", DecimalError::kSyntax, ""},
      {"+1", DecimalError::kSyntax, ""},       {"--1", DecimalError::kSyntax, ""},
      {"- 1", DecimalError::kSyntax, ""},      {" 1", DecimalError::kSyntax, ""},
      {"1 ", DecimalError::kSyntax, ""},       {"NaN", DecimalError::kSyntax, ""},
      {"Infinity", DecimalError::kSyntax, ""}, {"-Infinity", DecimalError::kSyntax, ""},
      {"0x1", DecimalError::kSyntax, ""},      {"1,5", DecimalError::kSyntax, ""},
      {"\"1\"", DecimalError::kSyntax, ""},
  };
  for (const ParseCase& c : kCases) {
    ParsedDecimal p;
    CheckParsed(c, ParseJsonNumber(c.text, &p), p);
  }
}

TEST_CASE("Decimal: integer and fractional digit limits") {
  const ParseCase kCases[] = {
      // Exactly 20 integer digits is fine, 21 is not; leading zeros do not count.
      {"12345678901234567890", DecimalError::kOk, "12345678901234567890"},
      {"99999999999999999999", DecimalError::kOk, "99999999999999999999"},
      {"00000000000000000000099999999999999999999", DecimalError::kOk, "99999999999999999999"},
      {"100000000000000000000", DecimalError::kOutOfRange, ""},
      {"123456789012345678901", DecimalError::kOutOfRange, ""},
      {"100000000000000000000.0000", DecimalError::kOutOfRange, ""},
      // Exactly 18 fractional digits is fine, 19 is not; trailing zeros do not count.
      {"0.123456789012345678", DecimalError::kOk, "0.123456789012345678"},
      {"0.000000000000000001", DecimalError::kOk, "0.000000000000000001"},
      {"0.1234567890123456789", DecimalError::kTooPrecise, ""},
      {"0.0000000000000000001", DecimalError::kTooPrecise, ""},
      {"0.123456789012345678000000000", DecimalError::kOk, "0.123456789012345678"},
      {"1.0000000000000000000000000000000000000000", DecimalError::kOk, "1"},
      // Both at their limit: the largest value.
      {"99999999999999999999.999999999999999999", DecimalError::kOk,
       "99999999999999999999.999999999999999999"},
      {"99999999999999999999.9999999999999999999", DecimalError::kTooPrecise, ""},
      {"12345678901234567890.123456789012345678", DecimalError::kOk,
       "12345678901234567890.123456789012345678"},
  };
  for (const ParseCase& c : kCases) {
    ParsedDecimal p;
    CheckParsed(c, ParseDecimalString(c.text, &p), p);
    // Without leading zeros these are JSON numbers too, with the same meaning.
    if (c.text[0] != '0' || c.text[1] == '.') {
      ParsedDecimal q;
      CheckParsed(c, ParseJsonNumber(c.text, &q), q);
    }
  }
  ParsedDecimal p;
  REQUIRE(ParseDecimalString("99999999999999999999.999999999999999999", &p) == DecimalError::kOk);
  CHECK(p.value.raw() == kMaxRaw);
  CHECK(p.frac_digits == 18);
}

TEST_CASE("Decimal: JSON exponents at and past the limits") {
  const ParseCase kCases[] = {
      {"1e19", DecimalError::kOk, "10000000000000000000"},
      {"9.9e19", DecimalError::kOk, "99000000000000000000"},
      {"1e20", DecimalError::kOutOfRange, ""},
      {"0.1e21", DecimalError::kOutOfRange, ""},
      {"1e-18", DecimalError::kOk, "0.000000000000000001"},
      {"10e-19", DecimalError::kOk, "0.000000000000000001"},
      {"1000e-21", DecimalError::kOk, "0.000000000000000001"},
      {"1e-19", DecimalError::kTooPrecise, ""},
      {"1.5e-17", DecimalError::kOk, "0.000000000000000015"},
      {"1.5e-18", DecimalError::kTooPrecise, ""},
      {"1e999999999999", DecimalError::kOutOfRange, ""},
      {"1e-999999999999", DecimalError::kTooPrecise, ""},
      {"-1e999999999999", DecimalError::kOutOfRange, ""},
      {"1e99999999999999999999999999999999999999", DecimalError::kOutOfRange, ""},
      {"1e-99999999999999999999999999999999999999", DecimalError::kTooPrecise, ""},
      {"0e999999", DecimalError::kOk, "0"},
      {"0e999999999999999999999999", DecimalError::kOk, "0"},
      {"-0.000e-999999999999", DecimalError::kOk, "0"},
      // 40 significant digits: 20 integer and 20 fractional.
      {"1234567890123456789012345678901234567890e-20", DecimalError::kTooPrecise, ""},
      {"1234567890123456789012345678901234567800e-20", DecimalError::kOk,
       "12345678901234567890.123456789012345678"},
      {"99999999999999999999999999999999999999e-18", DecimalError::kOk,
       "99999999999999999999.999999999999999999"},
      {"999999999999999999999999999999999999999e-18", DecimalError::kOutOfRange, ""},
  };
  for (const ParseCase& c : kCases) {
    ParsedDecimal p;
    CheckParsed(c, ParseJsonNumber(c.text, &p), p);
  }
}

TEST_CASE("Decimal: long inputs whose exponent cancels their digit count stay exact") {
  // A JSON number may be as long as a Kafka message (about 1 MB). Its exponent must be weighed
  // against the digits actually written, so clamping a large exponent may not change the value.
  constexpr size_t kZeros = 1'000'001;
  ParsedDecimal p;
  // 1 followed by 1000001 zeros, times 10^-1000001: exactly 1.
  const std::string big = "1" + std::string(kZeros, '0') + "e-1000001";
  REQUIRE(ParseJsonNumber(big, &p) == DecimalError::kOk);
  CHECK(Str(p.value) == "1");
  // 0.000...0001 with 1000001 fractional digits, times 10^1000001: exactly 1.
  const std::string tiny = "0." + std::string(kZeros - 1, '0') + "1e1000001";
  REQUIRE(ParseJsonNumber(tiny, &p) == DecimalError::kOk);
  CHECK(Str(p.value) == "1");
  // Right at the limits: 10^19 and 10^20 as a 1 followed by 1000001 zeros; 10^-18 and 10^-19
  // as a 1 after 1000000 fractional zeros.
  const std::string one_zeros = "1" + std::string(kZeros, '0');
  const std::string point_one = "0." + std::string(kZeros - 1, '0') + "1";
  REQUIRE(ParseJsonNumber(one_zeros + "e-999982", &p) == DecimalError::kOk);
  CHECK(Str(p.value) == "10000000000000000000");
  CHECK(ParseJsonNumber(one_zeros + "e-999981", &p) == DecimalError::kOutOfRange);
  REQUIRE(ParseJsonNumber(point_one + "e999983", &p) == DecimalError::kOk);
  CHECK(Str(p.value) == "0.000000000000000001");
  CHECK(ParseJsonNumber(point_one + "e999982", &p) == DecimalError::kTooPrecise);
  // Exponents past any clamp keep their verdict even against a million digits.
  CHECK(ParseJsonNumber(one_zeros + "e-999999999999", &p) == DecimalError::kTooPrecise);
  CHECK(ParseJsonNumber(point_one + "e999999999999", &p) == DecimalError::kOutOfRange);
  CHECK(ParseJsonNumber(one_zeros + "e-99999999999999999999999999", &p) ==
        DecimalError::kTooPrecise);
  CHECK(ParseJsonNumber(point_one + "e99999999999999999999999999", &p) ==
        DecimalError::kOutOfRange);
  // Long runs of leading and trailing zeros in the plain grammar.
  const std::string padded = std::string(kZeros, '0') + "12.5" + std::string(kZeros, '0');
  REQUIRE(ParseDecimalString(padded, &p) == DecimalError::kOk);
  CHECK(Str(p.value) == "12.5");
}

TEST_CASE("Decimal: canonical Format") {
  struct Case {
    Int128 raw;
    const char* text;
  };
  constexpr Int128 k1e19 = static_cast<Int128>(Pow10(19));
  const Case kCases[] = {
      {0, "0"},
      {kOne, "1"},
      {-kOne, "-1"},
      {kOne * 15 / 10, "1.5"},
      {-kOne * 15 / 10, "-1.5"},
      {1, "0.000000000000000001"},
      {-1, "-0.000000000000000001"},
      {kOne / 10, "0.1"},
      {kOne * 100, "100"},
      {kOne * 100 + kOne / 100, "100.01"},
      {kMaxRaw, "99999999999999999999.999999999999999999"},
      {-kMaxRaw, "-99999999999999999999.999999999999999999"},
      // Largest value below 10^19: the single 64-bit integer path.
      {k1e19 * kOne - 1, "9999999999999999999.999999999999999999"},
      {(k1e19 - 1) * kOne, "9999999999999999999"},
      // 10^19 and up: the integer part is split in two, and the low 19 digits keep their zeros.
      {k1e19 * kOne, "10000000000000000000"},
      {-k1e19 * kOne, "-10000000000000000000"},
      {k1e19 * kOne + 1, "10000000000000000000.000000000000000001"},
      {(k1e19 + 5) * kOne, "10000000000000000005"},
      {(2 * k1e19 + 7) * kOne + kOne / 2, "20000000000000000007.5"},
      {(9 * k1e19 + 123456789) * kOne, "90000000000123456789"},
      {(k1e19 * 9 + (k1e19 - 1)) * kOne, "99999999999999999999"},
  };
  for (const Case& c : kCases) {
    CAPTURE(c.text);
    const Decimal d = Decimal::FromRaw(c.raw);
    char buf[Decimal::kMaxChars];
    const size_t n = d.Format(buf);
    REQUIRE(n <= Decimal::kMaxChars);
    CHECK(std::string(buf, n) == c.text);
    CHECK(d.ToString() == c.text);
    std::string appended = "x=";
    d.AppendTo(&appended);
    CHECK(appended == std::string("x=") + c.text);
    Decimal back;
    REQUIRE(ParseStoredDecimal(c.text, &back) == DecimalError::kOk);
    CHECK(back == d);
  }
  CHECK(Decimal::FromRaw(-kMaxRaw).ToString().size() == Decimal::kMaxChars);
  CHECK(Decimal::FromInt(-42).ToString() == "-42");
}

TEST_CASE("Decimal: Add and Sub refuse overflow and leave the output untouched") {
  const Decimal max = Decimal::FromRaw(kMaxRaw);
  const Decimal min = Decimal::FromRaw(-kMaxRaw);
  const Decimal tick = Decimal::FromRaw(1);
  const Decimal sentinel = Decimal::FromInt(777);

  struct Case {
    Decimal a;
    Decimal b;
    bool sub;
    bool ok;
    Decimal result;
  };
  const Case kCases[] = {
      {max, tick, false, false, {}},
      {tick, max, false, false, {}},
      {max, max, false, false, {}},  // 2 * (10^38 - 1) > 2^127: must not wrap
      {min, min, false, false, {}},
      {min, tick, true, false, {}},
      {min, max, true, false, {}},
      {max, min, true, false, {}},
      {Decimal::FromRaw(kMaxRaw - 1), tick, false, true, max},
      {max, min, false, true, Decimal()},
      {max, max, true, true, Decimal()},
      {min, Decimal::FromRaw(-1), true, true, Decimal::FromRaw(-kMaxRaw + 1)},
      {Decimal::FromInt(2), Decimal::FromInt(3), true, true, Decimal::FromInt(-1)},
  };
  for (const Case& c : kCases) {
    CAPTURE(Str(c.a));
    CAPTURE(Str(c.b));
    CAPTURE(c.sub);
    Decimal out = sentinel;
    const bool ok = c.sub ? Decimal::Sub(c.a, c.b, &out) : Decimal::Add(c.a, c.b, &out);
    CHECK(ok == c.ok);
    CHECK(Str(out) == Str(c.ok ? c.result : sentinel));
  }

  // Add is constexpr: the refusal holds at compile time too.
  static_assert([] {
    Decimal out;
    return !Decimal::Add(Decimal::FromRaw(kMaxRaw), Decimal::FromRaw(kMaxRaw), &out) &&
           Decimal::Add(Decimal::FromRaw(kMaxRaw), Decimal::FromRaw(-1), &out) &&
           out.raw() == kMaxRaw - 1;
  }());
}

// Parses both operands with the string grammar and multiplies them.
DecimalError Multiply(const char* a, const char* b, Decimal* out) {
  ParsedDecimal pa;
  ParsedDecimal pb;
  REQUIRE(ParseDecimalString(a, &pa) == DecimalError::kOk);
  REQUIRE(ParseDecimalString(b, &pb) == DecimalError::kOk);
  return MultiplyExact(pa, pb, out);
}

TEST_CASE("Decimal: MultiplyExact is exact and checks its limits") {
  struct Case {
    const char* a;
    const char* b;
    DecimalError err;
    const char* product;
  };
  const Case kCases[] = {
      {"0.1", "3", DecimalError::kOk, "0.3"},
      {"0.1", "0.2", DecimalError::kOk, "0.02"},
      {"43210.5", "12.5", DecimalError::kOk, "540131.25"},
      {"0", "99999999999999999999", DecimalError::kOk, "0"},
      {"0", "0.000000000000000001", DecimalError::kOk, "0"},
      {"1.50", "2.0", DecimalError::kOk, "3"},
      // Fractional digits together: 18 is fine, 19 is too precise.
      {"0.000000001", "0.000000001", DecimalError::kOk, "0.000000000000000001"},
      {"0.5", "0.00000000000000001", DecimalError::kOk, "0.000000000000000005"},
      {"0.0000000001", "0.000000001", DecimalError::kTooPrecise, ""},
      {"0.5", "0.000000000000000001", DecimalError::kTooPrecise, ""},
      // Trailing zeros do not count.
      {"0.500000000000000000", "0.000000000000000001", DecimalError::kTooPrecise, ""},
      {"0.50000000000", "0.00000000000000001", DecimalError::kOk, "0.000000000000000005"},
      // Integer digits of the product: 20 is fine, 21 is out of range.
      {"99999999999999999999", "1", DecimalError::kOk, "99999999999999999999"},
      {"9999999999", "10000000000", DecimalError::kOk, "99999999990000000000"},
      {"10000000000", "10000000000", DecimalError::kOutOfRange, ""},
      {"99999999999999999999", "1.1", DecimalError::kOutOfRange, ""},
      // The mantissa product fits but scaling it by 10^18 passes 2^128.
      {"100000000000", "10000000000", DecimalError::kOutOfRange, ""},
      // Mantissas around 2^64: 2^64-1 x 5.42 has 20 integer digits, 2^64 x 5.43 has 21.
      {"18446744073709551615", "5.42", DecimalError::kOk, "99981352879505769753.3"},
      {"18446744073709551616", "5.43", DecimalError::kOutOfRange, ""},
      {"1844674407370955161.5", "5.42", DecimalError::kOk, "9998135287950576975.33"},
      // Mantissa products at the 2^128 edge: (2^64-1)(2^64+1) = 2^128-1 fits in 128 bits but is
      // far out of range; 2^64 x 2^64 = 2^128 overflows the multiply itself.
      {"18.446744073709551615", "18446744073709551617", DecimalError::kOutOfRange, ""},
      {"1844674407370955161.6", "18446744073709551.616", DecimalError::kOutOfRange, ""},
      {"18446744073709551616", "18446744073709551616", DecimalError::kOutOfRange, ""},
      // Large mantissas whose product is in range, to the last digit.
      {"9.999999999999999999", "9999999999999999999", DecimalError::kOk,
       "99999999999999999980.000000000000000001"},
      {"99999999999999999999.99999999999999999", "1.0", DecimalError::kOk,
       "99999999999999999999.99999999999999999"},
      {"99999999999999999999.99999999999999999", "1.1", DecimalError::kOutOfRange, ""},
      {"0.99999999999999999", "0.9", DecimalError::kOk, "0.899999999999999991"},
  };
  for (const Case& c : kCases) {
    CAPTURE(c.a);
    CAPTURE(c.b);
    const Decimal sentinel = Decimal::FromInt(777);
    Decimal out = sentinel;
    const DecimalError err = Multiply(c.a, c.b, &out);
    CHECK(std::string(ErrorName(err)) == ErrorName(c.err));
    CHECK(Str(out) == (c.err == DecimalError::kOk ? std::string(c.product) : Str(sentinel)));
    // Commutative, including which error is reported.
    Decimal swapped;
    CHECK(Multiply(c.b, c.a, &swapped) == err);
    if (err == DecimalError::kOk) CHECK(swapped == out);
  }
}

TEST_CASE("Decimal: ParseStoredDecimal grammar") {
  struct Case {
    const char* text;
    DecimalError err;
    Int128 raw;
  };
  const Case kCases[] = {
      {"0", DecimalError::kOk, 0},
      {"-0", DecimalError::kOk, 0},
      {"-1.5", DecimalError::kOk, -kOne * 15 / 10},
      {"007.50", DecimalError::kOk, kOne * 75 / 10},
      {"-99999999999999999999.999999999999999999", DecimalError::kOk, -kMaxRaw},
      {"-100000000000000000000", DecimalError::kOutOfRange, 0},
      {"-0.0000000000000000001", DecimalError::kTooPrecise, 0},
      {"", DecimalError::kSyntax, 0},
      {"-", DecimalError::kSyntax, 0},
      {"+1", DecimalError::kSyntax, 0},
      {"--1", DecimalError::kSyntax, 0},
      {"-.5", DecimalError::kSyntax, 0},
      {"1e5", DecimalError::kSyntax, 0},
      {"1.", DecimalError::kSyntax, 0},
  };
  for (const Case& c : kCases) {
    CAPTURE(c.text);
    Decimal out = Decimal::FromInt(777);
    const DecimalError err = ParseStoredDecimal(c.text, &out);
    CHECK(std::string(ErrorName(err)) == ErrorName(c.err));
    CHECK(Str(out) ==
          Str(c.err == DecimalError::kOk ? Decimal::FromRaw(c.raw) : Decimal::FromInt(777)));
  }
}

TEST_CASE("Decimal: Format and ParseStoredDecimal round-trip random values") {
  std::mt19937_64 rng(0x6b6c696e6564ULL);  // "klined"
  constexpr UInt128 kSpan = static_cast<UInt128>(kMaxRaw) + 1;
  for (int i = 0; i < 50'000; ++i) {
    // Uniform over the whole range, then a random number of low digits zeroed so short and
    // trailing-zero-heavy values (and integers) are common too.
    const UInt128 wide = (static_cast<UInt128>(rng()) << 64) | rng();
    UInt128 magnitude = wide % kSpan;
    const int shape = static_cast<int>(rng() % 4);
    if (shape == 1) magnitude %= Pow10(static_cast<int>(rng() % 39));
    if (shape == 2) magnitude -= magnitude % Pow10(static_cast<int>(rng() % 39));
    if (i < 4) magnitude = i < 2 ? 0 : kSpan - 1;
    const bool negative = (rng() & 1) != 0;
    const Int128 raw = negative ? -static_cast<Int128>(magnitude) : static_cast<Int128>(magnitude);
    const Decimal d = Decimal::FromRaw(raw);

    char buf[Decimal::kMaxChars];
    const size_t n = d.Format(buf);
    const std::string text(buf, n);
    CAPTURE(text);
    REQUIRE(n >= 1);
    REQUIRE(n <= Decimal::kMaxChars);
    // Canonical: no trailing fractional zero or '.', no leading zero before a digit, no "-0".
    CHECK(text.back() != '.');
    if (text.find('.') != std::string::npos) CHECK(text.back() != '0');
    const size_t digits_at = text[0] == '-' ? 1 : 0;
    if (text.size() > digits_at + 1) CHECK((text[digits_at] != '0' || text[digits_at + 1] == '.'));
    CHECK(text != "-0");

    Decimal back;
    REQUIRE(ParseStoredDecimal(text, &back) == DecimalError::kOk);
    CHECK(back == d);
    // The canonical form of a non-negative value is valid in both trade grammars too.
    const std::string unsigned_text = text.substr(digits_at);
    ParsedDecimal p;
    REQUIRE(ParseDecimalString(unsigned_text, &p) == DecimalError::kOk);
    CHECK(Str(static_cast<UInt128>(p.value.raw())) == Str(magnitude));
    REQUIRE(ParseJsonNumber(text, &p) == DecimalError::kOk);
    CHECK(p.value == d);
  }
}

}  // namespace
}  // namespace klined
