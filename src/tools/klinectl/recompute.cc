// klinectl recompute.
//
// DESIGN
// The trades of the range are read from the topic by a reader of its own (librdkafka's
// simple consumer: no group, no commits, so klined's offsets are never touched). Each
// partition starts at the first message stamped at or after the range's first bucket minus
// skew_ms: the broker's time index (offsets_for_times), or a binary search over message
// timestamps where the broker does not answer by time (librdkafka's mock cluster). A
// partition whose oldest retained message is stamped after that point no longer holds the
// start of the range: the run is refused before anything is written.
//
// Every candle of every configured interval whose bucket meets [from, to] is recomputed from
// scratch with Candle::Apply (the product's own merge), empty buckets carrying the close
// before them, and the empty candles after the range re-carried with the new close up to the
// first one with trades (the current candle too, while it has none). Only closed buckets are
// written: nothing at or after the current candle's open time.
//
// Racing a running klined. Symbols go in chunks; per chunk:
//  1. the stored candles are read (Redis history and current, MySQL rows), then
//  2. each symbol's watermark W (the highest trade id klined applied), then
//  3. the partitions' high watermarks, and the topic is read up to them.
// Every trade klined applied before step 2 is in Kafka below those high watermarks, so the
// recomputed candle of a bucket is made of exactly the trades with ids <= W (those klined
// drops as duplicates are dropped here too); a trade above W is klined's to apply, after.
// The writes are compare-and-set against what step 1 read: MySQL first (one transaction per
// symbol and interval, rows locked, KlineTable::ReplaceIfUnchanged), then Redis (RECOMPUTE,
// one script per symbol and interval). A candle klined changed after step 1 (a late trade,
// a re-carry) fails the compare and is left to a rerun (exit 3), so a trade is never lost nor
// counted twice. A symbol with late trades queued for MySQL (B:late) or unpersisted candles
// (B:pending) in the range is waited for (settle_ms): the persistence of a version read
// before the write could otherwise land after it.
// The trades of the range are held in memory (~110 bytes each) for the run.
#include "tools/klinectl/recompute.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/clock.h"
#include "io/kafka/kafka_conf.h"
#include "io/mysql/kline_table.h"
#include "io/redis/job_scripts.h"
#include "klined/candle.h"
#include "tools/klinectl/history_util.h"
#include "tools/klinectl/routed_redis.h"

namespace klined::klinectl {
namespace {

// KEYS: history, pending hash, current candle, trimmed hash, write stamp (B:ws, voided when
// the current candle is replaced). ARGV: interval, dry ("1"/"0"),
// the current candle as read and its replacement ('' '' = none), then (open_time, member as
// read or '' for none, new member) triples. A member is replaced only if it is still the one
// read and no pending entry for it waits for MySQL; a missing one (a hole: Redis lost it) is
// added only if still missing, above the interval's trim mark and before the current candle;
// the current candle only if unchanged. Returns {written, conflicts}. Used after
// lua::kHistoryWindow.
constexpr const char kRecompute[] = R"LUA(
local written, conflicts = 0, 0
local pending_ok = redis.call('TYPE', KEYS[2]).ok
pending_ok = pending_ok == 'none' or pending_ok == 'hash'
local trimmed, cur_open = history_window(KEYS[4], ARGV[1], KEYS[3])
for i = 5, #ARGV, 3 do
  local t = ARGV[i]
  local now = redis.call('ZRANGEBYSCORE', KEYS[1], t, t)
  local was = ARGV[i + 1]
  local free = pending_ok and redis.call('HEXISTS', KEYS[2], ARGV[1] .. '|' .. t) == 0
  if was == '' then
    local open = tonumber(t)
    if open <= trimmed or (cur_open and open >= cur_open) then
      -- outside Redis's window: MySQL's only
    elseif #now == 0 and free then
      written = written + 1
      if ARGV[2] == '0' then redis.call('ZADD', KEYS[1], t, ARGV[i + 2]) end
    else
      conflicts = conflicts + 1
    end
  elseif #now == 1 and now[1] == was and free then
    written = written + 1
    if ARGV[2] == '0' then
      redis.call('ZREM', KEYS[1], was)
      redis.call('ZADD', KEYS[1], t, ARGV[i + 2])
    end
  else
    conflicts = conflicts + 1
  end
end
if ARGV[3] ~= '' then
  if redis.call('GET', KEYS[3]) == ARGV[3] then
    written = written + 1
    if ARGV[2] == '0' then redis.call('MSET', KEYS[3], ARGV[4], KEYS[5], '') end
  else
    conflicts = conflicts + 1
  end
end
return {written, conflicts}
)LUA";

constexpr size_t kChunk = 100;     // symbols per snapshot
constexpr int kKafkaTimeoutMs = 10000;


// ---- Kafka -------------------------------------------------------------------------------

struct KafkaDel {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
  void operator()(rd_kafka_topic_t* t) const { rd_kafka_topic_destroy(t); }
  void operator()(rd_kafka_message_t* m) const { rd_kafka_message_destroy(m); }
};
using KafkaMessage = std::unique_ptr<rd_kafka_message_t, KafkaDel>;

// The topic read partition by partition with the simple consumer.
class TopicReader {
 public:
  // False with *error.
  bool Open(const RecomputeOptions& o, std::string* error) {
    rd_kafka_conf_t* conf = NewClientConf(o.brokers, o.kafka_properties, error);
    if (conf == nullptr) return false;
    // Fetch what is there at once: the binary search reads single messages.
    if (!SetProperty(conf, "fetch.wait.max.ms", "50", error) ||
        !SetProperty(conf, "enable.partition.eof", "true", error)) {
      rd_kafka_conf_destroy(conf);
      return false;
    }
    char why[512];
    rk_.reset(rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why));
    if (!rk_) {
      rd_kafka_conf_destroy(conf);
      *error = why;
      return false;
    }
    topic_name_ = o.topic;
    topic_.reset(rd_kafka_topic_new(rk_.get(), o.topic.c_str(), nullptr));
    const rd_kafka_metadata_t* md = nullptr;
    const rd_kafka_resp_err_t e =
        rd_kafka_metadata(rk_.get(), 0, topic_.get(), &md, kKafkaTimeoutMs);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
      *error = "Kafka metadata of " + o.topic + ": " + rd_kafka_err2str(e);
      return false;
    }
    std::unique_ptr<const rd_kafka_metadata_t, void (*)(const rd_kafka_metadata_t*)> hold(
        md, rd_kafka_metadata_destroy);
    if (md->topic_cnt != 1 || md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      *error = "Kafka topic " + o.topic + ": " +
               (md->topic_cnt == 1 ? rd_kafka_err2str(md->topics[0].err) : "not found");
      return false;
    }
    for (int i = 0; i < md->topics[0].partition_cnt; ++i) {
      partitions_.push_back(md->topics[0].partitions[i].id);
    }
    std::sort(partitions_.begin(), partitions_.end());
    return true;
  }
  const std::vector<int32_t>& partitions() const { return partitions_; }

  bool Watermarks(int32_t p, int64_t* low, int64_t* high, std::string* error) {
    const rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(
        rk_.get(), topic_name_.c_str(), p, low, high, kKafkaTimeoutMs);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
      *error = "Kafka watermarks of " + topic_name_ + "/" + std::to_string(p) + ": " +
               rd_kafka_err2str(e);
      return false;
    }
    return true;
  }

  // The timestamp of the message at `offset` (kept below high). False with *error.
  bool TimestampAt(int32_t p, int64_t offset, int64_t* ts, std::string* error) {
    if (rd_kafka_consume_start(topic_.get(), p, offset) != 0) {
      *error = std::string("Kafka consume_start: ") + rd_kafka_err2str(rd_kafka_last_error());
      return false;
    }
    bool ok = false;
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(kKafkaTimeoutMs);
    while (std::chrono::steady_clock::now() < until) {
      KafkaMessage m(rd_kafka_consume(topic_.get(), p, 500));
      if (!m) continue;
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) continue;
      if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        *error = "Kafka reading " + topic_name_ + "/" + std::to_string(p) + " at " +
                 std::to_string(offset) + ": " + rd_kafka_err2str(m->err);
        break;
      }
      rd_kafka_timestamp_type_t type;
      *ts = rd_kafka_message_timestamp(m.get(), &type);
      ok = true;
      break;
    }
    if (!ok && error->empty()) *error = "Kafka: no message at " + std::to_string(offset);
    rd_kafka_consume_stop(topic_.get(), p);
    return ok;
  }

  // The first offset of p stamped at or after t (high if none). *retained_from: the oldest
  // retained message's timestamp when the log was truncated (low > 0), else nullopt.
  bool StartOffset(int32_t p, int64_t t, int64_t low, int64_t high, int64_t* start,
                   std::optional<int64_t>* retained_from, std::string* error) {
    retained_from->reset();
    *start = high;
    if (low >= high) return true;
    if (low > 0) {
      int64_t ts = 0;
      if (!TimestampAt(p, low, &ts, error)) return false;
      *retained_from = ts;
    }
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, topic_name_.c_str(), p)->offset = t;
    const rd_kafka_resp_err_t e = rd_kafka_offsets_for_times(rk_.get(), list, kKafkaTimeoutMs);
    const int64_t by_time = list->elems[0].err == RD_KAFKA_RESP_ERR_NO_ERROR ? list->elems[0].offset
                                                                            : -1;
    rd_kafka_topic_partition_list_destroy(list);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR && by_time >= 0) {
      *start = std::clamp(by_time, low, high);
      return true;
    }
    // No answer by time: either nothing is stamped at or after t, or the broker does not
    // look up by time. The last message tells which; then a binary search over timestamps.
    int64_t last = 0;
    if (!TimestampAt(p, high - 1, &last, error)) return false;
    if (last < t) return true;
    int64_t lo = low, hi = high - 1;  // the answer is in [lo, hi]
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      int64_t ts = 0;
      if (!TimestampAt(p, mid, &ts, error)) return false;
      if (ts < t) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    *start = lo;
    return true;
  }

  // Reads p's messages [from, to), each to sink(payload). False with *error.
  template <class Sink>
  bool Read(int32_t p, int64_t from, int64_t to, Sink&& sink, std::string* error) {
    if (from >= to) return true;
    if (rd_kafka_consume_start(topic_.get(), p, from) != 0) {
      *error = std::string("Kafka consume_start: ") + rd_kafka_err2str(rd_kafka_last_error());
      return false;
    }
    std::vector<rd_kafka_message_t*> batch(1000);
    int64_t next = from;
    auto last_progress = std::chrono::steady_clock::now();
    bool ok = true;
    while (next < to) {
      const ssize_t n = rd_kafka_consume_batch(topic_.get(), p, 500, batch.data(), batch.size());
      if (n < 0) {
        *error = std::string("Kafka consume: ") + rd_kafka_err2str(rd_kafka_last_error());
        ok = false;
        break;
      }
      for (ssize_t i = 0; i < n; ++i) {
        KafkaMessage m(batch[static_cast<size_t>(i)]);
        if (!ok) continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) continue;
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
          *error = "Kafka reading " + topic_name_ + "/" + std::to_string(p) + ": " +
                   rd_kafka_err2str(m->err) +
                   (m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE
                        ? " (retention removed messages of the range while reading)"
                        : "");
          ok = false;
          continue;
        }
        if (m->offset >= to) continue;
        next = m->offset + 1;
        last_progress = std::chrono::steady_clock::now();
        sink(std::string_view(static_cast<const char*>(m->payload), m->len));
      }
      if (!ok) break;
      if (std::chrono::steady_clock::now() - last_progress >
          std::chrono::milliseconds(3 * kKafkaTimeoutMs)) {
        *error = "Kafka: " + topic_name_ + "/" + std::to_string(p) + " stalled at offset " +
                 std::to_string(next) + " (high watermark " + std::to_string(to) + ")";
        ok = false;
        break;
      }
    }
    rd_kafka_consume_stop(topic_.get(), p);
    return ok;
  }

 private:
  std::unique_ptr<rd_kafka_t, KafkaDel> rk_;
  std::unique_ptr<rd_kafka_topic_t, KafkaDel> topic_;
  std::string topic_name_;
  std::vector<int32_t> partitions_;
};

// ---- stored state ------------------------------------------------------------------------

// What one (symbol, interval) holds from the range's first bucket on, as read in step 1.
struct Stored {
  Interval iv = Interval::k1m;
  int64_t lo = 0, hi = 0;                     // the range's buckets: [lo, hi], hi closed
  std::optional<Decimal> carry;               // the close before lo
  std::map<int64_t, std::string> redis;       // history members from lo on
  std::map<int64_t, Candle> mysql;            // rows in [lo, hi] and the empty tail after
  std::string current;                        // current candle JSON ('' none)
  std::optional<Candle> current_candle;
  bool busy = false;  // a pending candle of this interval in the range: wait
};

struct SymbolState {
  std::string symbol;
  std::vector<Stored> ivs;
  int64_t watermark = 0;  // step 2
  bool late = false;      // late trades queued for MySQL
};

// Parses a history member; nullopt if it does not parse.
std::optional<Candle> ParseMember(const std::string& json) {
  Candle c;
  std::string_view sym;
  bool closed = false;
  if (!ParseCandleJson(json, &c, &sym, &closed)) return std::nullopt;
  return c;
}

class Recomputer {
 public:
  explicit Recomputer(const RecomputeOptions& o)
      : o_(o), db_(o.base.mysql), redis_(o.base.redis), table_(&db_, 500, o.base.tz) {}

  int Run() {
    const RestoreOptions& b = o_.base;
    if (!db_.EnsureConnected()) {
      std::fprintf(stderr, "klinectl: cannot connect to MySQL at %s:%d: %s\n",
                   b.mysql.host.c_str(), b.mysql.port, db_.error().c_str());
      return 2;
    }
    script_ = redis_.AddScript(std::string(lua::kHistoryWindow) + kRecompute);
    if (!redis_.EnsureConnected()) {
      std::fprintf(stderr, "klinectl: cannot connect to Redis at %s: %s\n",
                   redis_.address().c_str(), redis_.error().c_str());
      return 2;
    }
    std::string error;
    if (!kafka_.Open(o_, &error)) {
      std::fprintf(stderr, "klinectl: %s\n", error.c_str());
      return 2;
    }
    int64_t epoch = 0;
    if (!PrepareWrites(&table_, &db_, b.dry_run, &epoch)) return 2;
    table_.set_fence_epoch(epoch);
    if (!ListSymbols()) return 2;
    // The trade times that matter: every interval's buckets meeting the range.
    t_lo_ = INT64_MAX;
    t_hi_ = INT64_MIN;
    for (const Interval iv : b.intervals) {
      t_lo_ = std::min(t_lo_, BucketOpen(iv, o_.from_ms, b.tz));
      t_hi_ = std::max(t_hi_, NextBucketOpen(iv, BucketOpen(iv, o_.to_ms, b.tz), b.tz));
    }
    if (const int code = StartOffsets(); code != 0) return code;

    Progress progress("recompute", b.dry_run ? "to change" : "changed", symbols_.size());
    for (size_t first = 0; first < symbols_.size(); first += kChunk) {
      std::vector<SymbolState> chunk;
      for (size_t k = first; k < std::min(symbols_.size(), first + kChunk); ++k) {
        chunk.push_back(SymbolState{symbols_[k], {}, 0, false});
      }
      if (!Snapshot(&chunk)) return 2;
      if (!CatchUp()) return 2;
      for (SymbolState& s : chunk) {
        if (!Write(s)) return 2;
      }
      progress.Update(std::min(symbols_.size(), first + kChunk), changed_mysql_ + changed_redis_);
    }
    std::printf(
        "recompute%s: %s .. %s, %zu symbols, %llu messages read, %llu trades in the range "
        "(%llu duplicates dropped, %llu newer than klined's watermark left to it), %llu candles "
        "%s MySQL, %llu %s Redis, %llu unchanged; %llu changed by klined meanwhile or busy "
        "(rerun)\n",
        b.dry_run ? " (dry run)" : "", IsoTime(o_.from_ms).c_str(), IsoTime(o_.to_ms).c_str(),
        symbols_.size(), static_cast<unsigned long long>(messages_),
        static_cast<unsigned long long>(trades_read_),
        static_cast<unsigned long long>(duplicates_),
        static_cast<unsigned long long>(newer_), static_cast<unsigned long long>(changed_mysql_),
        b.dry_run ? "would change in" : "changed in",
        static_cast<unsigned long long>(changed_redis_),
        b.dry_run ? "would change in" : "changed in",
        static_cast<unsigned long long>(unchanged_), static_cast<unsigned long long>(conflicts_));
    for (const std::string& why : busy_) std::fprintf(stderr, "klinectl: %s\n", why.c_str());
    return conflicts_ > 0 ? 3 : 0;
  }

 private:
  bool ListSymbols() {
    std::set<std::string> all(o_.base.symbols.begin(), o_.base.symbols.end());
    if (all.empty()) {
      std::vector<std::string> names;
      if (!table_.Symbols(&names)) {
        std::fprintf(stderr, "klinectl: listing the kline table's symbols: %s\n",
                     db_.error().c_str());
        return false;
      }
      all.insert(names.begin(), names.end());
      RedisReply r = redis_.Command({"SMEMBERS", o_.base.keys.Symbols()});
      if (r == nullptr || r->type != REDIS_REPLY_ARRAY) {
        std::fprintf(stderr, "klinectl: Redis SMEMBERS: %s\n",
                     r == nullptr ? redis_.error().c_str() : "an unexpected reply");
        return false;
      }
      for (size_t i = 0; i < r->elements; ++i) all.emplace(r->element[i]->str, r->element[i]->len);
    }
    symbols_.assign(all.begin(), all.end());
    for (size_t i = 0; i < symbols_.size(); ++i) index_[symbols_[i]] = i;
    trades_.resize(symbols_.size());
    return true;
  }

  // Per partition: where reading starts, refusing a range the log no longer holds.
  int StartOffsets() {
    std::string error;
    const int64_t t = t_lo_ - o_.skew_ms;
    for (const int32_t p : kafka_.partitions()) {
      int64_t low = 0, high = 0, start = 0;
      std::optional<int64_t> retained_from;
      if (!kafka_.Watermarks(p, &low, &high, &error) ||
          !kafka_.StartOffset(p, t, low, high, &start, &retained_from, &error)) {
        std::fprintf(stderr, "klinectl: %s\n", error.c_str());
        return 2;
      }
      if (retained_from && *retained_from > t) {
        std::fprintf(stderr,
                     "klinectl: refused: Kafka no longer retains the range: %s partition %d "
                     "holds messages from %s (offset %lld) on, the range needs them from %s\n",
                     o_.topic.c_str(), p, IsoTime(*retained_from).c_str(),
                     static_cast<long long>(low), IsoTime(t).c_str());
        return 4;
      }
      position_[p] = start;
    }
    return 0;
  }

  // Steps 1 and 2 for a chunk of symbols; waits (settle_ms) for busy ones.
  bool Snapshot(std::vector<SymbolState>* chunk) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(o_.settle_ms);
    for (;;) {
      for (SymbolState& s : *chunk) {
        if (!ReadStored(&s)) return false;
      }
      // Step 2 after step 1, for the whole chunk.
      for (SymbolState& s : *chunk) {
        redis_.Append({"GET", o_.base.keys.Watermark(s.symbol)});
        redis_.Append({"HLEN", o_.base.keys.Late(s.symbol)});
      }
      bool busy = false;
      for (SymbolState& s : *chunk) {
        RedisReply wm = redis_.GetReply();
        RedisReply late = redis_.GetReply();
        if (wm == nullptr || late == nullptr) return RedisFailed();
        s.watermark = wm->type == REDIS_REPLY_STRING ? std::strtoll(wm->str, nullptr, 10) : 0;
        s.late = late->type == REDIS_REPLY_INTEGER && late->integer > 0;
        busy |= s.late;
        for (const Stored& st : s.ivs) busy |= st.busy;
      }
      if (!busy || std::chrono::steady_clock::now() >= until) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }

  bool RedisFailed() {
    std::fprintf(stderr, "\nklinectl: Redis: %s\n", redis_.error().c_str());
    return false;
  }
  bool MysqlFailed(const std::string& sym) {
    std::fprintf(stderr, "\nklinectl: MySQL, %s: %s\n", sym.c_str(), db_.error().c_str());
    return false;
  }

  bool ReadStored(SymbolState* s) {
    const RestoreOptions& b = o_.base;
    const std::string& sym = s->symbol;
    s->ivs.clear();
    const int64_t now = WallMs();
    std::vector<std::string> keys;
    for (const Interval iv : b.intervals) {
      const std::string lo = std::to_string(BucketOpen(iv, o_.from_ms, b.tz));
      redis_.Append({"GET", b.keys.Current(sym, iv)});
      keys.push_back(b.keys.History(sym, iv));
      redis_.Append({"ZRANGEBYSCORE", keys.back(), lo, "+inf", "WITHSCORES"});
      redis_.Append({"ZREVRANGEBYSCORE", keys.back(), "(" + lo, "-inf", "LIMIT", "0", "1"});
    }
    redis_.Append({"HKEYS", b.keys.Pending(sym)});
    for (const Interval iv : b.intervals) {
      Stored st;
      st.iv = iv;
      st.lo = BucketOpen(iv, o_.from_ms, b.tz);
      RedisReply cur = redis_.GetReply();
      RedisReply hist = redis_.GetReply();
      RedisReply before = redis_.GetReply();
      if (cur == nullptr || hist == nullptr || before == nullptr) return RedisFailed();
      int64_t cur_open = BucketOpen(iv, now, b.tz);
      if (cur->type == REDIS_REPLY_STRING) {
        st.current.assign(cur->str, cur->len);
        st.current_candle = ParseMember(st.current);
        if (st.current_candle) cur_open = st.current_candle->open_time;
      }
      // Closed buckets only: before the current candle's.
      st.hi = std::min(BucketOpen(iv, o_.to_ms, b.tz), cur_open - 1);
      st.hi = st.hi < st.lo ? st.lo - 1 : BucketOpen(iv, st.hi, b.tz);
      if (hist->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i + 1 < hist->elements; i += 2) {
          st.redis[std::strtoll(hist->element[i + 1]->str, nullptr, 10)].assign(
              hist->element[i]->str, hist->element[i]->len);
        }
      }
      if (before->type == REDIS_REPLY_ARRAY && before->elements == 1) {
        if (auto c = ParseMember(std::string(before->element[0]->str, before->element[0]->len))) {
          st.carry = c->close;
        }
      }
      s->ivs.push_back(std::move(st));
    }
    RedisReply pending = redis_.GetReply();
    if (pending == nullptr) return RedisFailed();
    if (pending->type == REDIS_REPLY_ARRAY) {
      for (size_t i = 0; i < pending->elements; ++i) {
        const std::string_view field(pending->element[i]->str, pending->element[i]->len);
        const size_t bar = field.find('|');
        if (bar == std::string_view::npos) continue;
        const auto iv = ParseInterval(field.substr(0, bar));
        const int64_t t = std::strtoll(std::string(field.substr(bar + 1)).c_str(), nullptr, 10);
        for (Stored& st : s->ivs) {
          if (iv && st.iv == *iv && t >= st.lo) st.busy = true;
        }
      }
    }
    // MySQL: the range's rows, the carry before it, and the empty tail after it.
    std::vector<Candle> rows;
    for (Stored& st : s->ivs) {
      rows.clear();
      constexpr size_t kAll = 100000000;
      if (!table_.ReadRange(sym, st.iv, st.lo, st.hi, kAll, false, &rows)) {
        return MysqlFailed(sym);
      }
      for (const Candle& c : rows) st.mysql[c.open_time] = c;
      if (!st.carry) {
        rows.clear();
        if (!table_.ReadRange(sym, st.iv, INT64_MIN, st.lo - 1, 1, true, &rows)) {
          return MysqlFailed(sym);
        }
        if (!rows.empty()) st.carry = rows.back().close;
      }
      for (int64_t from = st.hi + 1;;) {
        rows.clear();
        constexpr size_t kTailPage = 1000;
        if (!table_.ReadRange(sym, st.iv, from, INT64_MAX, kTailPage, false, &rows)) {
          return MysqlFailed(sym);
        }
        bool traded = false;
        for (const Candle& c : rows) {
          st.mysql[c.open_time] = c;
          if (!c.empty()) {
            traded = true;
            break;
          }
        }
        if (traded || rows.size() < kTailPage) break;
        from = rows.back().open_time + 1;
      }
    }
    return true;
  }

  // Step 3: every partition read up to its high watermark now.
  bool CatchUp() {
    std::string error;
    TradeDecoder decoder(o_.fields, INT64_MAX / 4);
    std::vector<Trade> decoded;
    for (const int32_t p : kafka_.partitions()) {
      int64_t low = 0, high = 0;
      if (!kafka_.Watermarks(p, &low, &high, &error)) {
        std::fprintf(stderr, "\nklinectl: %s\n", error.c_str());
        return false;
      }
      int64_t& pos = position_[p];
      auto sink = [&](std::string_view payload) {
        ++messages_;
        decoded.clear();
        decoder.Decode(payload, 0, &decoded);
        for (const Trade& t : decoded) {
          if (t.time_ms < t_lo_ || t.time_ms >= t_hi_) continue;
          const auto it = index_.find(std::string(t.symbol.view()));
          if (it == index_.end()) continue;
          trades_[it->second].push_back(t);
          ++trades_read_;
        }
      };
      if (!kafka_.Read(p, pos, high, sink, &error)) {
        std::fprintf(stderr, "\nklinectl: %s\n", error.c_str());
        return false;
      }
      pos = std::max(pos, high);
    }
    return true;
  }

  // The recomputed candles of one (symbol, interval): every bucket of [lo, hi] from the
  // series' start, then the re-carried tail. Fills the replacements.
  bool Recompute(const SymbolState& s, const Stored& st, const std::vector<Trade>& trades,
                 std::vector<KlineTable::Replacement>* mysql,
                 std::vector<std::pair<int64_t, std::string>>* redis, std::string* new_current) {
    const UtcOffset tz = o_.base.tz;
    std::map<int64_t, Candle> fresh;
    for (const Trade& t : trades) {
      const int64_t open = BucketOpen(st.iv, t.time_ms, tz);
      if (open < st.lo || open > st.hi) continue;
      auto [it, added] = fresh.try_emplace(open);
      if (added) it->second = Candle::Empty(st.iv, open, tz, Decimal());
      if (!it->second.Apply(t)) {
        std::fprintf(stderr, "\nklinectl: %s: a sum passes 20 digits at %lld\n",
                     s.symbol.c_str(), static_cast<long long>(open));
        return false;
      }
    }
    std::optional<Decimal> carry = st.carry;
    auto consider = [&](const Candle& now) {
      const auto r = st.redis.find(now.open_time);
      const auto m = st.mysql.find(now.open_time);
      const std::optional<Candle> in_redis =
          r == st.redis.end() ? std::nullopt : ParseMember(r->second);
      bool same = true;
      if (m == st.mysql.end() || !(m->second == now)) {
        same = false;
        mysql->push_back(KlineTable::Replacement{
            m == st.mysql.end() ? std::nullopt : std::optional<Candle>(m->second), now});
      }
      if (r == st.redis.end() || !(in_redis && *in_redis == now)) {
        // A replacement, or a hole (the script adds it only inside Redis's window).
        same &= r == st.redis.end();
        redis->emplace_back(now.open_time, CandleJson(now, s.symbol, /*closed=*/true));
      }
      if (same) ++unchanged_;
    };
    for (int64_t b = st.lo; b <= st.hi; b = NextBucketOpen(st.iv, b, tz)) {
      const auto it = fresh.find(b);
      if (it != fresh.end()) {
        consider(it->second);
        carry = it->second.close;
      } else if (carry) {
        consider(Candle::Empty(st.iv, b, tz, *carry));
      }  // else: before the series' first trade
    }
    // The tail: stored empty candles after the range carry the new close.
    if (!carry) return true;
    std::map<int64_t, Candle> tail;
    for (const auto& [t, c] : st.mysql) {
      if (t > st.hi) tail[t] = c;
    }
    for (const auto& [t, json] : st.redis) {
      if (t <= st.hi) continue;
      if (auto c = ParseMember(json)) tail[t] = *c;
    }
    for (const auto& [t, c] : tail) {
      if (!c.empty()) return true;
      if (c.close == *carry && c.open == *carry) return true;  // the carry already holds
      consider(Candle::Empty(st.iv, t, tz, *carry));
    }
    if (st.current_candle && st.current_candle->empty() && !(st.current_candle->close == *carry)) {
      Candle now = Candle::Empty(st.iv, st.current_candle->open_time, tz, *carry);
      *new_current = CandleJson(now, s.symbol, /*closed=*/false);
    }
    return true;
  }

  bool Write(SymbolState& s) {
    const RestoreOptions& b = o_.base;
    std::vector<Trade>& all = trades_[index_[s.symbol]];
    // Sorted by id, duplicates (the same id twice: a re-published feed) dropped once.
    std::stable_sort(all.begin(), all.end(),
                     [](const Trade& x, const Trade& y) { return x.id < y.id; });
    const auto dup = std::unique(all.begin(), all.end(),
                                 [](const Trade& x, const Trade& y) { return x.id == y.id; });
    duplicates_ += static_cast<uint64_t>(all.end() - dup);
    all.erase(dup, all.end());
    std::vector<Trade> trades;
    for (const Trade& t : all) {
      if (t.id <= s.watermark) {
        trades.push_back(t);
      } else {
        ++newer_;
      }
    }
    all = {};  // each symbol is in one chunk: its trades are done with
    if (s.late) {
      busy_.push_back(s.symbol + ": late trades still queued for MySQL; skipped");
      ++conflicts_;
      return true;
    }
    for (const Stored& st : s.ivs) {
      if (st.busy) {
        busy_.push_back(s.symbol + " " + std::string(IntervalName(st.iv)) +
                        ": candles still waiting for MySQL; skipped");
        ++conflicts_;
        continue;
      }
      std::vector<KlineTable::Replacement> mysql;
      std::vector<std::pair<int64_t, std::string>> redis;
      std::string new_current;
      if (!Recompute(s, st, trades, &mysql, &redis, &new_current)) return false;
      std::set<int64_t> mysql_conflicts;
      if (!b.dry_run) {
        constexpr size_t kBatch = 500;
        for (size_t i = 0; i < mysql.size(); i += kBatch) {
          const std::span<const KlineTable::Replacement> part(
              mysql.data() + i, std::min(kBatch, mysql.size() - i));
          std::vector<bool> written;
          const WriteStatus w = table_.ReplaceIfUnchanged(s.symbol, st.iv, part, &written);
          if (w == WriteStatus::kFenced) {
            std::fprintf(stderr,
                         "\nklinectl: fenced: a new lease holder raised kline_fence; rerun\n");
            return false;
          }
          if (w != WriteStatus::kOk) return MysqlFailed(s.symbol);
          for (size_t k = 0; k < part.size(); ++k) {
            if (written[k]) {
              ++changed_mysql_;
            } else {
              ++conflicts_;
              mysql_conflicts.insert(part[k].now.open_time);
            }
          }
        }
      } else {
        changed_mysql_ += mysql.size();
      }
      // Redis: the members read in step 1, where MySQL took the new version (or had it).
      std::vector<std::string> argv_s = {"EVALSHA", std::string(redis_.Sha(script_)), "5",
                                         b.keys.History(s.symbol, st.iv),
                                         b.keys.Pending(s.symbol),
                                         b.keys.Current(s.symbol, st.iv),
                                         b.keys.Trimmed(s.symbol),
                                         b.keys.WriteStamp(s.symbol),
                                         std::string(IntervalName(st.iv)),
                                         b.dry_run ? "1" : "0",
                                         new_current.empty() ? "" : st.current,
                                         new_current};
      for (const auto& [t, json] : redis) {
        if (mysql_conflicts.contains(t)) continue;
        const auto was = st.redis.find(t);
        argv_s.push_back(std::to_string(t));
        argv_s.push_back(was == st.redis.end() ? std::string() : was->second);
        argv_s.push_back(json);
      }
      if (argv_s.size() == 12 && new_current.empty()) continue;
      std::vector<std::string_view> argv(argv_s.begin(), argv_s.end());
      redis_.Append(argv);
      RedisReply r = redis_.GetReply();
      if (r == nullptr) return RedisFailed();
      if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        std::fprintf(stderr, "\nklinectl: %s: RECOMPUTE answered %s\n", s.symbol.c_str(),
                     r->type == REDIS_REPLY_ERROR ? r->str : "an unexpected reply");
        return false;
      }
      changed_redis_ += static_cast<uint64_t>(r->element[0]->integer);
      conflicts_ += static_cast<uint64_t>(r->element[1]->integer);
    }
    return true;
  }

  const RecomputeOptions& o_;
  MysqlConn db_;
  RoutedRedis redis_;
  KlineTable table_;
  TopicReader kafka_;
  size_t script_ = 0;
  std::vector<std::string> symbols_;
  std::unordered_map<std::string, size_t> index_;
  std::vector<std::vector<Trade>> trades_;  // per symbol, the range's trades read so far
  std::map<int32_t, int64_t> position_;     // per partition, the next offset to read
  int64_t t_lo_ = 0, t_hi_ = 0;             // trade times of interest: [t_lo_, t_hi_)
  uint64_t messages_ = 0, trades_read_ = 0, duplicates_ = 0, newer_ = 0;
  uint64_t changed_mysql_ = 0, changed_redis_ = 0, unchanged_ = 0, conflicts_ = 0;
  std::vector<std::string> busy_;
};

}  // namespace

int Recompute(const RecomputeOptions& o) { return Recomputer(o).Run(); }

}  // namespace klined::klinectl
