// Exact fixed-point decimals for prices, quantities and volumes.
//
// DESIGN
// A Decimal is a signed 128-bit integer scaled by 10^18: value = raw / 10^18. The contract
// bounds every value to at most 20 integer and 18 fractional digits, so |raw| < 10^38 < 2^127
// and every sum of in-range values, and every price x quantity whose operands carry at most
// 18 fractional digits together, is exact. No binary floating point is involved anywhere.
//
// Arithmetic is checked: an operation whose result would pass 20 integer digits reports it
// and leaves its output untouched, so a caller can reject the trade instead of wrapping.
//
// Parsing keeps the significant mantissa and its fractional digit count (ParsedDecimal), so
// price x quantity is one 128-bit multiply of the mantissas and one power-of-ten scale, with
// no 128-bit division on the hot path.
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace klined {

__extension__ typedef __int128 Int128;
__extension__ typedef unsigned __int128 UInt128;

namespace decimal_internal {
constexpr UInt128 Pow10(int n) {
  UInt128 r = 1;
  for (int i = 0; i < n; ++i) r *= 10;
  return r;
}
}  // namespace decimal_internal

class Decimal {
 public:
  static constexpr int kScale = 18;         // fractional digits held exactly
  static constexpr int kMaxIntDigits = 20;  // integer digits allowed by the contract
  static constexpr Int128 kOne = static_cast<Int128>(decimal_internal::Pow10(kScale));
  static constexpr Int128 kMaxRaw =
      static_cast<Int128>(decimal_internal::Pow10(kScale + kMaxIntDigits)) - 1;
  // Longest canonical string: sign, 20 integer digits, '.', 18 fractional digits.
  static constexpr size_t kMaxChars = 1 + kMaxIntDigits + 1 + kScale;

  constexpr Decimal() = default;

  // `raw` must satisfy |raw| <= kMaxRaw (asserted by callers that build from untrusted data
  // through the parsers, which check it).
  static constexpr Decimal FromRaw(Int128 raw) { return Decimal(raw); }
  static constexpr Decimal FromInt(int64_t v) { return Decimal(static_cast<Int128>(v) * kOne); }

  constexpr Int128 raw() const { return raw_; }
  constexpr bool IsZero() const { return raw_ == 0; }
  constexpr bool IsPositive() const { return raw_ > 0; }
  constexpr bool IsNegative() const { return raw_ < 0; }

  friend constexpr auto operator<=>(Decimal a, Decimal b) = default;
  friend constexpr bool operator==(Decimal a, Decimal b) = default;

  // Checked a + b and a - b: false (and *out untouched) if |result| would exceed kMaxRaw.
  [[nodiscard]] static constexpr bool Add(Decimal a, Decimal b, Decimal* out) {
    // Two in-range operands can reach 2 * (10^38 - 1) > 2^127 - 1, so the sum itself must be
    // checked: a plain `+` would be signed overflow (undefined behaviour) at the extremes.
    Int128 r;
    if (__builtin_add_overflow(a.raw_, b.raw_, &r) || r > kMaxRaw || r < -kMaxRaw) return false;
    *out = Decimal(r);
    return true;
  }
  [[nodiscard]] static constexpr bool Sub(Decimal a, Decimal b, Decimal* out) {
    return Add(a, Decimal(-b.raw_), out);
  }

  // Writes the canonical form (no exponent, no '+', no trailing fractional zeros, no
  // trailing '.', "0" for zero) to buf, which must hold kMaxChars; returns its length.
  size_t Format(char* buf) const;
  void AppendTo(std::string* out) const;
  std::string ToString() const;

 private:
  constexpr explicit Decimal(Int128 raw) : raw_(raw) {}
  Int128 raw_ = 0;
};

enum class DecimalError : uint8_t {
  kOk,
  kSyntax,      // not a decimal of the accepted grammar
  kOutOfRange,  // more than 20 integer digits (or a product/sum that would be)
  kTooPrecise,  // more than 18 significant fractional digits
};

// A parsed value with its significant digits: value == mantissa * 10^-frac_digits, where
// trailing fractional zeros are not counted (1.50 -> mantissa 15, frac_digits 1).
struct ParsedDecimal {
  Decimal value;
  UInt128 mantissa = 0;  // magnitude; sign lives in value
  int frac_digits = 0;
};

// Strict string grammar of the contract: `digits` or `digits.digits`, leading zeros allowed,
// no sign, exponent, or bare `.5` / `5.`.
DecimalError ParseDecimalString(std::string_view s, ParsedDecimal* out);

// JSON number grammar (RFC 8259: optional '-', no leading zeros, optional fraction and
// exponent), converted exactly. A negative value parses; callers reject it by sign.
DecimalError ParseJsonNumber(std::string_view s, ParsedDecimal* out);

// Exact a x b for non-negative operands. kTooPrecise if a and b carry more than 18 fractional
// digits together, kOutOfRange if the product has more than 20 integer digits.
DecimalError MultiplyExact(const ParsedDecimal& a, const ParsedDecimal& b, Decimal* out);

// Parses the canonical form written by Format (and any ParseDecimalString input, optionally
// preceded by '-'): used to read candles back from Redis and MySQL.
DecimalError ParseStoredDecimal(std::string_view s, Decimal* out);

}  // namespace klined
