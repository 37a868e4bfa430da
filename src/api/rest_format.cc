// Response bodies in Binance's shapes: see rest_format.h.
//
// Stored ticker scanner. The stored ticker is one flat JSON object (RFC 8259 whitespace
// allowed) whose members are strings or integers; anything else (a nested value, true/false/
// null, a number with a fraction or exponent, an integer past int64, a duplicate key, text
// after the object, more than kMaxMembers members) fails the conversion. Members the conversion
// does not use are ignored, so a field added to the stored form later does not break the API.
// The sixteen fields of contract section 4 are required with their types: the ten decimals as
// strings of the form -?digits(.digits)? (copied as they are: the writer made them canonical,
// and priceChangePercent may legitimately pass Decimal's 20 integer digits), the symbol as any
// non-empty string (its escapes are copied as they are), and openTime, closeTime, firstId,
// lastId and count as integers.
//
// Fields of /api/v3/ticker/24hr that klined cannot know (rest-api.md, "24hr ticker price change
// statistics"):
// - prevClosePrice = openPrice. Binance's is the last price before the window; klined keeps
//   the window only, and its open is the first trade after that one (for an empty window both
//   are the last known price, which is what the stored openPrice then holds).
// - bidPrice, bidQty, askPrice, askQty = "0": klined has no order book. Zeros rather than
//   missing fields, so clients that read every field of Binance's shape keep working.
//
// exchangeInfo (rest-api.md "Exchange information", filters.md) with the fields ccxt's binance
// class reads when it loads spot markets (parseMarket in ccxt/ccxt ts/src/binance.ts: symbol,
// baseAsset, quoteAsset, status, permissions, isMarginTradingAllowed, baseAssetPrecision,
// quotePrecision, and filters PRICE_FILTER minPrice/maxPrice/tickSize, LOT_SIZE
// minQty/maxQty/stepSize; tickSize and stepSize must be present and non-zero, as it derives
// precisions from them). Fixed values: status TRADING; precisions 18 and tickSize/stepSize
// 0.000000000000000001, because klined's decimals are exact at 18 places (contract section 1)
// so nothing it serves is finer; PRICE_FILTER minPrice/maxPrice "0" (disabled, per filters.md);
// LOT_SIZE minQty one step and maxQty 20 nines (the contract's largest integer part);
// permissions ["SPOT"], permissionSets [["SPOT"]]; isMarginTradingAllowed false (ccxt reads it
// as "margin market"); the other order flags as Binance's documented example (klined accepts no
// orders; the flags only keep clients' market loaders on their usual path).
#include "api/rest_format.h"

#include <charconv>
#include <cstring>
#include <initializer_list>
#include <utility>

namespace klined::api {
namespace {

void AppendInt(int64_t v, std::string* out) {
  char buf[24];
  out->append(buf, std::to_chars(buf, buf + sizeof(buf), v).ptr);
}

void AppendDecimal(const Decimal& d, std::string* out) {
  out->push_back('"');
  d.AppendTo(out);
  out->push_back('"');
}

// ---- Flat object scanner --------------------------------------------------------------------

constexpr size_t kMaxMembers = 32;

struct Member {
  std::string_view key;    // raw (escaped) content between the quotes
  std::string_view value;  // string: raw content between the quotes; integer: its digits
  bool is_string = false;
};

class FlatObject {
 public:
  bool Parse(std::string_view json) {
    s_ = json;
    i_ = 0;
    n_ = 0;
    SkipWs();
    if (!Eat('{')) return false;
    SkipWs();
    if (Eat('}')) return AtEnd();
    while (true) {
      if (n_ == kMaxMembers) return false;
      Member& m = members_[n_++];
      if (!String(&m.key)) return false;
      SkipWs();
      if (!Eat(':')) return false;
      SkipWs();
      if (Peek() == '"') {
        m.is_string = true;
        if (!String(&m.value)) return false;
      } else {
        m.is_string = false;
        if (!Integer(&m.value)) return false;
      }
      SkipWs();
      if (Eat('}')) break;
      if (!Eat(',')) return false;
      SkipWs();
    }
    for (size_t a = 0; a < n_; ++a) {
      for (size_t b = a + 1; b < n_; ++b) {
        if (members_[a].key == members_[b].key) return false;
      }
    }
    return AtEnd();
  }

  const Member* Find(std::string_view key) const {
    for (size_t k = 0; k < n_; ++k) {
      if (members_[k].key == key) return &members_[k];
    }
    return nullptr;
  }

 private:
  char Peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  bool Eat(char c) {
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  void SkipWs() {
    while (i_ < s_.size() &&
           (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) {
      ++i_;
    }
  }
  bool AtEnd() {
    SkipWs();
    return i_ == s_.size();
  }
  static bool IsHex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  }
  // A JSON string; *out is its raw content (escapes validated, not decoded).
  bool String(std::string_view* out) {
    if (!Eat('"')) return false;
    const size_t begin = i_;
    while (i_ < s_.size()) {
      const unsigned char c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        *out = s_.substr(begin, i_ - begin);
        ++i_;
        return true;
      }
      if (c < 0x20) return false;
      if (c == '\\') {
        if (i_ + 1 >= s_.size()) return false;
        const char e = s_[i_ + 1];
        if (e == 'u') {
          if (i_ + 5 >= s_.size()) return false;
          for (size_t k = i_ + 2; k < i_ + 6; ++k) {
            if (!IsHex(s_[k])) return false;
          }
          i_ += 6;
          continue;
        }
        if (std::strchr("\"\\/bfnrt", e) == nullptr || e == '\0') return false;
        i_ += 2;
        continue;
      }
      ++i_;
    }
    return false;
  }
  // A JSON integer (-?(0|[1-9][0-9]*)) that fits int64.
  bool Integer(std::string_view* out) {
    const size_t begin = i_;
    Eat('-');
    if (Peek() == '0') {
      ++i_;
    } else if (Peek() >= '1' && Peek() <= '9') {
      while (Peek() >= '0' && Peek() <= '9') ++i_;
    } else {
      return false;
    }
    *out = s_.substr(begin, i_ - begin);
    int64_t v = 0;
    const auto [ptr, ec] = std::from_chars(out->data(), out->data() + out->size(), v);
    return ec == std::errc() && ptr == out->data() + out->size();
  }

  std::string_view s_;
  size_t i_ = 0;
  size_t n_ = 0;
  Member members_[kMaxMembers];
};

bool IsDecimalText(std::string_view s) {
  size_t i = 0;
  if (i < s.size() && s[i] == '-') ++i;
  const size_t int_begin = i;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
  if (i == int_begin) return false;
  if (i == s.size()) return true;
  if (s[i] != '.') return false;
  const size_t frac_begin = ++i;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
  return i > frac_begin && i == s.size();
}

// The stored ticker's fields, views into the stored JSON.
struct StoredTicker {
  std::string_view symbol;
  std::string_view price_change, price_change_percent, weighted_avg_price, open_price, high_price,
      low_price, last_price, last_qty, volume, quote_volume;
  std::string_view open_time, close_time, first_id, last_id, count;
};

bool ParseStoredTicker(std::string_view json, StoredTicker* t) {
  FlatObject obj;
  if (!obj.Parse(json)) return false;
  const Member* sym = obj.Find("symbol");
  if (sym == nullptr || !sym->is_string || sym->value.empty()) return false;
  t->symbol = sym->value;
  const std::pair<std::string_view, std::string_view*> decimals[] = {
      {"priceChange", &t->price_change},
      {"priceChangePercent", &t->price_change_percent},
      {"weightedAvgPrice", &t->weighted_avg_price},
      {"openPrice", &t->open_price},
      {"highPrice", &t->high_price},
      {"lowPrice", &t->low_price},
      {"lastPrice", &t->last_price},
      {"lastQty", &t->last_qty},
      {"volume", &t->volume},
      {"quoteVolume", &t->quote_volume},
  };
  for (const auto& [key, dst] : decimals) {
    const Member* m = obj.Find(key);
    if (m == nullptr || !m->is_string || !IsDecimalText(m->value)) return false;
    *dst = m->value;
  }
  const std::pair<std::string_view, std::string_view*> ints[] = {
      {"openTime", &t->open_time}, {"closeTime", &t->close_time}, {"firstId", &t->first_id},
      {"lastId", &t->last_id},     {"count", &t->count},
  };
  for (const auto& [key, dst] : ints) {
    const Member* m = obj.Find(key);
    if (m == nullptr || m->is_string) return false;
    *dst = m->value;
  }
  return true;
}

// ,"key":"raw"  /  ,"key":raw  (first: no leading comma; key written as given).
void PutString(std::string_view key, std::string_view raw, std::string* out) {
  out->append(",\"").append(key).append("\":\"").append(raw).push_back('"');
}
void PutRaw(std::string_view key, std::string_view raw, std::string* out) {
  out->append(",\"").append(key).append("\":").append(raw);
}

void AppendStrings(std::initializer_list<std::string_view> items, std::string* out) {
  out->push_back('[');
  bool first = true;
  for (const std::string_view s : items) {
    if (!first) out->push_back(',');
    first = false;
    AppendJsonString(s, out);
  }
  out->push_back(']');
}

// The twelve fields of a kline row, without the brackets.
void AppendKlineFields(const Candle& c, std::string* out) {
  AppendInt(c.open_time, out);
  for (const Decimal* d : {&c.open, &c.high, &c.low, &c.close, &c.volume}) {
    out->push_back(',');
    AppendDecimal(*d, out);
  }
  out->push_back(',');
  AppendInt(c.close_time, out);
  out->push_back(',');
  AppendDecimal(c.quote_volume, out);
  out->push_back(',');
  AppendInt(c.count, out);
  out->push_back(',');
  AppendDecimal(c.taker_volume, out);
  out->push_back(',');
  AppendDecimal(c.taker_quote_volume, out);
  out->append(",\"0\"");
}

constexpr std::string_view kStep = "0.000000000000000001";
constexpr std::string_view kMaxQty = "99999999999999999999";

}  // namespace

void AppendJsonString(std::string_view s, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  for (const char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c < 0x20) {
          out->append("\\u00");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 0xf]);
        } else {
          out->push_back(ch);
        }
    }
  }
  out->push_back('"');
}

void AppendKlineRow(const Candle& c, std::string* out) {
  out->push_back('[');
  AppendKlineFields(c, out);
  out->push_back(']');
}

void AppendSymbolKlineRow(std::string_view symbol, const Candle& c, std::string* out) {
  out->push_back('[');
  AppendJsonString(symbol, out);
  out->push_back(',');
  AppendKlineFields(c, out);
  out->push_back(']');
}

bool AppendTicker(std::string_view stored_json, bool mini, std::string* out) {
  StoredTicker t;
  if (!ParseStoredTicker(stored_json, &t)) return false;
  out->append("{\"symbol\":\"").append(t.symbol).push_back('"');
  if (!mini) {
    PutString("priceChange", t.price_change, out);
    PutString("priceChangePercent", t.price_change_percent, out);
    PutString("weightedAvgPrice", t.weighted_avg_price, out);
    PutString("prevClosePrice", t.open_price, out);
    PutString("lastPrice", t.last_price, out);
    PutString("lastQty", t.last_qty, out);
    PutString("bidPrice", "0", out);
    PutString("bidQty", "0", out);
    PutString("askPrice", "0", out);
    PutString("askQty", "0", out);
  }
  PutString("openPrice", t.open_price, out);
  PutString("highPrice", t.high_price, out);
  PutString("lowPrice", t.low_price, out);
  if (mini) PutString("lastPrice", t.last_price, out);
  PutString("volume", t.volume, out);
  PutString("quoteVolume", t.quote_volume, out);
  PutRaw("openTime", t.open_time, out);
  PutRaw("closeTime", t.close_time, out);
  PutRaw("firstId", t.first_id, out);
  PutRaw("lastId", t.last_id, out);
  PutRaw("count", t.count, out);
  out->push_back('}');
  return true;
}

bool AppendTickerPrice(std::string_view stored_json, std::string* out) {
  StoredTicker t;
  if (!ParseStoredTicker(stored_json, &t)) return false;
  out->append("{\"symbol\":\"").append(t.symbol).append("\",\"price\":\"");
  out->append(t.last_price).append("\"}");
  return true;
}

bool AppendTickerEvent(std::string_view stored_json, int64_t event_ms, std::string* out) {
  StoredTicker t;
  if (!ParseStoredTicker(stored_json, &t)) return false;
  out->append("{\"e\":\"24hrTicker\",\"E\":");
  AppendInt(event_ms, out);
  out->append(",\"s\":\"").append(t.symbol).push_back('"');
  PutString("p", t.price_change, out);
  PutString("P", t.price_change_percent, out);
  PutString("w", t.weighted_avg_price, out);
  PutString("x", t.open_price, out);  // prevClosePrice, as the REST ticker's
  PutString("c", t.last_price, out);
  PutString("Q", t.last_qty, out);
  PutString("b", "0", out);
  PutString("B", "0", out);
  PutString("a", "0", out);
  PutString("A", "0", out);
  PutString("o", t.open_price, out);
  PutString("h", t.high_price, out);
  PutString("l", t.low_price, out);
  PutString("v", t.volume, out);
  PutString("q", t.quote_volume, out);
  PutRaw("O", t.open_time, out);
  PutRaw("C", t.close_time, out);
  PutRaw("F", t.first_id, out);
  PutRaw("L", t.last_id, out);
  PutRaw("n", t.count, out);
  out->push_back('}');
  return true;
}

void AppendServerTime(int64_t server_time_ms, std::string* out) {
  out->append("{\"serverTime\":");
  AppendInt(server_time_ms, out);
  out->push_back('}');
}

SymbolAssets SplitSymbol(std::string_view symbol, std::span<const std::string> quote_assets) {
  std::string_view best;
  for (const std::string& q : quote_assets) {
    if (q.empty() || q.size() >= symbol.size() || q.size() <= best.size()) continue;
    if (symbol.substr(symbol.size() - q.size()) == q) best = q;
  }
  if (best.empty()) return {symbol, kUnknownQuoteAsset};
  const size_t split = symbol.size() - best.size();
  return {symbol.substr(0, split), symbol.substr(split)};
}

void AppendExchangeInfoSymbol(std::string_view symbol, std::span<const std::string> quote_assets,
                              std::string* out) {
  const SymbolAssets assets = SplitSymbol(symbol, quote_assets);
  out->append("{\"symbol\":");
  AppendJsonString(symbol, out);
  out->append(",\"status\":\"TRADING\",\"baseAsset\":");
  AppendJsonString(assets.base, out);
  out->append(",\"baseAssetPrecision\":18,\"quoteAsset\":");
  AppendJsonString(assets.quote, out);
  out->append(
      ",\"quotePrecision\":18,\"quoteAssetPrecision\":18,\"baseCommissionPrecision\":18,"
      "\"quoteCommissionPrecision\":18,\"orderTypes\":");
  AppendStrings({"LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT",
                 "TAKE_PROFIT_LIMIT"},
                out);
  out->append(
      ",\"icebergAllowed\":true,\"ocoAllowed\":true,\"otoAllowed\":true,"
      "\"quoteOrderQtyMarketAllowed\":true,\"allowTrailingStop\":false,"
      "\"cancelReplaceAllowed\":false,\"isSpotTradingAllowed\":true,"
      "\"isMarginTradingAllowed\":false,\"filters\":[");
  out->append(
      "{\"filterType\":\"PRICE_FILTER\",\"minPrice\":\"0\",\"maxPrice\":\"0\",\"tickSize\":\"");
  out->append(kStep).append("\"},{\"filterType\":\"LOT_SIZE\",\"minQty\":\"").append(kStep);
  out->append("\",\"maxQty\":\"").append(kMaxQty).append("\",\"stepSize\":\"").append(kStep);
  out->append(
      "\"}],\"permissions\":[\"SPOT\"],\"permissionSets\":[[\"SPOT\"]],"
      "\"defaultSelfTradePreventionMode\":\"NONE\",\"allowedSelfTradePreventionModes\":"
      "[\"NONE\"]}");
}

void AppendExchangeInfo(std::span<const std::string> symbols,
                        std::span<const std::string> quote_assets, int64_t server_time_ms,
                        int weight_limit_per_minute, std::string* out) {
  out->append("{\"timezone\":\"UTC\",\"serverTime\":");
  AppendInt(server_time_ms, out);
  out->append(",\"rateLimits\":[");
  if (weight_limit_per_minute > 0) {
    out->append(
        "{\"rateLimitType\":\"REQUEST_WEIGHT\",\"interval\":\"MINUTE\",\"intervalNum\":1,"
        "\"limit\":");
    AppendInt(weight_limit_per_minute, out);
    out->push_back('}');
  }
  out->append("],\"exchangeFilters\":[],\"symbols\":[");
  bool first = true;
  for (const std::string& s : symbols) {
    if (!first) out->push_back(',');
    first = false;
    AppendExchangeInfoSymbol(s, quote_assets, out);
  }
  out->append("]}");
}

}  // namespace klined::api
