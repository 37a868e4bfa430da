// libFuzzer target: ParseCandleJson (candles read back from Redis) on arbitrary bytes, under
// ASan and UBSan. Whatever it accepts must survive a round trip through AppendCandleJson:
// writing the parsed candle and parsing it again gives the same candle, symbol and flag.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "klined/candle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  klined::Candle c;
  std::string_view symbol;
  bool closed = false;
  if (!klined::ParseCandleJson(json, &c, &symbol, &closed)) return 0;
  const std::string again = klined::CandleJson(c, symbol, closed);
  klined::Candle c2;
  std::string_view symbol2;
  bool closed2 = !closed;
  if (!klined::ParseCandleJson(again, &c2, &symbol2, &closed2) || !(c2 == c) || symbol2 != symbol ||
      closed2 != closed) {
    std::abort();
  }
  return 0;
}
