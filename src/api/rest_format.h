// Response bodies of the market-data REST API in Binance's spot shapes (contract section 8):
// kline rows, the 24h ticker converted from the stored ticker JSON, the price ticker and
// exchangeInfo. Pure functions appending to a caller's buffer: no I/O, no threads, no state.
//
// Stored tickers are external input (they come back from Redis), so the conversion scans them
// with a strict parser and reports false on anything that is not the flat object
// TickerWindow::AppendJson writes; it never asserts. See rest_format.cc for the scanner and the
// field defaults klined cannot know (bid/ask, prevClosePrice).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "klined/candle.h"

namespace klined::api {

// Appends s as a JSON string: quoted, with '"', '\\' and every byte below 0x20 escaped (the
// short forms \b \f \n \r \t, \u00XX otherwise). Other bytes are copied as they are, so the
// output is valid JSON when s is UTF-8 (every string klined emits: its own messages, symbols of
// the contract's grammar).
void AppendJsonString(std::string_view s, std::string* out);

// One /api/v3/klines row:
// [openTime,"o","h","l","c","v",closeTime,"q",n,"V","Q","0"], decimals canonical (section 3).
void AppendKlineRow(const Candle& c, std::string* out);
// One /api/v3/klines/latest row (klined's own): ["SYMBOL", <the 12 fields of AppendKlineRow>].
void AppendSymbolKlineRow(std::string_view symbol, const Candle& c, std::string* out);

// Converts a stored 24h ticker (contract section 4, written by TickerWindow::AppendJson) into
// one /api/v3/ticker/24hr object: FULL (mini false) or MINI, in Binance's field order. False,
// with *out untouched, if stored_json is not that flat object (see rest_format.cc).
[[nodiscard]] bool AppendTicker(std::string_view stored_json, bool mini, std::string* out);
// The same stored ticker as one /api/v3/ticker/price object: {"symbol":"..","price":lastPrice}.
[[nodiscard]] bool AppendTickerPrice(std::string_view stored_json, std::string* out);

// The same stored ticker as the <symbol>@ticker stream's event, Binance's 24hrTicker:
// {"e":"24hrTicker","E":event_ms,"s":..,"p","P","w","x","c","Q","b","B","a","A","o","h","l",
//  "v","q","O","C","F","L","n"} with the REST ticker's defaults for what klined cannot know
// (x = the open price, bid/ask "0"). False, out untouched, if stored_json does not parse.
[[nodiscard]] bool AppendTickerEvent(std::string_view stored_json, int64_t event_ms,
                                     std::string* out);

// /api/v3/time: {"serverTime":ms}.
void AppendServerTime(int64_t server_time_ms, std::string* out);

// Quote assets tried by exchangeInfo's base/quote split when the config names none
// (api.quote_assets in config/klined.yaml lists the same).
inline constexpr std::array<std::string_view, 13> kDefaultQuoteAssets = {
    "USDT", "USDC", "FDUSD", "BUSD", "TUSD", "BTC", "ETH", "BNB", "EUR", "TRY", "BRL", "JPY", "DAI",
};
// The quoteAsset of a symbol that ends in none of the quote assets (its baseAsset is then the
// whole symbol). A placeholder rather than "": every symbol stays listed and reachable, and a
// client building "BASE/QUOTE" names (ccxt) gets a unique, non-empty one.
inline constexpr std::string_view kUnknownQuoteAsset = "UNKNOWN";

struct SymbolAssets {
  std::string_view base;   // a view into the symbol
  std::string_view quote;  // a view into the symbol, or kUnknownQuoteAsset
};
// The longest quote asset that is a proper suffix of symbol (case-sensitive) and the rest as
// base; {symbol, kUnknownQuoteAsset} when none is. Empty quote assets are ignored.
SymbolAssets SplitSymbol(std::string_view symbol, std::span<const std::string> quote_assets);

// One entry of exchangeInfo's "symbols" array (see rest_format.cc for the fixed values).
void AppendExchangeInfoSymbol(std::string_view symbol, std::span<const std::string> quote_assets,
                              std::string* out);
// The whole /api/v3/exchangeInfo body: timezone "UTC", serverTime, rateLimits (one
// REQUEST_WEIGHT per MINUTE entry with the limit; none when weight_limit_per_minute is 0, i.e.
// unlimited), exchangeFilters [], and one symbol entry per element of symbols, in that order.
void AppendExchangeInfo(std::span<const std::string> symbols,
                        std::span<const std::string> quote_assets, int64_t server_time_ms,
                        int weight_limit_per_minute, std::string* out);

}  // namespace klined::api
