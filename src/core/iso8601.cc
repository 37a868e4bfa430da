#include "core/iso8601.h"

#include "core/civil_date.h"

namespace klined {
namespace {

constexpr bool IsDigit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

bool ParseIso8601(std::string_view s, int64_t* out_ms) {
  const char* const p = s.data();
  const size_t n = s.size();
  if (n < 20) return false;  // shortest: YYYY-MM-DDTHH:MM:SSZ
  auto two = [p](size_t i, int* v) {
    if (!IsDigit(p[i]) || !IsDigit(p[i + 1])) return false;
    *v = (p[i] - '0') * 10 + (p[i + 1] - '0');
    return true;
  };
  int yh, yl, mo, d, h, mi, sec;
  if (!two(0, &yh) || !two(2, &yl) || p[4] != '-' || !two(5, &mo) || p[7] != '-' || !two(8, &d) ||
      (p[10] != 'T' && p[10] != 't' && p[10] != ' ') || !two(11, &h) || p[13] != ':' ||
      !two(14, &mi) || p[16] != ':' || !two(17, &sec)) {
    return false;
  }
  const int y = yh * 100 + yl;
  if (mo < 1 || mo > 12 || d < 1 ||
      d > static_cast<int>(civil::DaysInMonth(y, static_cast<unsigned>(mo))) || h > 23 || mi > 59 ||
      sec > 59) {
    return false;
  }
  size_t i = 19;
  int64_t frac_ms = 0;
  if (p[i] == '.') {
    ++i;
    int digits = 0;
    for (; i < n && IsDigit(p[i]); ++i, ++digits) {
      if (digits < 3) frac_ms = frac_ms * 10 + (p[i] - '0');  // later digits: floored away
    }
    if (digits == 0 || digits > 9) return false;
    for (int k = digits; k < 3; ++k) frac_ms *= 10;
  }
  if (i >= n) return false;
  int64_t offset_min = 0;
  if (p[i] == 'Z' || p[i] == 'z') {
    ++i;
  } else if (p[i] == '+' || p[i] == '-') {
    int oh, om;
    if (n - i < 6 || !two(i + 1, &oh) || p[i + 3] != ':' || !two(i + 4, &om) || oh > 23 ||
        om > 59) {
      return false;
    }
    offset_min = oh * 60 + om;
    if (p[i] == '-') offset_min = -offset_min;
    i += 6;
  } else {
    return false;
  }
  if (i != n) return false;
  const int64_t seconds =
      ((civil::DaysFromCivil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d)) * 24 + h) *
           60 +
       mi) *
          60 +
      sec;
  *out_ms = seconds * 1000 + frac_ms - offset_min * 60'000;
  return true;
}

}  // namespace klined
