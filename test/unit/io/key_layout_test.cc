// The key layout (contract section 4 plus klined's bookkeeping keys), spelled in one place:
// every name as the contract and the Lua scripts spell it, per-symbol keys in the symbol's slot.
#include "io/redis/key_layout.h"

#include <doctest/doctest.h>

#include "io/redis/cluster/slot_map.h"

namespace klined {
namespace {

TEST_CASE("key layout: the contract's names") {
  const KeyLayout k("kline", "ticker");
  CHECK(k.Base("BTCUSDT") == "kline:{BTCUSDT}");
  CHECK(k.Current("BTCUSDT", Interval::k1m) == "kline:{BTCUSDT}:1m");
  std::string into = "a longer leftover value";
  k.CurrentInto("ETHUSDT", Interval::k5m, &into);
  CHECK(into == k.Current("ETHUSDT", Interval::k5m));
  CHECK(k.History("BTCUSDT", Interval::k1M) == "kline:{BTCUSDT}:1M:hist");
  CHECK(k.Watermark("BTCUSDT") == "kline:{BTCUSDT}:wm");
  CHECK(k.Marks("BTCUSDT") == "kline:{BTCUSDT}:wmp");
  CHECK(k.TickerState("BTCUSDT") == "kline:{BTCUSDT}:tks");
  CHECK(k.Pending("BTCUSDT") == "kline:{BTCUSDT}:pending");
  CHECK(k.Late("BTCUSDT") == "kline:{BTCUSDT}:late");
  CHECK(k.Trimmed("BTCUSDT") == "kline:{BTCUSDT}:trimmed");
  CHECK(k.Quarantine("BTCUSDT") == "kline:{BTCUSDT}:quarantine");
  CHECK(k.Events("BTCUSDT") == "kline:{BTCUSDT}:events");
  CHECK(k.Ticker("BTCUSDT") == "ticker:{BTCUSDT}");
  CHECK(k.Symbols() == "kline:symbols");
  CHECK(k.PendingSymbols() == "kline:pending");
  CHECK(k.LateSymbols() == "kline:late");
  CHECK(k.QuarantineSymbols() == "kline:quarantine");
  CHECK(k.Lease() == "kline:lease");
  CHECK(k.LeaseEpoch() == "kline:lease:epoch{kline:lease}");
  // LEASE_ACQUIRE sets both in one call: one slot.
  CHECK(cluster::KeySlot(k.LeaseEpoch()) == cluster::KeySlot(k.Lease()));
}

TEST_CASE("key layout: a symbol's keys share its slot") {
  const KeyLayout k("kl", "t24");
  const uint16_t slot = cluster::KeySlot("ETHUSDT");
  for (const std::string& key :
       {k.Current("ETHUSDT", Interval::k5m), k.History("ETHUSDT", Interval::k1d),
        k.Watermark("ETHUSDT"), k.Pending("ETHUSDT"), k.Events("ETHUSDT"), k.Ticker("ETHUSDT"),
        k.Fence("ETHUSDT"), k.WriteStamp("ETHUSDT"), k.Late("ETHUSDT"), k.Marks("ETHUSDT")}) {
    CAPTURE(key);
    CHECK(cluster::KeySlot(key) == slot);
  }
  CHECK(k.Slot("ETHUSDT") == slot);  // what every routed call on the symbol uses
}

TEST_CASE("key layout: the symbol of an events channel") {
  const KeyLayout k("kline", "ticker");
  CHECK(k.SymbolOfEvents(k.Events("BTCUSDT")) == "BTCUSDT");
  CHECK(k.SymbolOfEvents("kline:{A}:events") == "A");
  CHECK(k.SymbolOfEvents("kline:{}:events").empty());
  CHECK(k.SymbolOfEvents("other:{BTCUSDT}:events").empty());  // another prefix
  CHECK(k.SymbolOfEvents("kline:{BTCUSDT}:watch").empty());
  CHECK(k.SymbolOfEvents("kline:BTCUSDT}:events").empty());
  CHECK(k.SymbolOfEvents("").empty());
}

}  // namespace
}  // namespace klined
