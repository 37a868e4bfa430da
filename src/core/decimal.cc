#include "klined/decimal.h"

#include <cstring>

namespace klined {
namespace {

using decimal_internal::Pow10;

constexpr int kMaxMantissaDigits = Decimal::kMaxIntDigits + Decimal::kScale;  // 38
// A JSON exponent is clamped to this magnitude while it is read, so it cannot overflow int64
// (the accumulator stays below 10 * kExponentClamp + 9 < 2^63). The clamp must also exceed the
// input's length by a wide margin, not just the representable exponents: the exponent is
// offset by the digits written (value = mantissa * 10^(exponent - fraction digits + trailing
// zeros)), and those counts grow with the input, e.g. "1" + a million zeros + "e-1000001" is
// exactly 1. No input can approach 10^17 bytes, so a clamped exponent still lands far outside
// the range and yields the same verdict as the true one.
constexpr int64_t kExponentClamp = 100'000'000'000'000'000;  // 10^17

constexpr bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Collects the significant digits of a decimal written as digits with an optional point and
// exponent. Leading zeros are skipped and trailing zeros deferred, so `mantissa` holds the
// significant digits only and `exp10` says where the point goes: value = mantissa * 10^exp10.
class DigitAccumulator {
 public:
  void Push(char c, bool after_point) {
    if (after_point) ++frac_seen_;
    const unsigned d = static_cast<unsigned>(c - '0');
    if (d == 0) {
      if (sig_ > 0) ++pending_zeros_;
      return;
    }
    // Flush deferred zeros: they were significant after all.
    for (int64_t i = 0; i <= pending_zeros_; ++i) Shift();
    mantissa_ += d;
    pending_zeros_ = 0;
  }

  // Value is mantissa * 10^(exponent - fractional digits written + trailing zeros dropped).
  DecimalError Finish(int64_t exponent, ParsedDecimal* out, bool negative) const {
    if (sig_ == 0) {  // zero, whatever its exponent
      *out = ParsedDecimal{};
      return DecimalError::kOk;
    }
    const int64_t exp10 = exponent - frac_seen_ + pending_zeros_;
    const int64_t int_digits = sig_ + exp10;
    if (int_digits > Decimal::kMaxIntDigits) return DecimalError::kOutOfRange;
    if (-exp10 > Decimal::kScale) return DecimalError::kTooPrecise;
    // Now sig_ <= 38, so mantissa_ is exact; scale it to an integer or to 18 places.
    UInt128 mantissa = mantissa_;
    int frac = 0;
    if (exp10 >= 0) {
      mantissa *= Pow10(static_cast<int>(exp10));
    } else {
      frac = static_cast<int>(-exp10);
    }
    const UInt128 raw = mantissa * Pow10(Decimal::kScale - frac);
    out->mantissa = mantissa;
    out->frac_digits = frac;
    out->value = Decimal::FromRaw(negative ? -static_cast<Int128>(raw) : static_cast<Int128>(raw));
    return DecimalError::kOk;
  }

 private:
  void Shift() {
    // Past 38 significant digits the value is out of range or too precise whatever follows;
    // keep counting digits but stop accumulating so the mantissa never wraps.
    if (sig_ < kMaxMantissaDigits) mantissa_ *= 10;
    ++sig_;
  }

  UInt128 mantissa_ = 0;
  int64_t sig_ = 0;            // significant digits so far, deferred zeros excluded
  int64_t pending_zeros_ = 0;  // zeros after the last non-zero digit
  int64_t frac_seen_ = 0;      // digits written after the point
};

// Reads `[0-9]+` starting at s[*i] into acc; false if there is no digit.
bool ReadDigits(std::string_view s, size_t* i, bool after_point, DigitAccumulator* acc) {
  const size_t start = *i;
  while (*i < s.size() && IsDigit(s[*i])) acc->Push(s[(*i)++], after_point);
  return *i > start;
}

// digits ('.' digits)?, with an optional leading '-' when allow_sign.
DecimalError ParsePlain(std::string_view s, bool allow_sign, ParsedDecimal* out) {
  size_t i = 0;
  bool negative = false;
  if (allow_sign && i < s.size() && s[i] == '-') {
    negative = true;
    ++i;
  }
  DigitAccumulator acc;
  if (!ReadDigits(s, &i, false, &acc)) return DecimalError::kSyntax;
  if (i < s.size() && s[i] == '.') {
    ++i;
    if (!ReadDigits(s, &i, true, &acc)) return DecimalError::kSyntax;
  }
  if (i != s.size()) return DecimalError::kSyntax;
  return acc.Finish(0, out, negative);
}

}  // namespace

DecimalError ParseDecimalString(std::string_view s, ParsedDecimal* out) {
  return ParsePlain(s, /*allow_sign=*/false, out);
}

DecimalError ParseStoredDecimal(std::string_view s, Decimal* out) {
  ParsedDecimal parsed;
  const DecimalError err = ParsePlain(s, /*allow_sign=*/true, &parsed);
  if (err == DecimalError::kOk) *out = parsed.value;
  return err;
}

DecimalError ParseJsonNumber(std::string_view s, ParsedDecimal* out) {
  size_t i = 0;
  bool negative = false;
  if (i < s.size() && s[i] == '-') {
    negative = true;
    ++i;
  }
  DigitAccumulator acc;
  // int = "0" / digit1-9 *DIGIT
  if (i >= s.size() || !IsDigit(s[i])) return DecimalError::kSyntax;
  if (s[i] == '0') {
    acc.Push(s[i++], false);
    if (i < s.size() && IsDigit(s[i])) return DecimalError::kSyntax;
  } else {
    ReadDigits(s, &i, false, &acc);
  }
  if (i < s.size() && s[i] == '.') {
    ++i;
    if (!ReadDigits(s, &i, true, &acc)) return DecimalError::kSyntax;
  }
  int64_t exponent = 0;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    bool exp_negative = false;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) exp_negative = s[i++] == '-';
    if (i >= s.size() || !IsDigit(s[i])) return DecimalError::kSyntax;
    while (i < s.size() && IsDigit(s[i])) {
      if (exponent < kExponentClamp) exponent = exponent * 10 + (s[i] - '0');
      ++i;
    }
    if (exponent > kExponentClamp) exponent = kExponentClamp;
    if (exp_negative) exponent = -exponent;
  }
  if (i != s.size()) return DecimalError::kSyntax;
  return acc.Finish(exponent, out, negative);
}

DecimalError MultiplyExact(const ParsedDecimal& a, const ParsedDecimal& b, Decimal* out) {
  const int frac = a.frac_digits + b.frac_digits;
  if (frac > Decimal::kScale) return DecimalError::kTooPrecise;
  UInt128 product;
  if (__builtin_mul_overflow(a.mantissa, b.mantissa, &product)) {
    // product >= 2^128 > 10^38 with at most 18 fractional digits: > 20 integer digits.
    return DecimalError::kOutOfRange;
  }
  UInt128 raw;
  if (__builtin_mul_overflow(product, Pow10(Decimal::kScale - frac), &raw) ||
      raw > static_cast<UInt128>(Decimal::kMaxRaw)) {
    return DecimalError::kOutOfRange;
  }
  const bool negative = a.value.IsNegative() != b.value.IsNegative();
  *out = Decimal::FromRaw(negative ? -static_cast<Int128>(raw) : static_cast<Int128>(raw));
  return DecimalError::kOk;
}

size_t Decimal::Format(char* buf) const {
  if (raw_ == 0) {
    buf[0] = '0';
    return 1;
  }
  char* p = buf;
  UInt128 abs = raw_ < 0 ? static_cast<UInt128>(-raw_) : static_cast<UInt128>(raw_);
  if (raw_ < 0) *p++ = '-';

  constexpr UInt128 kOneU = Pow10(kScale);
  const UInt128 int_part = abs / kOneU;
  uint64_t frac = static_cast<uint64_t>(abs % kOneU);

  // Integer part: at most 20 digits. 64-bit arithmetic for the low 19, so only values of
  // 10^19 and more pay for a second 128-bit division.
  constexpr uint64_t kLowChunk = 10'000'000'000'000'000'000ULL;  // 10^19
  const uint64_t high = static_cast<uint64_t>(int_part / kLowChunk);
  uint64_t low = static_cast<uint64_t>(int_part % kLowChunk);
  char digits[kMaxIntDigits];
  int n = 0;
  if (high != 0) {
    for (int i = 0; i < 19; ++i, low /= 10) digits[n++] = static_cast<char>('0' + low % 10);
    for (uint64_t h = high; h != 0; h /= 10) digits[n++] = static_cast<char>('0' + h % 10);
  } else {
    do {
      digits[n++] = static_cast<char>('0' + low % 10);
      low /= 10;
    } while (low != 0);
  }
  while (n > 0) *p++ = digits[--n];

  if (frac != 0) {
    int width = kScale;
    while (frac % 10 == 0) {  // drop trailing fractional zeros
      frac /= 10;
      --width;
    }
    *p++ = '.';
    for (int i = width - 1; i >= 0; --i) {
      p[i] = static_cast<char>('0' + frac % 10);
      frac /= 10;
    }
    p += width;
  }
  return static_cast<size_t>(p - buf);
}

void Decimal::AppendTo(std::string* out) const {
  char buf[kMaxChars];
  out->append(buf, Format(buf));
}

std::string Decimal::ToString() const {
  std::string s;
  AppendTo(&s);
  return s;
}

}  // namespace klined
