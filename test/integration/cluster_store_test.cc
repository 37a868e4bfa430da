// The shard store (KlineStore) routed over a real Redis Cluster of three primaries and three
// replicas. Invariants: each symbol's candles, watermark and index membership land on the
// primary of its slot and equal the independent computation, whatever node a flush's calls
// were spread over; a slot moved between flushes (MOVED) and a script cache flushed on one
// node (NOSCRIPT) change nothing in what is stored; with wait_replicas 1 a flush counts only
// once every node it wrote has a replica holding the writes; the timer jobs (rollover,
// trim, lease) routed the same way leave every symbol's series equal to the independent
// computation rolled forward, on whatever node serves it; the persistence worker routed the
// same way brings every closed candle of every primary into MySQL exactly and empties the
// pending hashes and index, a slot moved under it (MOVED) included; a cluster without a
// majority (CLUSTERDOWN) fails flushes, never as errors of the symbols, and loses nothing.
#include <doctest/doctest.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "io/mysql/kline_table.h"
#include "io/mysql/mysql_conn.h"
#include "io/redis/cluster/router.h"
#include "io/redis/kline_store.h"
#include "jobs/lease.h"
#include "jobs/persist.h"
#include "jobs/rollover.h"
#include "jobs/trim.h"
#include "klined/candle.h"
#include "klined/series.h"
#include "mariadb_server.h"
#include "redis_cluster.h"
#include "stack.h"

using klined::cluster::KeySlot;
using klined::cluster::Topology;
using klined::cluster::TopologyOptions;
using klined::test::RedisCluster;
using klined::test::RedisServer;
using klined_it::Expected;
using klined_it::RefTrade;

namespace {

TopologyOptions Options(RedisCluster& cluster) {
  TopologyOptions o;
  o.cluster = true;
  o.seeds = {cluster.nodes().front()->address()};
  o.node.connect_timeout_ms = 500;
  o.node.command_timeout_ms = 2000;
  o.min_refresh_gap_ms = 50;
  o.marker_stem = "kline:wait";
  return o;
}

// RefTrade (cents, thousandths) as the decoder would make it (18 decimals).
klined::Trade ToTrade(const RefTrade& r) {
  using klined::Decimal;
  klined::Trade t;
  t.symbol = klined::Symbol(r.symbol);
  t.id = r.id;
  t.time_ms = r.time_ms;
  t.price = Decimal::FromRaw(static_cast<klined::Int128>(r.price_cents) * (Decimal::kOne / 100));
  t.qty = Decimal::FromRaw(static_cast<klined::Int128>(r.qty_milli) * (Decimal::kOne / 1000));
  t.quote = Decimal::FromRaw(static_cast<klined::Int128>(r.price_cents) * r.qty_milli *
                             (Decimal::kOne / 100000));
  t.buyer_maker = r.maker;
  return t;
}

struct Book {
  klined::SeriesLayout layout{{klined::Interval::k1m, klined::Interval::k5m}, {}};
  std::vector<std::string> symbols;
  std::vector<std::unique_ptr<klined::SymbolSeries>> series;
  std::vector<RefTrade> trades;

  explicit Book(int n, int per_symbol) {
    for (int i = 0; i < n; ++i) symbols.push_back("CS" + std::to_string(i) + "USDT");
    trades = klined_it::MakeTrades(symbols, per_symbol, 1405);
    for (const std::string& sym : symbols) {
      series.push_back(std::make_unique<klined::SymbolSeries>(&layout, klined::Symbol(sym)));
    }
  }
  // The time of the book's newest trade.
  int64_t LastTrade() const {
    int64_t last = 0;
    for (const RefTrade& t : trades) last = std::max(last, t.time_ms);
    return last;
  }
  std::vector<klined::SymbolSeries*> Dirty() {
    std::vector<klined::SymbolSeries*> out;
    for (auto& s : series) {
      if (s->dirty()) out.push_back(s.get());
    }
    return out;
  }
  std::vector<klined::SymbolSeries*> All() {
    std::vector<klined::SymbolSeries*> out;
    for (auto& s : series) out.push_back(s.get());
    return out;
  }
  // Applies the trades with index in [from, to) of each symbol's own sequence.
  void Apply(int from, int to) {
    std::map<std::string, int> seen;
    for (size_t k = 0; k < symbols.size(); ++k) seen[symbols[k]] = 0;
    for (const RefTrade& t : trades) {
      const int i = seen[t.symbol]++;
      if (i < from || i >= to) continue;
      for (auto& s : series) {
        if (s->symbol().view() != t.symbol) continue;
        REQUIRE(s->Apply(ToTrade(t)).outcome == klined::SymbolSeries::Outcome::kApplied);
      }
    }
  }
};

// Flushes until nothing is dirty; every report ok.
void FlushAll(klined::KlineStore& store, Book& book) {
  for (int round = 0; round < 10; ++round) {
    const std::vector<klined::SymbolSeries*> dirty = book.Dirty();
    if (dirty.empty()) return;
    const klined::FlushReport report = store.Flush(dirty);
    CAPTURE(store.LastError());
    CAPTURE(report.error);
    CAPTURE(report.written);
    CAPTURE(report.failed);
    CAPTURE(report.refused.size());
    CAPTURE(report.corrupt.size());
    CHECK(report.ok);
  }
  FAIL("still dirty after 10 flushes: " << store.LastError());
}

// The members of a global index set, read from the primary serving it, are the book's symbols.
void CheckIndex(RedisCluster& cluster, Book& book, const std::string& index) {
  CAPTURE(index);
  auto c = cluster.PrimaryOf(KeySlot(index)).Connect();
  const std::vector<std::string> members = c.Strings({"SMEMBERS", index});
  CHECK(std::set<std::string>(members.begin(), members.end()) ==
        std::set<std::string>(book.symbols.begin(), book.symbols.end()));
}

// What a plain client on each symbol's primary reads, against the reference (rolled on to
// the bucket of `now` when not 0).
void CheckStored(RedisCluster& cluster, Book& book, int64_t now = 0) {
  std::set<std::string> primaries_used;
  for (const std::string& sym : book.symbols) {
    CAPTURE(sym);
    const std::string base = "kline:{" + sym + "}";
    RedisServer& owner = cluster.PrimaryOf(KeySlot(base));
    primaries_used.insert(owner.address());
    auto c = owner.Connect();
    for (const auto& [iv, len] : {std::pair<std::string, int64_t>{"1m", 60000}, {"5m", 300000}}) {
      CAPTURE(iv);
      const auto [hist, current] = Expected(book.trades, sym, iv, len, now - now % len);
      CHECK(c.Strings({"ZRANGE", base + ":" + iv + ":hist", "0", "-1"}) == hist);
      CHECK(c.Get(base + ":" + iv).value_or("") == current);
    }
    CHECK(c.Get(base + ":wm") == std::to_string(klined_it::LastIds(book.trades)[sym]));
  }
  CHECK(primaries_used.size() == 3);  // the symbols spread over every primary
  CheckIndex(cluster, book, "kline:symbols");
}

// A rollover over the cluster ten minutes after the book's last trade (every candle closes,
// into history and pending); returns that `now`.
int64_t RollTenMinutesOn(Topology& topology, Book& book) {
  const int64_t now = book.LastTrade() + 10 * 60000;
  klined::cluster::Router router(&topology);
  klined::RolloverStats stats;
  klined::RolloverJob rollover(&router, "kline", &book.layout, &stats);
  REQUIRE(rollover.RunOnce(now).complete);
  return now;
}

// The persistence worker's options: routed over the cluster, into `db`.
klined::PersistOptions PersistOn(Topology& topology, const klined::test::MariaDbServer& db) {
  klined::PersistOptions po;
  po.topology = &topology;
  po.key_prefix = "kline";
  po.mysql.host = db.host();
  po.mysql.port = db.port();
  po.mysql.user = db.user();
  po.mysql.password = db.password();
  po.mysql.database = db.database();
  return po;
}

// A store over the cluster with the book loaded and its trades up to `upto` flushed.
void LoadAndFlush(klined::KlineStore& store, Book& book, int upto) {
  std::vector<klined::SymbolSeries*> all = book.All();
  REQUIRE(store.LoadAll(all));
  book.Apply(0, upto);
  FlushAll(store, book);
}

}  // namespace

TEST_CASE("cluster store: flushes spread over three primaries, each symbol exact on its own") {
  RedisCluster cluster;
  Topology topology(Options(cluster));
  REQUIRE(topology.Refresh());
  Book book(60, 40);
  klined::KlineStore store(&topology, "kline", &book.layout);
  LoadAndFlush(store, book, 15);

  // A busy symbol's slot moves to another primary behind the store's back: its next calls
  // are answered MOVED and resent where the slot lives now.
  const uint16_t slot = KeySlot("kline:{" + book.symbols[0] + "}");
  cluster.MoveSlot(slot, cluster.OtherPrimary(slot));
  const uint64_t moved_before = topology.stats().moved.load();
  book.Apply(15, 30);
  FlushAll(store, book);
  CHECK(topology.stats().moved.load() > moved_before);

  // One node forgets its scripts: only its calls are answered NOSCRIPT, reloaded, resent.
  const uint64_t noscript_before = topology.stats().noscript.load();
  cluster.PrimaryOf(slot).Connect().Command({"SCRIPT", "FLUSH"});
  book.Apply(30, 40);
  FlushAll(store, book);
  CHECK(topology.stats().noscript.load() > noscript_before);

  CheckStored(cluster, book);

  SUBCASE("a second store loads what the first wrote, from every node") {
    Book again(60, 40);
    klined::KlineStore reader(&topology, "kline", &again.layout);
    std::vector<klined::SymbolSeries*> all = again.All();
    REQUIRE(reader.LoadAll(all));
    const auto last = klined_it::LastIds(book.trades);
    for (auto& s : again.series) {
      CAPTURE(s->symbol().view());
      CHECK(s->watermark() == last.at(std::string(s->symbol().view())));
    }
  }
}

TEST_CASE("cluster store: wait_replicas 1 makes a flush durable on every node it wrote") {
  RedisCluster cluster;
  Topology topology(Options(cluster));
  REQUIRE(topology.Refresh());
  Book book(30, 10);
  klined::KlineStore store(&topology, "kline", &book.layout);
  store.SetReplicaWait(1, 2000);
  std::vector<klined::SymbolSeries*> all = book.All();
  REQUIRE(store.LoadAll(all));
  book.Apply(0, 10);
  std::unique_ptr<klined::FlushJob> job = store.PrepareFlush(all);
  REQUIRE(job != nullptr);
  job->confirm = true;
  store.ExecuteFlush(job.get());
  CHECK(job->durable);
  const klined::FlushReport report = store.FinishFlush(job.get());
  CHECK(report.ok);
  // Every replica holds what its primary was written (WAIT said so).
  for (const std::string& sym : book.symbols) {
    const std::string key = "kline:{" + sym + "}:wm";
    RedisServer& owner = cluster.PrimaryOf(KeySlot(key));
    for (auto& n : cluster.nodes()) {
      if (n.get() == &owner) continue;
      auto c = n->Connect();
      auto role = c.Command({"ROLE"});
      if (std::string(role->element[0]->str) != "slave" ||
          std::to_string(role->element[2]->integer) !=
              owner.address().substr(owner.address().rfind(':') + 1)) {
        continue;
      }
      c.Command({"READONLY"});
      CAPTURE(sym);
      CHECK(c.Get(key) == std::to_string(klined_it::LastIds(book.trades)[sym]));
    }
  }
}

TEST_CASE("cluster store: rollover, trim and the lease route over three primaries") {
  RedisCluster cluster;
  Topology topology(Options(cluster));
  REQUIRE(topology.Refresh());
  Book book(60, 40);
  klined::KlineStore store(&topology, "kline", &book.layout);
  LoadAndFlush(store, book, 40);
  const int64_t last_trade = book.LastTrade();

  // The jobs' router sees a slot moved behind its back (MOVED for its calls).
  klined::cluster::Router router(&topology);
  const uint16_t slot = KeySlot("kline:{" + book.symbols[1] + "}");
  REQUIRE(router.EnsureConnected());
  cluster.MoveSlot(slot, cluster.OtherPrimary(slot));

  klined::RolloverStats stats;
  klined::RolloverJob rollover(&router, "kline", &book.layout, &stats);
  // One minute on (the step path for series one bucket behind), then ten (the planned path).
  const int64_t now1 = last_trade + 60000;
  const int64_t now2 = last_trade + 11 * 60000;
  const klined::RolloverResult r1 = rollover.RunOnce(now1);
  CHECK(r1.complete);
  CHECK(r1.symbols == 60);
  CHECK(r1.errors == 0);
  const klined::RolloverResult r2 = rollover.RunOnce(now2);
  CHECK(r2.complete);
  CHECK(r2.symbols_rolled == 60);
  CHECK(r2.errors == 0);
  CHECK(rollover.RunOnce(now2).symbols_rolled == 0);  // idempotent

  CheckStored(cluster, book, now2);
  CheckIndex(cluster, book, "kline:pending");

  // Trim: with every candle persisted (the pending hashes gone), each history keeps its limit.
  for (const std::string& sym : book.symbols) {
    const std::string key = "kline:{" + sym + "}:pending";
    cluster.PrimaryOf(KeySlot(key)).Connect().Command({"DEL", key});
  }
  klined::TrimStats trim_stats;
  klined::TrimJob trim(&router, "kline", &book.layout, /*history_limit=*/2, &trim_stats);
  const klined::TrimResult t = trim.RunOnce("");
  CHECK(t.complete);
  CHECK(t.symbols == 60);
  CHECK(t.removed > 0);
  for (const std::string& sym : book.symbols) {
    const std::string key = "kline:{" + sym + "}:1m:hist";
    CHECK(cluster.PrimaryOf(KeySlot(key)).Connect().Integer({"ZCARD", key}) == 2);
  }
  CHECK(trim_stats.active_symbols.Get() == 60);

  // The lease: one holder at a time; after its slot moves, a release hands it over at once.
  klined::LeaseStats sa, sb;
  klined::Lease a(Options(cluster), "kline", 1000, &sa);
  klined::Lease b(Options(cluster), "kline", 1000, &sb);
  REQUIRE(a.Poll());
  CHECK_FALSE(b.Poll());
  const uint16_t lease_slot = KeySlot("kline:lease");
  RedisServer* lease_to = &cluster.OtherPrimary(lease_slot);
  cluster.MoveSlot(lease_slot, *lease_to);
  a.Release();
  bool taken = false;
  for (int i = 0; i < 40 && !taken; ++i) {
    taken = b.Poll();
    if (!taken) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK(taken);
  CHECK(b.epoch() > a.epoch());
  CHECK(lease_to->Connect().Get("kline:lease").value_or("") == b.token());
  b.Release();
}

TEST_CASE("cluster store: persistence routes over three primaries") {
  RedisCluster cluster;
  klined::test::MariaDbServer db;
  Topology topology(Options(cluster));
  REQUIRE(topology.Refresh());
  Book book(60, 40);
  klined::PersistOptions po = PersistOn(topology, db);
  klined::PersistWorker worker(po);
  REQUIRE_MESSAGE(worker.RunOnce().ok, "nothing pending yet");  // its router has the map

  // A slot moved behind the worker's back (MOVED for its calls), then candles closed on
  // every primary: by the flushes, and by a rollover ten minutes on.
  const uint16_t slot = KeySlot("kline:{" + book.symbols[1] + "}");
  cluster.MoveSlot(slot, cluster.OtherPrimary(slot));
  klined::KlineStore store(&topology, "kline", &book.layout);
  LoadAndFlush(store, book, 40);
  const int64_t now = RollTenMinutesOn(topology, book);
  CheckStored(cluster, book, now);
  CheckIndex(cluster, book, "kline:pending");

  const klined::PersistRunReport report = worker.RunOnce();
  REQUIRE_MESSAGE(report.ok, report.error);
  CHECK(report.deleted == report.upserted);
  CHECK(worker.stats().script_errors.Get() == 0);
  klined::MysqlConn conn(po.mysql);
  REQUIRE(conn.EnsureConnected());
  klined::KlineTable table(&conn, 500, {});
  uint64_t rows = 0;
  for (const std::string& sym : book.symbols) {
    CAPTURE(sym);
    const std::string base = "kline:{" + sym + "}";
    auto c = cluster.PrimaryOf(KeySlot(base)).Connect();
    CHECK(c.Integer({"EXISTS", base + ":pending"}) == 0);
    for (const auto& [iv, len] :
         {std::pair<klined::Interval, int64_t>{klined::Interval::k1m, 60000},
          {klined::Interval::k5m, 300000}}) {
      const std::string name(klined::IntervalName(iv));
      CAPTURE(name);
      std::vector<klined::Candle> candles;
      REQUIRE(
          table.ReadRange(sym, iv, INT64_MIN, INT64_MAX, 10000, /*newest_first=*/false, &candles));
      std::vector<std::string> stored;
      for (const klined::Candle& k : candles) stored.push_back(klined::CandleJson(k, sym, true));
      CHECK(stored == Expected(book.trades, sym, name, len, now - now % len).first);
      rows += candles.size();
    }
  }
  CHECK(rows == report.upserted);
  auto index = cluster.PrimaryOf(KeySlot("kline:pending")).Connect();
  CHECK(index.Integer({"SCARD", "kline:pending"}) == 0);
}

TEST_CASE(
    "cluster store: a migration that outlasts the retry budget fails the flush, never errors") {
  // A symbol's slot caught half moved (two of its keys on the target) for longer than the
  // router retries TRYAGAIN: its flush must come back failed (left dirty, retried), not as
  // an error reply of the symbol, which the shard counts toward quarantining it and
  // dead-lettering its trades.
  RedisCluster cluster;
  Topology topology(Options(cluster));
  REQUIRE(topology.Refresh());
  Book book(6, 40);
  klined::KlineStore store(&topology, "kline", &book.layout);
  LoadAndFlush(store, book, 20);
  const std::string sym = book.symbols[0];
  const std::string base = "kline:{" + sym + "}";
  const uint16_t slot = KeySlot(base);
  RedisServer& source = cluster.PrimaryOf(slot);
  RedisServer& target = cluster.OtherPrimary(slot);
  cluster.MoveSlot(slot, target, [&] {
    auto src = source.Connect();
    for (const std::string& key : {base + ":wm", base + ":wmp"}) {
      auto r =
          src.Command({"MIGRATE", target.host(), std::to_string(target.port()), key, "0", "5000"});
      REQUIRE(r->type == REDIS_REPLY_STATUS);
    }
    book.Apply(20, 30);
    const std::vector<klined::SymbolSeries*> dirty = book.Dirty();
    const klined::FlushReport report = store.Flush(dirty);
    CAPTURE(report.error);
    CHECK_FALSE(report.ok);
    CHECK(report.errored.empty());
    CHECK(report.failed >= 1);
  });
  book.Apply(30, 40);
  FlushAll(store, book);
  CheckStored(cluster, book);
}

TEST_CASE("cluster store: a primary that loses its data alone gets its symbols' history back") {
  // The dataset marker is per primary on a cluster: FLUSHALL on one primary (a restart
  // without persistence, say) is noticed by the persistence worker, which restores from
  // MySQL the history of that node's symbols only; the other primaries' stay as they were.
  RedisCluster cluster;
  klined::test::MariaDbServer db;
  Topology topology(Options(cluster));
  REQUIRE(topology.Refresh());
  Book book(30, 40);
  klined::KlineStore store(&topology, "kline", &book.layout);
  LoadAndFlush(store, book, 40);
  const int64_t now = RollTenMinutesOn(topology, book);

  klined::PersistOptions po = PersistOn(topology, db);
  po.intervals = book.layout.intervals;
  klined::PersistWorker worker(po);
  const auto run_until = [&](const std::function<bool()>& done) {
    for (int i = 0; i < 40 && !done(); ++i) {
      const klined::PersistRunReport r = worker.RunOnce();
      REQUIRE_MESSAGE(r.ok, r.error);
    }
    return done();
  };
  const auto markers = [&] {
    int n = 0;
    for (int p = 0; p < 3; ++p) {
      RedisServer& node = cluster.PrimaryOf(p * 5462);
      n += static_cast<int>(node.Connect().Strings({"KEYS", "kline:dataset{*}"}).size());
    }
    return n;
  };
  // First runs: everything persisted, one marker per primary, nothing restored (all there).
  int runs = 0;
  run_until([&] { return ++runs > 3; });
  CHECK(markers() == 3);
  CHECK(worker.stats().restored_candles.Get() == 0);
  CHECK(worker.stats().dataset_losses.Get() == 0);

  RedisServer& lost = cluster.PrimaryOf(KeySlot("kline:{" + book.symbols[0] + "}"));
  size_t lost_candles = 0;
  std::vector<std::string> on_lost;
  for (const std::string& sym : book.symbols) {
    if (&cluster.PrimaryOf(KeySlot("kline:{" + sym + "}")) != &lost) continue;
    on_lost.push_back(sym);
    for (const auto& [iv, len] : {std::pair<std::string, int64_t>{"1m", 60000}, {"5m", 300000}}) {
      lost_candles += Expected(book.trades, sym, iv, len, now - now % len).first.size();
    }
  }
  REQUIRE(!on_lost.empty());
  REQUIRE(on_lost.size() < book.symbols.size());
  REQUIRE(lost.Connect().Command({"FLUSHALL"})->type == REDIS_REPLY_STATUS);

  run_until([&] { return worker.stats().restored_candles.Get() > 0 && markers() == 3; });
  CHECK(markers() == 3);
  CHECK(worker.stats().dataset_losses.Get() == 1);
  CHECK(worker.stats().restored_candles.Get() == lost_candles);  // that node's symbols only
  for (const std::string& sym : book.symbols) {
    CAPTURE(sym);
    const std::string base = "kline:{" + sym + "}";
    auto c = cluster.PrimaryOf(KeySlot(base)).Connect();
    for (const auto& [iv, len] : {std::pair<std::string, int64_t>{"1m", 60000}, {"5m", 300000}}) {
      CAPTURE(iv);
      CHECK(c.Strings({"ZRANGE", base + ":" + iv + ":hist", "0", "-1"}) ==
            Expected(book.trades, sym, iv, len, now - now % len).first);
    }
  }
}

TEST_CASE("cluster store: without a majority (CLUSTERDOWN) a flush fails, then all lands") {
  // Two of the three primaries paused past the node timeout: the third can reach no majority
  // and answers CLUSTERDOWN. A flush of its symbols then comes back failed (the series stay
  // dirty), never as errors of the symbols; once the others resume, everything lands. (Only
  // its symbols: a call to a paused node would run when it resumes, its reply lost, which
  // the shard's reload handles and this test's plain flush loop does not.)
  RedisCluster cluster;
  Topology topology(Options(cluster));
  REQUIRE(topology.Refresh());
  Book book(30, 40);
  klined::KlineStore store(&topology, "kline", &book.layout);
  LoadAndFlush(store, book, 20);
  RedisServer& alive = cluster.PrimaryOf(0);
  RedisServer& b = cluster.PrimaryOf(5462);
  RedisServer& c = cluster.PrimaryOf(10924);
  REQUIRE(&b != &alive);
  REQUIRE(&c != &alive);
  std::set<std::string> on_alive;
  for (const std::string& sym : book.symbols) {
    if (&cluster.PrimaryOf(KeySlot("kline:{" + sym + "}")) == &alive) on_alive.insert(sym);
  }
  REQUIRE(!on_alive.empty());
  b.process().Pause();
  c.process().Pause();
  const auto state_fail = [&] {
    const auto r = alive.Connect().Command({"CLUSTER", "INFO"});
    const std::string info(r->str, r->len);
    return info.find("cluster_state:fail") != std::string::npos;
  };
  bool down = false;
  for (int i = 0; i < 100 && !down; ++i) {
    down = state_fail();
    if (!down) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(down);
  book.Apply(20, 30);
  std::vector<klined::SymbolSeries*> dirty;
  for (klined::SymbolSeries* s : book.Dirty()) {
    if (on_alive.contains(std::string(s->symbol().view()))) dirty.push_back(s);
  }
  const klined::FlushReport report = store.Flush(dirty);
  CAPTURE(report.error);
  CHECK_FALSE(report.ok);
  CHECK(report.written == 0);
  CHECK(report.errored.empty());
  CHECK(topology.stats().clusterdown.load() > 0);
  b.process().Resume();
  c.process().Resume();
  cluster.WaitHealthy();
  book.Apply(30, 40);
  FlushAll(store, book);
  CheckStored(cluster, book);
}
