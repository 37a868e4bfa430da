// Decodes Kafka message values into validated Trades.
//
// DESIGN
// A message is one JSON trade object or an array of them. The decoder is a strict,
// allocation-free JSON reader specialised for this shape: it copies nothing it does not need,
// validates every field, and converts numbers exactly (no strtod, no locale). Field names
// come from a mapping (Binance's `s t p q T m` by default), and the time may be an ISO-8601
// string. Each bad element is rejected with a reason; good elements of an array are kept.
// Not thread-safe per instance; use one decoder per thread.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "klined/trade.h"

namespace klined {

enum class RejectReason : uint8_t {
  kMalformedJson,
  kMissingField,
  kBadType,
  kBadSymbol,
  kNonPositive,
  kOutOfRange,
  kTooPrecise,
  kFutureTime,
  // Decided after decoding, by the shard (never by the decoder):
  kOutOfOrder,    // at or below its source's watermark, never applied (reordered in its source)
  kStoreCorrupt,  // the symbol's stored state cannot be read or repaired (see docs)
};
inline constexpr int kRejectReasonCount = 10;
// "malformed_json", "missing_field", ... (the metric label values).
std::string_view RejectReasonName(RejectReason r);

// A trade in the Binance trade-stream shape the decoder reads with the default field map
// ({"s":..,"t":..,"p":"..","q":"..","T":..,"m":..}): dead letters decided after decoding, and
// the late-trade records handed to the MySQL worker.
std::string TradeJson(const Trade& t);

enum class TimeFormat : uint8_t {
  kEpochMs,  // JSON integer, ms since the epoch
  kIso8601,  // string such as 2024-11-21T00:00:00.123Z or ...+08:00
  kAuto,     // either, by JSON type
};

// Which JSON member holds each trade field (`trade_fields` in the config).
struct TradeFieldMap {
  std::string symbol = "s";
  std::string id = "t";
  std::string price = "p";
  std::string qty = "q";
  std::string time = "T";
  std::string buyer_maker = "m";  // optional field; empty name = never read
  TimeFormat time_format = TimeFormat::kAuto;
};

struct DecodeResult {
  uint32_t accepted = 0;
  uint32_t rejected = 0;  // trades rejected; an undecodable message counts as one
  RejectReason first_reason = RejectReason::kMalformedJson;  // valid when rejected > 0
  std::array<uint32_t, kRejectReasonCount> by_reason = {};
};

namespace decoder_internal {
// The configured member names, indexed for matching (built once per decoder).
struct Names {
  static constexpr int kFields = 6;  // symbol, id, price, qty, time, buyer_maker
  std::array<std::string_view, kFields> name;
  size_t max_len = 0;
  // Byte f of `first` and `len` hold field f's first byte and its length (capped at 254;
  // 255 for a field never read): one XOR finds the candidate fields of a member name.
  uint64_t first = 0;
  uint64_t len = 0;
  // The fields named by each one-byte member name (Binance names are all one byte).
  std::array<uint8_t, 256> one_byte{};
};
}  // namespace decoder_internal

class TradeDecoder {
 public:
  explicit TradeDecoder(TradeFieldMap fields = {}, int64_t max_future_skew_ms = 60000);
  // names_ views fields_: neither copied nor moved.
  TradeDecoder(const TradeDecoder&) = delete;
  TradeDecoder& operator=(const TradeDecoder&) = delete;

  // Appends each good trade of `message` to *out (which is not cleared) and counts the bad
  // ones. now_ms is the wall clock used for the future-time check.
  DecodeResult Decode(std::string_view message, int64_t now_ms, std::vector<Trade>* out);

  void set_max_future_skew_ms(int64_t ms) { max_future_skew_ms_ = ms; }

  // The fast path for messages shaped as real feeds send them (one trade object, one-byte
  // names, no whitespace or escapes) is on whenever the field map allows it; every other
  // message, and every rejection, goes through the general reader. Off: the general reader
  // only (the tests compare both; results are identical by construction).
  void set_fast_path(bool on) { fast_path_ = on && fast_path_allowed_; }

 private:
  TradeFieldMap fields_;
  decoder_internal::Names names_;
  int64_t max_future_skew_ms_;
  bool fast_path_allowed_ = false;
  bool fast_path_ = false;
};

}  // namespace klined
