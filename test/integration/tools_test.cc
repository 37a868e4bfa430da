// klined-tradegen and klinectl as users run them: real binaries, real redis-server, mariadbd
// and the Kafka test broker. Invariants checked: the generator is a pure function of its seed
// (and of --time-start for the time fields); every trade it writes meets the contract (ids
// increase by one per symbol, decimals within the precision rules); its fault mix is close to
// the requested rates and --emit-expected holds exactly the good trades; and klinectl shows
// what klined stored: byte-identical to Redis, merged with MySQL for older candles.
#include <doctest/doctest.h>

#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "kafka_broker.h"
#include "klined/decimal.h"
#include "klined/trade.h"
#include "mariadb_server.h"
#include "redis_server.h"
#include "source_dir.h"
#include "subprocess.h"
#include "temp_dir.h"

namespace kt = klined::test;
using std::chrono::milliseconds;
using std::chrono::seconds;

using kt::BuildDir;

namespace {

std::string TradegenPath() { return BuildDir() + "/src/tools/tradegen/klined-tradegen"; }
std::string KlinectlPath() { return BuildDir() + "/src/tools/klinectl/klinectl"; }

struct RunResult {
  int code = -1;
  std::string out, err;
};

// Runs a binary to completion (bounded) with output captured under `dir`.
RunResult Run(const kt::TempDir& dir, const std::string& bin, std::vector<std::string> args,
              const std::string& name, milliseconds timeout = milliseconds(60000)) {
  kt::Subprocess p(
      bin, std::move(args),
      kt::SubprocessOptions{.log_dir = dir.path(), .name = name, .env = {}, .cwd = {}});
  auto status = p.Wait(timeout);
  RunResult r;
  r.code = status ? status->Code() : -1;
  r.out = p.Stdout();
  r.err = p.Stderr();
  if (!status) MESSAGE(name << " did not finish: " << p.OutputTail());
  return r;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// Fields of the generator's fixed-layout trade JSON. nullopt when missing.
std::optional<std::string> StrField(const std::string& line, const std::string& name) {
  const std::string tag = "\"" + name + "\":\"";
  const size_t pos = line.find(tag);
  if (pos == std::string::npos) return std::nullopt;
  const size_t end = line.find('"', pos + tag.size());
  if (end == std::string::npos) return std::nullopt;
  return line.substr(pos + tag.size(), end - pos - tag.size());
}
std::optional<int64_t> IntField(const std::string& line, const std::string& name) {
  const std::string tag = "\"" + name + "\":";
  const size_t pos = line.find(tag);
  if (pos == std::string::npos) return std::nullopt;
  size_t i = pos + tag.size();
  if (i >= line.size() || !(isdigit(static_cast<unsigned char>(line[i])) || line[i] == '-')) {
    return std::nullopt;
  }
  return std::stoll(line.substr(i));
}

// A trade as the contract accepts it (strings for p/q, as the generator writes them).
struct Parsed {
  std::string symbol;
  int64_t id = 0, time = 0, event = 0;
  klined::ParsedDecimal p, q;
  std::string p_text, q_text;
};
std::optional<Parsed> ParseTrade(const std::string& line) {
  Parsed t;
  auto s = StrField(line, "s");
  auto p = StrField(line, "p");
  auto q = StrField(line, "q");
  auto id = IntField(line, "t");
  auto time = IntField(line, "T");
  auto event = IntField(line, "E");
  if (!s || !p || !q || !id || !time || !event || line.front() != '{' || line.back() != '}') {
    return std::nullopt;
  }
  if (!klined::IsValidSymbol(*s) || *id < 1 || *time < 0) return std::nullopt;
  if (klined::ParseDecimalString(*p, &t.p) != klined::DecimalError::kOk ||
      klined::ParseDecimalString(*q, &t.q) != klined::DecimalError::kOk) {
    return std::nullopt;
  }
  if (!t.p.value.IsPositive() || !t.q.value.IsPositive()) return std::nullopt;
  if (t.p.frac_digits + t.q.frac_digits > 18) return std::nullopt;
  t.symbol = *s;
  t.id = *id;
  t.time = *time;
  t.event = *event;
  t.p_text = *p;
  t.q_text = *q;
  return t;
}

size_t FracDigitsWritten(const std::string& d) {
  const size_t dot = d.find('.');
  return dot == std::string::npos ? 0 : d.size() - dot - 1;
}

// Drops the wall-clock fields ("E":digits and "T":digits) from generator output.
std::string StripTimes(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size();) {
    if (text.compare(i, 4, "\"E\":") == 0 || text.compare(i, 4, "\"T\":") == 0) {
      size_t j = i + 4;
      while (j < text.size() && isdigit(static_cast<unsigned char>(text[j]))) ++j;
      if (j > i + 4) {
        i = j;
        continue;
      }
    }
    out.push_back(text[i++]);
  }
  return out;
}

constexpr int64_t kT0 = 1700000000000;  // 2023-11-14T22:13:20Z

}  // namespace

TEST_CASE("tools: tradegen output is a function of --seed (and --time-start)") {
  kt::TempDir dir("klined-tools");
  const std::vector<std::string> base = {
      "--stdout", "--count",          "5000", "--symbols",   "30",  "--rate", "0", "--dup-rate",
      "0.02",     "--malformed-rate", "0.01", "--late-rate", "0.02"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = base;
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  const RunResult a =
      Run(dir, TradegenPath(), with({"--seed", "42", "--time-start", std::to_string(kT0)}), "a");
  const RunResult b =
      Run(dir, TradegenPath(), with({"--seed", "42", "--time-start", std::to_string(kT0)}), "b");
  const RunResult c =
      Run(dir, TradegenPath(), with({"--seed", "43", "--time-start", std::to_string(kT0)}), "c");
  REQUIRE(a.code == 0);
  REQUIRE(b.code == 0);
  REQUIRE(c.code == 0);
  CHECK(Lines(a.out).size() > 5000);
  CHECK(a.out == b.out);
  CHECK(a.out != c.out);
  CHECK(a.err.find("trades=5000 ") != std::string::npos);

  // Wall-clock mode: identical apart from the time fields.
  const RunResult d = Run(dir, TradegenPath(), with({"--seed", "42"}), "d");
  const RunResult e = Run(dir, TradegenPath(), with({"--seed", "42"}), "e");
  REQUIRE(d.code == 0);
  REQUIRE(e.code == 0);
  const std::string d_stripped = StripTimes(d.out);
  CHECK(d_stripped == StripTimes(e.out));
  CHECK(d_stripped == StripTimes(a.out));
  CHECK(d_stripped.find("\"T\":") == std::string::npos);

  // Batches (JSON arrays of one symbol) are deterministic too.
  const RunResult f =
      Run(dir, TradegenPath(), with({"--seed", "1", "--batch", "7", "--time-start", "0"}), "f");
  const RunResult g =
      Run(dir, TradegenPath(), with({"--seed", "1", "--batch", "7", "--time-start", "0"}), "g");
  REQUIRE(f.code == 0);
  CHECK(f.out == g.out);
  int arrays = 0;
  for (const std::string& line : Lines(f.out)) arrays += line.front() == '[';
  CHECK(arrays > 5000 / 7 / 2);
}

TEST_CASE("tools: tradegen trades follow the contract") {
  kt::TempDir dir("klined-tools");
  const RunResult r =
      Run(dir, TradegenPath(),
          {"--stdout", "--count", "20000", "--symbols", "40", "--seed", "7", "--rate", "0",
           "--start-id", "1000", "--time-start", std::to_string(kT0)},
          "gen");
  REQUIRE(r.code == 0);
  const std::vector<std::string> lines = Lines(r.out);
  REQUIRE(lines.size() == 20000);
  std::map<std::string, int64_t> last_id;
  std::map<std::string, std::pair<size_t, size_t>> decimals;  // written p, q fraction digits
  std::map<std::string, int> count;
  int64_t last_time = 0;
  for (const std::string& line : lines) {
    CAPTURE(line);
    const auto t = ParseTrade(line);
    REQUIRE(t.has_value());
    // Ids start at --start-id and increase by one per symbol.
    auto [it, fresh] = last_id.emplace(t->symbol, t->id);
    if (fresh) {
      CHECK(t->id == 1000);
    } else {
      CHECK(t->id == it->second + 1);
      it->second = t->id;
    }
    // Each symbol has one tick size and one lot size: fixed written decimals.
    const std::pair<size_t, size_t> dec = {FracDigitsWritten(t->p_text),
                                           FracDigitsWritten(t->q_text)};
    CHECK(dec.first + dec.second <= 18);
    auto [d, first] = decimals.emplace(t->symbol, dec);
    if (!first) CHECK(d->second == dec);
    CHECK(t->time >= last_time);  // no late trades asked for
    CHECK(t->time == t->event);
    CHECK(t->time >= kT0);
    last_time = t->time;
    ++count[t->symbol];
  }
  CHECK(last_id.size() >= 35);  // Zipf s=1 over 40 symbols: nearly all appear in 20000
  // Zipf-like popularity: the first symbol leads, by far over the tenth.
  CHECK(count["BTCUSDT"] > count["ETHUSDT"]);
  int top = 0;
  for (const auto& [s, n] : count) top = std::max(top, n);
  CHECK(count["BTCUSDT"] == top);
  CHECK(count["BTCUSDT"] > 4 * count["SOLUSDT"] / 2);
  CHECK(count.count("SYM0020USDT") == 1);
}

TEST_CASE("tools: tradegen fault mix and --emit-expected") {
  kt::TempDir dir("klined-tools");
  const std::string expected_path = (dir / "expected.ndjson").string();
  const RunResult r = Run(dir, TradegenPath(),
                          {"--stdout", "--count", "20000", "--symbols", "10", "--seed", "9",
                           "--rate", "0", "--dup-rate", "0.05", "--malformed-rate", "0.02",
                           "--late-rate", "0.03", "--emit-expected", expected_path},
                          "gen");
  REQUIRE(r.code == 0);
  std::map<std::string, int64_t> max_id;
  std::vector<std::string> good;
  int dups = 0, malformed = 0, late = 0;
  for (const std::string& line : Lines(r.out)) {
    const auto t = ParseTrade(line);
    if (!t) {
      ++malformed;
      continue;
    }
    int64_t& m = max_id[t->symbol];
    if (t->id <= m) {
      ++dups;
      continue;
    }
    m = t->id;
    good.push_back(line);
    // Late: before the start of the minute it was generated in.
    if (t->time < t->event - t->event % 60000) ++late;
  }
  CAPTURE(r.err);
  CHECK(good.size() == 20000);
  CHECK(dups >= 800);
  CHECK(dups <= 1200);
  CHECK(malformed >= 300);
  CHECK(malformed <= 500);
  CHECK(late >= 450);
  CHECK(late <= 750);
  CHECK(r.err.find("duplicates=" + std::to_string(dups) + " ") != std::string::npos);
  CHECK(r.err.find("malformed=" + std::to_string(malformed) + " ") != std::string::npos);
  CHECK(Lines(kt::ReadFile(expected_path)) == good);
}

TEST_CASE("tools: tradegen -> Kafka -> klined -> klinectl shows what Redis holds") {
  kt::TempDir dir("klined-tools");
  kt::RedisServer redis;
  kt::MariaDbServer mysql;  // klined starts only once Kafka, Redis and MySQL answer
  kt::KafkaBroker broker{kt::KafkaBrokerOptions{1, {{"trades", 4}, {"trades-dlq", 1}}}};
  const std::filesystem::path config = dir / "klined.yaml";
  kt::WriteFile(config, "kafka:\n  brokers: \"" + broker.bootstrap() +
                            "\"\n  topic: trades\n  group: klined-tools\n"
                            "  dead_letter_topic: trades-dlq\n"
                            "  properties:\n    session.timeout.ms: \"6000\"\n"
                            "    heartbeat.interval.ms: \"500\"\n"
                            "redis:\n  address: \"" +
                            redis.address() +
                            "\"\n"
                            "mysql:\n  port: " +
                            std::to_string(mysql.port()) + "\n  user: " + mysql.user() +
                            "\n  password: \"" + mysql.password() +
                            "\"\n  database: " + mysql.database() +
                            "\n"
                            "intervals: [1m, 5m]\nflush_interval_ms: 100\nshards: 2\n"
                            "api:\n  listen: \"127.0.0.1:0\"\nmetrics:\n  listen: \"127.0.0.1:" +
                            std::to_string(kt::FreePort()) + "\"\n");
  kt::Subprocess klined(
      BuildDir() + "/src/app/klined", {"--config", config.string()},
      kt::SubprocessOptions{.log_dir = dir.path(), .name = "klined", .env = {}, .cwd = {}});

  const std::string expected_path = (dir / "expected.ndjson").string();
  const RunResult gen = Run(dir, TradegenPath(),
                            {"--brokers", broker.bootstrap(), "--topic", "trades", "--count",
                             "3000", "--symbols", "5", "--seed", "5", "--rate", "0", "--dup-rate",
                             "0.02", "--malformed-rate", "0.01", "--emit-expected", expected_path},
                            "tradegen");
  REQUIRE_MESSAGE(gen.code == 0, gen.err);
  CHECK(gen.err.find("trades=3000 ") != std::string::npos);
  CHECK(gen.err.find("failed=0 ") != std::string::npos);

  std::map<std::string, int64_t> last_id;
  std::map<std::string, int64_t> trades_per_symbol;
  for (const std::string& line : Lines(kt::ReadFile(expected_path))) {
    const auto t = ParseTrade(line);
    REQUIRE(t.has_value());
    last_id[t->symbol] = t->id;
    ++trades_per_symbol[t->symbol];
  }
  REQUIRE(last_id.count("BTCUSDT") == 1);

  kt::RedisClient rc = redis.Connect();
  bool caught_up = false;
  for (auto deadline = std::chrono::steady_clock::now() + seconds(30);
       std::chrono::steady_clock::now() < deadline && !caught_up;) {
    caught_up = true;
    for (const auto& [sym, id] : last_id) {
      caught_up &= rc.Get("kline:{" + sym + "}:wm") == std::to_string(id);
    }
    if (!caught_up) std::this_thread::sleep_for(milliseconds(100));
  }
  REQUIRE_MESSAGE(caught_up, klined.OutputTail());

  const std::vector<std::string> ctl = {"--redis", redis.address()};
  auto klinectl = [&](std::vector<std::string> args, const std::string& name) {
    std::vector<std::string> a = ctl;
    a.insert(a.end(), args.begin(), args.end());
    return Run(dir, KlinectlPath(), a, name, milliseconds(20000));
  };

  // --json prints exactly the stored JSON, oldest first: the newest history members, then
  // the current candle. A rollover between the reads would change both sides: retry then.
  bool same = false;
  for (int attempt = 0; attempt < 3 && !same; ++attempt) {
    auto stored = rc.Strings({"ZRANGE", "kline:{BTCUSDT}:1m:hist", "0", "-1"});
    stored.push_back(rc.Get("kline:{BTCUSDT}:1m").value_or("(none)"));
    const RunResult j = klinectl({"candles", "BTCUSDT", "1m", "--limit", "5", "--json"}, "json");
    REQUIRE(j.code == 0);
    std::vector<std::string> want(stored.end() - std::min<ptrdiff_t>(5, ssize(stored)),
                                  stored.end());
    same = Lines(j.out) == want;
    if (!same) MESSAGE("attempt " << attempt << ": klinectl\n" << j.out << "redis\n" << want[0]);
  }
  CHECK(same);

  // Every trade of the symbol is in its 1m candles, once (history is far from trimmed).
  const RunResult all = klinectl({"candles", "BTCUSDT", "1m", "--limit", "1000", "--json"}, "all");
  REQUIRE(all.code == 0);
  int64_t n = 0;
  for (const std::string& line : Lines(all.out)) n += IntField(line, "n").value_or(-1000000);
  CHECK(n == trades_per_symbol["BTCUSDT"]);

  // The table: a title line, a header, one row per candle; the last row is the current one.
  const RunResult table = klinectl({"candles", "BTCUSDT", "5m", "--limit", "3"}, "table");
  REQUIRE(table.code == 0);
  const auto rows = Lines(table.out);
  REQUIRE(rows.size() >= 3);
  CHECK(rows[0] == "BTCUSDT 5m");
  CHECK(rows[1].find("open_time") == 0);
  CHECK(rows.back().find("false") != std::string::npos);
  CHECK(rows.back().find("redis") != std::string::npos);
  CHECK(rows.back().find("Z ") == 19);  // ISO open time: 2026-11-21T14:10:00Z

  const RunResult symbols = klinectl({"symbols"}, "symbols");
  CHECK(symbols.code == 0);
  std::vector<std::string> want_symbols;
  for (const auto& [s, id] : last_id) want_symbols.push_back(s);
  CHECK(Lines(symbols.out) == want_symbols);

  // --config reads klined's own file (Redis address, prefixes, MySQL): the same answers with
  // no address repeated; a flag still wins over it; a broken file is a clear error.
  const RunResult by_config =
      Run(dir, KlinectlPath(), {"--config", config.string(), "symbols"}, "by_config");
  CHECK(by_config.code == 0);
  CHECK(Lines(by_config.out) == want_symbols);
  const RunResult overridden = Run(dir, KlinectlPath(),
                                   {"--config", config.string(), "--redis",
                                    "127.0.0.1:" + std::to_string(kt::FreePort()), "symbols"},
                                   "overridden");
  CHECK(overridden.code == 2);
  CHECK(overridden.err.find("cannot connect to Redis") != std::string::npos);
  const RunResult merged =
      Run(dir, KlinectlPath(),
          {"--config", config.string(), "candles", "BTCUSDT", "1m", "--limit", "1000", "--json"},
          "merged");
  CHECK(merged.code == 0);
  CHECK(merged.err.find("MySQL") == std::string::npos);  // it reached the configured MySQL
  const std::filesystem::path broken = dir / "broken.yaml";
  kt::WriteFile(broken, "redis:\n  history_limit: many\n");
  const RunResult bad_config =
      Run(dir, KlinectlPath(), {"--config", broken.string(), "symbols"}, "bad_config");
  CHECK(bad_config.code == 2);
  CHECK(bad_config.err.find("redis.history_limit") != std::string::npos);

  // The ticker is written by klined's ticker job if there is one: shown, or said absent.
  const RunResult ticker = klinectl({"ticker", "BTCUSDT"}, "ticker");
  if (ticker.code == 0) {
    CHECK(ticker.out.find("ticker:{BTCUSDT}") == 0);
    CHECK(ticker.out.find("lastPrice") != std::string::npos);
  } else {
    CHECK(ticker.code == 1);
    CHECK(ticker.err.find("no ticker for BTCUSDT") != std::string::npos);
  }

  // Errors: clear message, non-zero exit.
  const RunResult missing = klinectl({"candles", "NOSUCH", "1m"}, "missing");
  CHECK(missing.code == 1);
  CHECK(missing.err.find("no 1m candles for NOSUCH") != std::string::npos);
  const RunResult bad_iv = klinectl({"candles", "BTCUSDT", "7m"}, "bad_iv");
  CHECK(bad_iv.code == 2);
  CHECK(bad_iv.err.find("unknown interval '7m'") != std::string::npos);
  const RunResult down =
      Run(dir, KlinectlPath(),
          {"--redis", "127.0.0.1:" + std::to_string(kt::FreePort()), "symbols"}, "down");
  CHECK(down.code == 2);
  CHECK(down.err.find("cannot connect to Redis") != std::string::npos);
  klined.Stop();
}

TEST_CASE("tools: klinectl merges older candles from MySQL, Redis winning per open time") {
  kt::TempDir dir("klined-tools");
  kt::RedisServer redis;
  kt::MariaDbServer mysql;
  mysql.Query(
      "CREATE TABLE IF NOT EXISTS kline ("
      " symbol VARCHAR(32) NOT NULL, `interval` VARCHAR(4) NOT NULL,"
      " open_time BIGINT NOT NULL, close_time BIGINT NOT NULL,"
      " open DECIMAL(38,18) NOT NULL, high DECIMAL(38,18) NOT NULL,"
      " low DECIMAL(38,18) NOT NULL, close DECIMAL(38,18) NOT NULL,"
      " volume DECIMAL(38,18) NOT NULL, quote_volume DECIMAL(38,18) NOT NULL,"
      " taker_buy_volume DECIMAL(38,18) NOT NULL, taker_buy_quote_volume DECIMAL(38,18) NOT NULL,"
      " trades BIGINT NOT NULL, first_trade_id BIGINT NOT NULL, last_trade_id BIGINT NOT NULL,"
      " PRIMARY KEY (symbol, `interval`, open_time)) ENGINE=InnoDB");
  const int64_t t0 = 1700000040000;  // a minute boundary
  auto row = [&](int64_t open, const std::string& price, int64_t n) {
    return "('BTCUSDT','1m'," + std::to_string(open) + "," + std::to_string(open + 59999) + "," +
           price + "," + price + "," + price + "," + price + ",0.5," + price + "*0.5,0.25," +
           price + "*0.25," + std::to_string(n) + ",1,2)";
  };
  mysql.Query("INSERT INTO kline VALUES " + row(t0, "43000.10", 2) + "," +
              row(t0 + 60000, "43001.20", 2) + "," + row(t0 + 120000, "1", 2));
  auto json = [&](int64_t open, const std::string& p, bool closed) {
    return "{\"t\":" + std::to_string(open) + ",\"T\":" + std::to_string(open + 59999) +
           ",\"s\":\"BTCUSDT\",\"i\":\"1m\",\"f\":3,\"L\":3,\"o\":\"" + p + "\",\"h\":\"" + p +
           "\",\"l\":\"" + p + "\",\"c\":\"" + p + "\",\"v\":\"1\",\"q\":\"" + p +
           "\",\"V\":\"1\",\"Q\":\"" + p + "\",\"n\":1,\"x\":" + (closed ? "true" : "false") + "}";
  };
  kt::RedisClient rc = redis.Connect();
  // t0+120000 is in both: Redis's version must win.
  rc.Command({"ZADD", "kline:{BTCUSDT}:1m:hist", std::to_string(t0 + 120000),
              json(t0 + 120000, "43002", true)});
  rc.Command({"ZADD", "kline:{BTCUSDT}:1m:hist", std::to_string(t0 + 180000),
              json(t0 + 180000, "43003", true)});
  rc.Command({"SET", "kline:{BTCUSDT}:1m", json(t0 + 240000, "43004", false)});

  const std::string spec = mysql.host() + ":" + std::to_string(mysql.port()) + ":" + mysql.user() +
                           ":" + mysql.password() + ":" + mysql.database();
  const RunResult r = Run(dir, KlinectlPath(),
                          {"--redis", redis.address(), "--mysql", spec, "candles", "BTCUSDT", "1m",
                           "--limit", "4", "--json"},
                          "merge");
  REQUIRE_MESSAGE(r.code == 0, r.err);
  const std::string from_mysql =
      "{\"t\":" + std::to_string(t0 + 60000) + ",\"T\":" + std::to_string(t0 + 119999) +
      ",\"s\":\"BTCUSDT\",\"i\":\"1m\",\"f\":1,\"L\":2,\"o\":\"43001.2\",\"h\":\"43001.2\","
      "\"l\":\"43001.2\",\"c\":\"43001.2\",\"v\":\"0.5\",\"q\":\"21500.6\",\"V\":\"0.25\","
      "\"Q\":\"10750.3\",\"n\":2,\"x\":true}";
  CHECK(Lines(r.out) == std::vector<std::string>{from_mysql, json(t0 + 120000, "43002", true),
                                                 json(t0 + 180000, "43003", true),
                                                 json(t0 + 240000, "43004", false)});

  const RunResult table = Run(
      dir, KlinectlPath(),
      {"--redis", redis.address(), "--mysql", spec, "candles", "BTCUSDT", "1m", "--limit", "10"},
      "table");
  REQUIRE(table.code == 0);
  const auto rows = Lines(table.out);
  REQUIRE(rows.size() == 2 + 5);
  CHECK(rows[2].find("2023-11-14T22:14:00Z") == 0);
  CHECK(rows[2].find("43000.1") != std::string::npos);
  CHECK(rows[2].find("mysql") != std::string::npos);
  CHECK(rows[4].find("43002") != std::string::npos);
  CHECK(rows[4].find("redis") != std::string::npos);

  // Redis down: MySQL alone, with a warning.
  const RunResult fallback = Run(dir, KlinectlPath(),
                                 {"--redis", "127.0.0.1:" + std::to_string(kt::FreePort()),
                                  "--mysql", spec, "candles", "BTCUSDT", "1m", "--json"},
                                 "fallback");
  CHECK(fallback.code == 0);
  CHECK(Lines(fallback.out).size() == 3);
  CHECK(fallback.err.find("reading MySQL only") != std::string::npos);

  // Wrong password: a clear error, exit 2, when Redis cannot help either.
  const RunResult denied =
      Run(dir, KlinectlPath(),
          {"--redis", "127.0.0.1:" + std::to_string(kt::FreePort()), "--mysql",
           mysql.host() + ":" + std::to_string(mysql.port()) + ":klined:wrong:klined", "candles",
           "BTCUSDT", "1m"},
          "denied");
  CHECK(denied.code == 2);
  CHECK(denied.err.find("cannot connect to MySQL") != std::string::npos);
}
