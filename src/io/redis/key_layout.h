// The contract's Redis key layout (section 4) and klined's bookkeeping keys, spelled once for
// the C++ side: the shards' store, the timer jobs, the API and klinectl build every key here.
// Every per-symbol key carries the symbol as a Redis Cluster hash tag, `{SYMBOL}`, so all of a
// symbol's keys share one slot. (The Lua scripts, src/io/redis/lua_scripts.h and
// job_scripts.h, still derive a symbol's keys from its base `PREFIX:{SYMBOL}` passed in ARGV;
// their list of suffixes is the one below.)
#pragma once

#include <cassert>
#include <deque>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "io/redis/cluster/slot_map.h"
#include "klined/interval.h"

namespace klined {

class KeyLayout {
 public:
  // ticker_prefix may be empty for users that never name a ticker key.
  KeyLayout(std::string prefix, std::string ticker_prefix)
      : prefix_(std::move(prefix)), ticker_prefix_(std::move(ticker_prefix)) {}

  const std::string& prefix() const { return prefix_; }

  // PREFIX:{SYMBOL}
  std::string Base(std::string_view symbol) const {
    std::string k;
    k.reserve(prefix_.size() + symbol.size() + 16);
    k.append(prefix_).append(":{").append(symbol).append("}");
    return k;
  }
  // The cluster slot of every key of the symbol (its hash tag).
  uint16_t Slot(std::string_view symbol) const { return cluster::KeySlot(Base(symbol)); }

  // Every key a script call on the symbol may touch (its current candles and histories of
  // `intervals`, its bookkeeping keys, its ticker when this layout names one), the
  // watermark first, for the call's KEYS. Declared, they make a cluster node check them all
  // before the script runs: a node that no longer serves the slot answers MOVED; during a
  // migration of the slot (its keys move a few at a time) a node holding only some of them
  // answers TRYAGAIN (ASK once the source holds none), so a script never runs with half the
  // symbol's keys, reading a key still on the other node as missing. The events channel is
  // not a key (SPUBLISH routes by its slot, the same one).
  size_t ScriptKeyCount(size_t intervals) const {
    return kScriptBookkeeping + (ticker_prefix_.empty() ? 0 : 1) + 2 * intervals;
  }
  template <class Add>
  void ScriptKeys(std::string_view symbol, std::span<const Interval> intervals, Add&& add) const {
    for (std::string_view suffix : {"wm", "wmp", "ws", "tks", "pending", "late", "trimmed", "fence",
                                    "quarantine", "watch", "watchers"}) {
      add(Of(symbol, suffix));
    }
    if (!ticker_prefix_.empty()) add(Ticker(symbol));
    for (Interval iv : intervals) {
      add(Current(symbol, iv));
      add(History(symbol, iv));
    }
  }
  // The same appended to a command's argv, the strings kept in *strings (stable addresses).
  void AppendScriptKeys(std::string_view symbol, std::span<const Interval> intervals,
                        std::deque<std::string>* strings,
                        std::vector<std::string_view>* argv) const {
    ScriptKeys(symbol, intervals,
               [&](std::string key) { argv->push_back(strings->emplace_back(std::move(key))); });
  }
  // PREFIX:{SYMBOL}:INTERVAL: the current candle (string).
  std::string Current(std::string_view symbol, Interval iv) const {
    std::string k;
    CurrentInto(symbol, iv, &k);
    return k;
  }
  // The same into *out, reusing its capacity (loops over many symbols' keys).
  void CurrentInto(std::string_view symbol, Interval iv, std::string* out) const {
    out->assign(prefix_).append(":{").append(symbol).append("}:").append(IntervalName(iv));
  }
  // PREFIX:{SYMBOL}:INTERVAL:hist: closed candles (sorted set, score = open time).
  std::string History(std::string_view symbol, Interval iv) const {
    return Current(symbol, iv).append(":hist");
  }
  // PREFIX:{SYMBOL}:wm: the highest applied trade id.
  std::string Watermark(std::string_view symbol) const { return Of(symbol, "wm"); }
  // PREFIX:{SYMBOL}:wmp: per-partition watermarks, FLUSH's compare-and-set stamp.
  std::string Marks(std::string_view symbol) const { return Of(symbol, "wmp"); }
  // PREFIX:{SYMBOL}:ws: the shard's write stamp (FLUSH_FAST; "" = void).
  std::string WriteStamp(std::string_view symbol) const { return Of(symbol, "ws"); }
  // PREFIX:{SYMBOL}:watch: what API instances follow of the symbol.
  std::string Watch(std::string_view symbol) const { return Of(symbol, "watch"); }
  // B:watchers: each API instance's part of B:watch (hash instance -> "expiry_ms|kinds").
  std::string Watchers(std::string_view symbol) const { return Of(symbol, "watchers"); }
  // PREFIX:{SYMBOL}:tks: the 24h ticker's persisted state.
  std::string TickerState(std::string_view symbol) const { return Of(symbol, "tks"); }
  // PREFIX:{SYMBOL}:pending: hash "INTERVAL|open_time" -> candle JSON not yet in MySQL.
  std::string Pending(std::string_view symbol) const { return Of(symbol, "pending"); }
  // PREFIX:{SYMBOL}:late: hash of late trades whose bucket left Redis, for MySQL.
  std::string Late(std::string_view symbol) const { return Of(symbol, "late"); }
  // PREFIX:{SYMBOL}:trimmed: hash INTERVAL -> newest open time trimmed from history.
  std::string Trimmed(std::string_view symbol) const { return Of(symbol, "trimmed"); }
  // PREFIX:{SYMBOL}:fence: the newest lease epoch a timer job wrote the symbol under.
  std::string Fence(std::string_view symbol) const { return Of(symbol, "fence"); }
  // PREFIX:{SYMBOL}:quarantine: pending entries set aside for a person.
  std::string Quarantine(std::string_view symbol) const { return Of(symbol, "quarantine"); }
  // PREFIX:{SYMBOL}:events: the shard channel FLUSH and ROLLOVER publish written candles on.
  std::string Events(std::string_view symbol) const { return Of(symbol, "events"); }
  // The symbol of an Events channel; empty for any other name.
  std::string_view SymbolOfEvents(std::string_view channel) const {
    constexpr std::string_view kTail = "}:events";
    if (channel.size() < prefix_.size() + 2 + kTail.size() + 1 ||
        channel.substr(0, prefix_.size()) != prefix_ || channel.substr(prefix_.size(), 2) != ":{" ||
        channel.substr(channel.size() - kTail.size()) != kTail) {
      return {};
    }
    return channel.substr(prefix_.size() + 2, channel.size() - prefix_.size() - 2 - kTail.size());
  }
  // TICKER_PREFIX:{SYMBOL}: the 24h ticker JSON.
  std::string Ticker(std::string_view symbol) const {
    assert(!ticker_prefix_.empty());
    return std::string(ticker_prefix_).append(":{").append(symbol).append("}");
  }

  // Global keys: each in a slot of its own, written by plain commands (never inside a
  // symbol's script), so they route to one node of a cluster.
  // PREFIX:symbols: every symbol with an applied trade (set).
  std::string Symbols() const { return prefix_ + ":symbols"; }
  // PREFIX:pending / PREFIX:late / PREFIX:quarantine: symbols with such entries (sets).
  std::string PendingSymbols() const { return prefix_ + ":pending"; }
  std::string LateSymbols() const { return prefix_ + ":late"; }
  std::string QuarantineSymbols() const { return prefix_ + ":quarantine"; }
  // PREFIX:retired: symbols retired with klinectl retire (a trade since brings one back).
  std::string RetiredSymbols() const { return prefix_ + ":retired"; }
  // PREFIX:lease and PREFIX:lease:epoch{PREFIX:lease}: the timer jobs' lease and its fencing
  // epoch, in the lease's slot (the hash tag is the lease key's whole name) so that one
  // script sets both.
  std::string Lease() const { return prefix_ + ":lease"; }
  std::string LeaseEpoch() const { return prefix_ + ":lease:epoch{" + prefix_ + ":lease}"; }
  // PREFIX:dataset: the persistence worker's marker of the dataset it restored or found;
  // gone means Redis lost its data (or is new): history is restored from MySQL.
  std::string Dataset() const { return prefix_ + ":dataset"; }
  // PREFIX:restore: symbols whose state a shard found gone (their history is restored from
  // MySQL by the persistence worker, which then removes them).
  std::string RestoreSymbols() const { return prefix_ + ":restore"; }

 private:
  std::string Of(std::string_view symbol, std::string_view suffix) const {
    return Base(symbol).append(":").append(suffix);
  }

  static constexpr size_t kScriptBookkeeping = 11;  // the suffixes in ScriptKeys

  std::string prefix_;
  std::string ticker_prefix_;
};

}  // namespace klined
