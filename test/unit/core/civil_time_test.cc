// Calendar arithmetic (core/civil_date.h) and the ISO-8601 trade-time profile
// (core/iso8601.h), checked against dates computed independently (Python's datetime).
#include <doctest/doctest.h>

#include <cstdint>

#include "core/civil_date.h"
#include "core/iso8601.h"

namespace civil = klined::civil;

TEST_CASE("civil: days from civil and back, every day 1900-2100 and around the epoch") {
  CHECK(civil::DaysFromCivil(1970, 1, 1) == 0);
  CHECK(civil::DaysFromCivil(2000, 3, 1) == 11017);
  CHECK(civil::DaysFromCivil(1900, 1, 1) == -25567);
  int64_t expect = civil::DaysFromCivil(1900, 1, 1);
  for (int64_t y = 1900; y <= 2100; ++y) {
    for (unsigned m = 1; m <= 12; ++m) {
      for (unsigned d = 1; d <= civil::DaysInMonth(y, m); ++d, ++expect) {
        REQUIRE(civil::DaysFromCivil(y, m, d) == expect);  // consecutive: no gap, no overlap
        const civil::CivilDate c = civil::CivilFromDays(expect);
        REQUIRE(c.year == y);
        REQUIRE(c.month == m);
        REQUIRE(c.day == d);
      }
    }
  }
  CHECK(civil::DaysInMonth(2024, 2) == 29);
  CHECK(civil::DaysInMonth(2023, 2) == 28);
  CHECK(civil::DaysInMonth(2000, 2) == 29);
  CHECK(civil::DaysInMonth(1900, 2) == 28);
}

TEST_CASE("iso8601: the accepted profile and its limits") {
  int64_t ms = 0;
  CHECK(klined::ParseIso8601("1970-01-01T00:00:00Z", &ms));
  CHECK(ms == 0);
  CHECK(klined::ParseIso8601("2024-02-29T12:34:56.789+08:00", &ms));
  CHECK(ms == 1709181296789);
  CHECK(klined::ParseIso8601("2024-02-29 12:34:56.789-05:30", &ms));
  CHECK(ms == 1709229896789);
  CHECK(klined::ParseIso8601("1969-12-31t23:59:59.999z", &ms));
  CHECK(ms == -1);
  CHECK(klined::ParseIso8601("2024-02-29T12:34:56.789999999Z", &ms));  // floored, 9 digits
  CHECK(ms == 1709210096789);
  CHECK(klined::ParseIso8601("2024-02-29T12:34:56.7Z", &ms));
  CHECK(ms == 1709210096700);
  for (const char* bad :
       {"2023-02-29T00:00:00Z", "2024-13-01T00:00:00Z", "2024-01-01T24:00:00Z",
        "2024-01-01T00:60:00Z", "2024-01-01T00:00:60Z",
        "2024-01-01T00:00:00",  // no zone: ambiguous
        "2024-01-01T00:00:00.Z", "2024-01-01T00:00:00.1234567890Z", "2024-01-01T00:00:00+24:00",
        "2024-01-01T00:00:00+01:60", "2024-01-01T00:00:00+0100", "2024-01-01X00:00:00Z",
        "2024-01-01T00:00:00Zjunk", "2024-1-01T00:00:00Z", ""}) {
    CHECK_MESSAGE(!klined::ParseIso8601(bad, &ms), bad);
  }
}
