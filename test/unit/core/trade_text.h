// Decimals and trades from decimal text, for the core unit tests (candle, series, ticker).
// Each test file keeps a short MakeTrade in its own argument order; the parsing, the exact
// p x q and the assembly of the Trade live here once.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <string_view>

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

}  // namespace klined::test
