// Binance's WebSocket stream protocol; see ws_protocol.h.
//
// The request parser is a small strict JSON reader for the one shape clients send: an object
// of scalars and one array of strings. Nesting deeper than that is refused as an invalid
// value, so a hostile message costs at most one pass over its bytes.
#include "api/ws_protocol.h"

#include <charconv>

#include "api/rest_format.h"

namespace klined::api {
namespace {

class Reader {
 public:
  explicit Reader(std::string_view s) : s_(s) {}

  void SkipWs() {
    while (p_ < s_.size() &&
           (s_[p_] == ' ' || s_[p_] == '\t' || s_[p_] == '\n' || s_[p_] == '\r')) {
      ++p_;
    }
  }
  bool Eat(char c) {
    SkipWs();
    if (p_ < s_.size() && s_[p_] == c) {
      ++p_;
      return true;
    }
    return false;
  }
  char Peek() {
    SkipWs();
    return p_ < s_.size() ? s_[p_] : '\0';
  }
  bool AtEnd() {
    SkipWs();
    return p_ == s_.size();
  }
  size_t pos() const { return p_; }

  // A JSON string, decoded into *out (\uXXXX below 0x80 only; others are kept escaped, which
  // no valid stream name or method contains anyway). *raw gets the text with its quotes.
  bool String(std::string* out, std::string_view* raw = nullptr) {
    SkipWs();
    const size_t start = p_;
    if (p_ >= s_.size() || s_[p_] != '"') return false;
    ++p_;
    out->clear();
    while (p_ < s_.size()) {
      const char c = s_[p_++];
      if (c == '"') {
        if (raw != nullptr) *raw = s_.substr(start, p_ - start);
        return true;
      }
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (p_ >= s_.size()) return false;
      const char e = s_[p_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out->push_back(e);
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'u': {
          if (p_ + 4 > s_.size()) return false;
          unsigned v = 0;
          auto r = std::from_chars(s_.data() + p_, s_.data() + p_ + 4, v, 16);
          if (r.ptr != s_.data() + p_ + 4) return false;
          p_ += 4;
          if (v < 0x80) {
            out->push_back(static_cast<char>(v));
          } else {
            out->append("\\u").append(s_.substr(p_ - 4, 4));
          }
          break;
        }
        default:
          return false;
      }
    }
    return false;
  }

  // Any scalar or container, skipped (for type checks and error recovery); its kind in *kind:
  // 's' string, 'n' number, 'b' true/false, 'z' null, 'a' array, 'o' object. *raw = its text.
  bool Value(char* kind, std::string_view* raw, int depth = 0) {
    if (depth > 8) return false;
    SkipWs();
    const size_t start = p_;
    const char c = Peek();
    std::string scratch;
    if (c == '"') {
      *kind = 's';
      if (!String(&scratch)) return false;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      *kind = 'n';
      if (c == '-') ++p_;
      const size_t digits = p_;
      while (p_ < s_.size() && s_[p_] >= '0' && s_[p_] <= '9') ++p_;
      if (p_ == digits) return false;
      if (p_ < s_.size() && s_[p_] == '.') {
        ++p_;
        while (p_ < s_.size() && s_[p_] >= '0' && s_[p_] <= '9') ++p_;
      }
      if (p_ < s_.size() && (s_[p_] == 'e' || s_[p_] == 'E')) {
        ++p_;
        if (p_ < s_.size() && (s_[p_] == '+' || s_[p_] == '-')) ++p_;
        while (p_ < s_.size() && s_[p_] >= '0' && s_[p_] <= '9') ++p_;
      }
    } else if (Lit("true") || Lit("false")) {
      *kind = 'b';
    } else if (Lit("null")) {
      *kind = 'z';
    } else if (c == '[') {
      *kind = 'a';
      ++p_;
      if (!Eat(']')) {
        do {
          char k;
          std::string_view r;
          if (!Value(&k, &r, depth + 1)) return false;
        } while (Eat(','));
        if (!Eat(']')) return false;
      }
    } else if (c == '{') {
      *kind = 'o';
      ++p_;
      if (!Eat('}')) {
        do {
          if (!String(&scratch) || !Eat(':')) return false;
          char k;
          std::string_view r;
          if (!Value(&k, &r, depth + 1)) return false;
        } while (Eat(','));
        if (!Eat('}')) return false;
      }
    } else {
      return false;
    }
    *raw = s_.substr(start, p_ - start);
    return true;
  }

 private:
  bool Lit(std::string_view w) {
    if (s_.substr(p_, w.size()) == w) {
      p_ += w.size();
      return true;
    }
    return false;
  }

  std::string_view s_;
  size_t p_ = 0;
};

bool IsUnsignedInteger(std::string_view raw) {
  if (raw.empty() || raw.size() > 20) return false;
  for (char c : raw) {
    if (c < '0' || c > '9') return false;
  }
  uint64_t v;
  auto r = std::from_chars(raw.data(), raw.data() + raw.size(), v);
  return r.ec == std::errc() && r.ptr == raw.data() + raw.size();
}

WsError Error(int code, std::string msg, std::string id = "null") {
  return WsError{code, std::move(msg), std::move(id)};
}

}  // namespace

std::variant<WsRequest, WsError> ParseWsRequest(std::string_view text) {
  // First pass: is it JSON at all, and an object? (Binance: code 3 for anything unparsable.)
  {
    Reader r(text);
    char kind;
    std::string_view raw;
    if (!r.Value(&kind, &raw) || !r.AtEnd()) return Error(3, "Invalid JSON: syntax error");
    if (kind != 'o') return Error(2, "Invalid request: expected a JSON object");
  }
  Reader r(text);
  r.Eat('{');
  WsRequest req;
  std::optional<std::string> method;
  bool has_params = false, has_id = false;
  std::string key;
  // The id first, so that every later error can carry it.
  {
    Reader scan(text);
    scan.Eat('{');
    if (!scan.Eat('}')) {
      do {
        std::string k;
        char kind;
        std::string_view raw;
        if (!scan.String(&k) || !scan.Eat(':') || !scan.Value(&kind, &raw)) break;
        if (k == "id" && (kind == 'z' || kind == 's' || (kind == 'n' && IsUnsignedInteger(raw)))) {
          req.id = std::string(raw);
        }
      } while (scan.Eat(','));
    }
  }
  if (req.id.empty()) req.id = "null";
  if (!r.Eat('}')) {
    do {
      r.String(&key);
      r.Eat(':');
      const char next = r.Peek();
      if (key == "method") {
        std::string m;
        if (next != '"' || !r.String(&m)) {
          return Error(1, "Invalid value type: expected a string for 'method'", req.id);
        }
        method = m;
      } else if (key == "params") {
        has_params = true;
        if (next != '[') {
          return Error(1, "Invalid value type: expected an array of strings for 'params'", req.id);
        }
        r.Eat('[');
        if (!r.Eat(']')) {
          do {
            std::string p;
            if (r.Peek() != '"' || !r.String(&p)) {
              return Error(1, "Invalid value type: expected an array of strings for 'params'",
                           req.id);
            }
            req.params.push_back(std::move(p));
          } while (r.Eat(','));
          r.Eat(']');
        }
      } else if (key == "id") {
        has_id = true;
        char kind;
        std::string_view raw;
        r.Value(&kind, &raw);
        if (!(kind == 'z' || kind == 's' || (kind == 'n' && IsUnsignedInteger(raw)))) {
          return Error(1, "Invalid value type: expected an unsigned integer or a string for 'id'");
        }
      } else {
        return Error(0, "Unknown property '" + key + "'", req.id);
      }
    } while (r.Eat(','));
  }
  (void)has_id;
  if (!method) return Error(2, "Invalid request: 'method' is missing", req.id);
  if (*method == "SUBSCRIBE") {
    req.method = WsMethod::kSubscribe;
  } else if (*method == "UNSUBSCRIBE") {
    req.method = WsMethod::kUnsubscribe;
  } else if (*method == "LIST_SUBSCRIPTIONS") {
    req.method = WsMethod::kListSubscriptions;
  } else {
    return Error(2, "Invalid request: unknown method '" + *method + "'", req.id);
  }
  if (req.method != WsMethod::kListSubscriptions && !has_params) {
    return Error(2, "Invalid request: 'params' is missing", req.id);
  }
  return req;
}

std::string WsResult(std::string_view result_json, std::string_view id) {
  std::string out = "{\"result\":";
  out.append(result_json).append(",\"id\":").append(id).push_back('}');
  return out;
}

std::string WsErrorReply(const WsError& e) {
  std::string out = "{\"error\":{\"code\":" + std::to_string(e.code) + ",\"msg\":";
  AppendJsonString(e.msg, &out);
  out.append("},\"id\":").append(e.id).push_back('}');
  return out;
}

std::optional<KlineStreamName> ParseKlineStream(std::string_view stream) {
  constexpr std::string_view kMark = "@kline_";
  const size_t at = stream.find(kMark);
  if (at == std::string_view::npos || at == 0 || at > 32) return std::nullopt;
  std::optional<Interval> iv = ParseInterval(stream.substr(at + kMark.size()));
  if (!iv) return std::nullopt;
  return KlineStreamName{std::string(stream.substr(0, at)), *iv};
}

std::string LowerAscii(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string KlineStreamOf(std::string_view symbol, Interval iv) {
  return LowerAscii(symbol).append("@kline_").append(IntervalName(iv));
}

std::optional<std::string> ParseTickerStream(std::string_view stream) {
  constexpr std::string_view kMark = "@ticker";
  if (stream.size() <= kMark.size() || stream.size() - kMark.size() > 32 ||
      stream.substr(stream.size() - kMark.size()) != kMark) {
    return std::nullopt;
  }
  return std::string(stream.substr(0, stream.size() - kMark.size()));
}

std::string TickerStreamOf(std::string_view symbol) { return LowerAscii(symbol) + "@ticker"; }

void AppendKlineEvent(const Candle& c, std::string_view symbol, bool closed, int64_t event_ms,
                      std::string* out) {
  auto num = [out](std::string_view key, int64_t v) {
    out->append(key);
    out->append(std::to_string(v));
  };
  auto dec = [out](std::string_view key, const Decimal& d) {
    out->append(key);
    out->push_back('"');
    d.AppendTo(out);
    out->push_back('"');
  };
  num("{\"e\":\"kline\",\"E\":", event_ms);
  out->append(",\"s\":");
  AppendJsonString(symbol, out);
  num(",\"k\":{\"t\":", c.open_time);
  num(",\"T\":", c.close_time);
  out->append(",\"s\":");
  AppendJsonString(symbol, out);
  out->append(",\"i\":\"").append(IntervalName(c.interval)).push_back('"');
  num(",\"f\":", c.first_id);
  num(",\"L\":", c.last_id);
  dec(",\"o\":", c.open);
  dec(",\"c\":", c.close);
  dec(",\"h\":", c.high);
  dec(",\"l\":", c.low);
  dec(",\"v\":", c.volume);
  num(",\"n\":", c.count);
  out->append(closed ? ",\"x\":true" : ",\"x\":false");
  dec(",\"q\":", c.quote_volume);
  dec(",\"V\":", c.taker_volume);
  dec(",\"Q\":", c.taker_quote_volume);
  out->append(",\"B\":\"0\"}}");
}

std::string WrapCombined(std::string_view stream, std::string_view event) {
  std::string out = "{\"stream\":";
  AppendJsonString(stream, &out);
  out.append(",\"data\":").append(event).push_back('}');
  return out;
}

}  // namespace klined::api
