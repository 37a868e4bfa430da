// Decimals, trades and candles from decimal text, for the unit tests (candle, series, ticker,
// the API formats).
// Each test file keeps a short MakeTrade in its own argument order; the parsing, the exact
// p x q and the assembly of the Trade live here once.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <string_view>

#include "klined/candle.h"
#include "klined/decimal.h"
#include "klined/trade.h"

namespace klined::test {

// A stored (canonical) decimal, e.g. the value of a candle field.
inline Decimal StoredDec(std::string_view s) {
  Decimal d;
  REQUIRE(ParseStoredDecimal(s, &d) == DecimalError::kOk);
  return d;
}

// A BTCUSDT trade; price and qty follow the trade grammar, quote = price x qty exactly.
inline Trade TradeFromText(TradeId id, int64_t time_ms, std::string_view price,
                           std::string_view qty, bool buyer_maker) {
  ParsedDecimal p, q;
  REQUIRE(ParseDecimalString(price, &p) == DecimalError::kOk);
  REQUIRE(ParseDecimalString(qty, &q) == DecimalError::kOk);
  Trade t;
  t.price = p.value;
  t.qty = q.value;
  REQUIRE(MultiplyExact(p, q, &t.quote) == DecimalError::kOk);
  t.id = id;
  t.time_ms = time_ms;
  t.buyer_maker = buyer_maker;
  t.symbol = Symbol("BTCUSDT");
  return t;
}

// Contract section 3's example candle (BTCUSDT 1m at 1732147200000, 80 trades).
inline Candle ContractExampleCandle() {
  Candle c;
  c.open_time = 1732147200000;
  c.close_time = 1732147259999;
  c.interval = Interval::k1m;
  c.first_id = 101;
  c.last_id = 180;
  c.open = StoredDec("43210.5");
  c.high = StoredDec("43250");
  c.low = StoredDec("43200.1");
  c.close = StoredDec("43249.9");
  c.volume = StoredDec("12.5");
  c.quote_volume = StoredDec("540123.75");
  c.taker_volume = StoredDec("6.1");
  c.taker_quote_volume = StoredDec("263601.4");
  c.count = 80;
  return c;
}

}  // namespace klined::test
