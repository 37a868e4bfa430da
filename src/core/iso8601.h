// ISO-8601 trade times (the decoder's kIso8601 / kAuto string form). Internal to src/core.
//
// Accepted: YYYY-MM-DD, then 'T', 't' or ' ', then HH:MM:SS, an optional fraction of 1 to 9
// digits, then 'Z', 'z' or +HH:MM / -HH:MM. Digits past milliseconds are truncated
// (floored): the floor lies in the same millisecond and so in the same bucket, since every
// bucket boundary is a whole millisecond. Ranges are checked (month 1-12, day within its
// month incl. leap years, hour 0-23, minute and second 0-59; no leap second 60, offsets up
// to 23:59). A time without a zone designator is ambiguous and refused.
#pragma once

#include <cstdint>
#include <string_view>

namespace klined {

// Milliseconds since the Unix epoch (UTC) of s; false if s is not in the profile above.
// Years 0000-9999 give |ms| < 2^48, so nothing can overflow.
bool ParseIso8601(std::string_view s, int64_t* out_ms);

}  // namespace klined
