// klinectl: reads what klined wrote. `klinectl --help` lists the commands.
//
// DESIGN
// A one-shot client: klined's RedisConn to Redis (the newest candles: the current one and the
// history zset), optionally libmariadb to MySQL for older candles that Redis has trimmed. For
// one open time Redis wins over MySQL (Redis is ahead: MySQL gets closed candles within
// mysql.persist_interval_ms), and the current candle wins over history. Candle JSON is read
// with the core's ParseCandleJson, MySQL DECIMALs with ParseStoredDecimal: no floating point.
// Exit codes: 0 done, 1 nothing found, 2 usage or connection error.
#include <hiredis/hiredis.h>

#include <mysql.h>
#include "app/config.h"
#include "app/conn_options.h"
#include "core/iso8601.h"
#include "io/redis/key_layout.h"
#include "io/redis/redis_conn.h"
#include "tools/klinectl/history.h"
#include "tools/klinectl/history_util.h"
#include "tools/klinectl/recompute.h"
#include "tools/klinectl/routed_redis.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "klined/candle.h"
#include "klined/decimal.h"
#include "klined/interval.h"
#include "klined/trade.h"
#include "tools/args.h"

namespace {

using klined::Candle;

constexpr const char* kUsage = R"(usage: klinectl [options] COMMAND
Commands:
  candles SYMBOL INTERVAL [--limit N]   the newest N candles (default 10), oldest first:
                                        history and the current one (x=false) from Redis,
                                        older ones from MySQL with --mysql
  ticker SYMBOL                         the 24h ticker (ticker:{SYMBOL})
  symbols                               every symbol klined has seen (PREFIX:symbols)
  restore-redis [--symbols A,B] [--dry-run]
                                        rebuild Redis history from MySQL after Redis lost
                                        it: the newest redis.history_limit closed candles of
                                        every configured interval, only where Redis has no
                                        candle at that open time (idempotent, resumable,
                                        safe while klined runs); needs --config or --mysql
  retire SYMBOL... [--dry-run]          take delisted symbols out of the rollover, trimming
                                        and the API's symbol list (PREFIX:symbols ->
                                        PREFIX:retired); their stored candles stay, pending
                                        ones still reach MySQL; a new trade brings one back
  derive --interval IV [--source IV] [--from T] [--to T] [--symbols A,B] [--dry-run]
                                        IV's closed candles as the exact merge of a finer
                                        stored interval's (default: the coarsest configured
                                        one nesting in IV), upserted into MySQL and added to
                                        Redis history; T is ms since the epoch or ISO 8601
  recompute --from T --to T [--symbols A,B] [--dry-run]
                                        every configured interval's candles meeting [T, T]
                                        recomputed from the trades still in Kafka (a reader of
                                        its own, never the group's offsets) and replaced in
                                        MySQL and Redis, with the closes carried into the empty
                                        candles after; closed buckets only, compare-and-set
                                        against klined's writes; needs --config
Options:
  --config FILE           klined's config file (e.g. /etc/klined/klined.yaml): Redis address,
                          user, password, key prefixes and the MySQL connection come from it
                          (with its KLINED_* environment overrides); the flags below override
  --redis ADDR            host:port or unix:/path (default 127.0.0.1:6379); with --cluster a
                          comma-separated seed list
  --cluster               ADDR is a Redis Cluster (as redis.cluster: true in the config): every
                          command goes to the primary serving its key's slot
  --redis-user USER       Redis ACL user (AUTH USER PW), or $KLINED_REDIS_USER
  --redis-password PW     or $KLINED_REDIS_PASSWORD
  --prefix P              redis.key_prefix (default kline)
  --ticker-prefix P       redis.ticker_prefix (default ticker)
  --mysql H:PORT:USER:PASSWORD:DB
                          also read the kline table (password may be empty: then
                          $KLINED_MYSQL_PASSWORD)
  --json                  print stored JSON, one object per line, instead of a table
  --symbols A,B           restore-redis: only these symbols (default: every symbol in MySQL)
  --dry-run               restore-redis, derive: count what would be written, write nothing
  --help
Exit status: 0 ok, 1 not found, 2 usage or connection error; recompute also 3 (done
except for candles klined changed meanwhile, or still busy: rerun) and 4 (refused: Kafka no
longer retains the start of the range).
)";

struct Options {
  std::string config;                 // klined's config file; empty = none
  std::optional<klined::Config> cfg;  // its contents, when given
  bool mysql_flag = false;            // --mysql given (wins over the config's MySQL)
  std::vector<std::string> symbols;   // restore-redis --symbols
  bool dry_run = false;
  std::optional<klined::Interval> derive_interval, derive_source;  // derive --interval/--source
  int64_t from_ms = INT64_MIN, to_ms = INT64_MAX;                  // derive --from/--to
  std::string redis = "127.0.0.1:6379";
  bool redis_cluster = false;  // `redis` is a Redis Cluster's seed list (--cluster, the config)
  std::string redis_user;
  std::string redis_password;
  std::string prefix = "kline";
  std::string ticker_prefix = "ticker";
  std::string mysql;
  bool json = false;
  int limit = 10;
  std::vector<std::string> args;  // command and its operands
};

[[noreturn]] void Die(const std::string& msg) { klined::tools::ExitUsage("klinectl", msg); }

Options ParseArgs(int argc, char** argv) {
  Options o;
  if (const char* pw = std::getenv("KLINED_REDIS_PASSWORD")) o.redis_password = pw;
  if (const char* user = std::getenv("KLINED_REDIS_USER")) o.redis_user = user;
  std::set<std::string> given;  // flags set on the command line: they win over --config
  klined::tools::ArgWalker args("klinectl", argc, argv);
  while (args.Next()) {
    const std::string& arg = args.name();
    auto next = [&] { return args.Value(); };
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (arg == "--config") {
      o.config = next();
    } else if (arg == "--redis") {
      o.redis = next();
      given.insert("redis");
    } else if (arg == "--cluster") {
      o.redis_cluster = true;
    } else if (arg == "--redis-user") {
      o.redis_user = next();
      given.insert("redis-user");
    } else if (arg == "--redis-password") {
      o.redis_password = next();
      given.insert("redis-password");
    } else if (arg == "--prefix") {
      o.prefix = next();
      given.insert("prefix");
    } else if (arg == "--ticker-prefix") {
      o.ticker_prefix = next();
      given.insert("ticker-prefix");
    } else if (arg == "--mysql") {
      o.mysql = next();
      given.insert("mysql");
    } else if (arg == "--json") {
      o.json = true;
    } else if (arg == "--dry-run") {
      o.dry_run = true;
    } else if (arg == "--interval" || arg == "--source") {
      const std::string v = next();
      const auto iv = klined::ParseInterval(v);
      if (!iv) Die(arg + ": unknown interval '" + v + "'");
      (arg == "--interval" ? o.derive_interval : o.derive_source) = *iv;
    } else if (arg == "--from" || arg == "--to") {
      const std::string v = next();
      int64_t ms = 0;
      const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), ms);
      if ((ec != std::errc() || end != v.data() + v.size()) && !klined::ParseIso8601(v, &ms)) {
        Die(arg + ": expected ms since the epoch or an ISO 8601 time, got '" + v + "'");
      }
      (arg == "--from" ? o.from_ms : o.to_ms) = ms;
    } else if (arg == "--symbols") {
      const std::string list = next();
      for (size_t start = 0; start <= list.size();) {
        const size_t comma = std::min(list.find(',', start), list.size());
        const std::string sym = list.substr(start, comma - start);
        if (!klined::IsValidSymbol(sym)) Die("--symbols: bad symbol '" + sym + "'");
        o.symbols.push_back(sym);
        start = comma + 1;
      }
    } else if (arg == "--limit" || arg == "-n") {
      o.limit = static_cast<int>(args.Int(1, 1000000));
    } else if (arg.size() > 1 && arg[0] == '-') {
      Die("unknown option '" + arg + "' (see --help)");
    } else {
      o.args.push_back(arg);
    }
  }
  if (o.args.empty()) Die("missing command (see --help)");
  o.mysql_flag = given.contains("mysql");
  if (!o.config.empty()) {
    // klined's own loader: the same validation, defaults and KLINED_* overrides as klined.
    klined::ConfigResult loaded = klined::LoadConfigFile(o.config);
    if (const auto* e = std::get_if<klined::ConfigError>(&loaded)) Die(e->message);
    o.cfg = std::get<klined::Config>(std::move(loaded));
    const klined::Config& c = *o.cfg;
    o.redis_cluster |= c.redis.cluster;
    if (!given.contains("redis")) o.redis = c.redis.address;
    if (!given.contains("redis-user")) o.redis_user = c.redis.user;
    if (!given.contains("redis-password")) o.redis_password = c.redis.password;
    if (!given.contains("prefix")) o.prefix = c.redis.key_prefix;
    if (!given.contains("ticker-prefix")) o.ticker_prefix = c.redis.ticker_prefix;
    if (!given.contains("mysql")) {
      o.mysql = c.mysql.host + ":" + std::to_string(c.mysql.port) + ":" + c.mysql.user + ":" +
                c.mysql.password + ":" + c.mysql.database;
    }
  }
  return o;
}

// ---- Redis -----------------------------------------------------------------------------

using Reply = klined::RedisReply;

// The Redis klinectl talks to: one Redis, or a cluster's seeds (every command routed by its
// key, RoutedRedis); AUTH and timeouts as klined's.
klined::cluster::TopologyOptions TopologyOf(const Options& o) {
  if (!o.redis_cluster && o.redis.find(',') != std::string::npos) {
    Die("--redis: a comma-separated seed list needs --cluster (or redis.cluster in the config)");
  }
  klined::Config c = o.cfg ? *o.cfg : klined::Config{};
  c.redis.address = o.redis;  // the flags, merged over the config in ParseArgs
  c.redis.cluster = o.redis_cluster;
  c.redis.user = o.redis_user;
  c.redis.password = o.redis_password;
  c.redis.connect_timeout_ms = 5000;
  klined::cluster::TopologyOptions t = klined::TopologyOptionsFrom(c, 5000);  // splits the seeds
  for (const std::string& seed : t.seeds) {
    if (seed.rfind("unix:", 0) == 0) continue;
    const auto colon = seed.rfind(':');
    if (colon == std::string::npos) Die("--redis: expected host:port or unix:/path");
    const int port = std::atoi(seed.c_str() + colon + 1);
    if (port <= 0 || port > 65535) Die("--redis: bad port in '" + seed + "'");
  }
  return t;
}

// klined's own routing (RoutedRedis over cluster::Router), with klinectl's error reporting.
class Redis {
 public:
  // ok() false with error() set when the connection failed.
  explicit Redis(const Options& o) : conn_(TopologyOf(o)) {
    if (!conn_.EnsureConnected()) {
      // The router names the node: "host:port: why"; RedisConn quotes Redis's AUTH reply.
      std::string why = conn_.error();
      constexpr std::string_view kAuth = "AUTH failed: ";
      const size_t auth = why.find(kAuth);
      error_ = auth != std::string::npos ? "Redis AUTH: " + why.substr(auth + kAuth.size())
                                         : "cannot connect to Redis at " + why;
    }
  }
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

  // nullptr on an I/O error or an error reply (error() says which).
  Reply Command(std::initializer_list<std::string_view> argv) {
    Reply r = conn_.Command(argv);
    if (r == nullptr) {
      error_ = "Redis " + conn_.error();
      return nullptr;
    }
    if (r->type == REDIS_REPLY_ERROR) {
      error_ = "Redis " + std::string(*argv.begin()) + ": " + std::string(r->str, r->len);
      return nullptr;
    }
    return r;
  }

 private:
  klined::klinectl::RoutedRedis conn_;
  std::string error_;
};

// ---- MySQL -----------------------------------------------------------------------------

struct MysqlSpec {
  std::string host, user, password, db;
  unsigned port = 3306;
};

MysqlSpec ParseMysqlSpec(const std::string& spec) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    const size_t c = spec.find(':', start);
    parts.push_back(spec.substr(start, c - start));
    if (c == std::string::npos) break;
    start = c + 1;
  }
  if (parts.size() < 5) Die("--mysql: expected host:port:user:password:db");
  MysqlSpec m;
  m.host = parts[0];
  m.port = static_cast<unsigned>(std::atoi(parts[1].c_str()));
  if (m.port == 0 || m.port > 65535) Die("--mysql: bad port '" + parts[1] + "'");
  m.user = parts[2];
  m.db = parts.back();
  // The password is everything between user and db, so it may contain ':'.
  for (size_t i = 3; i + 1 < parts.size(); ++i) m.password += (i > 3 ? ":" : "") + parts[i];
  if (m.password.empty()) {
    if (const char* pw = std::getenv("KLINED_MYSQL_PASSWORD")) m.password = pw;
  }
  return m;
}

struct Row {
  Candle candle;
  bool closed = true;
  std::string json;    // as stored in Redis ("" for MySQL rows)
  const char* source;  // "redis" or "mysql"
};

// Reads the newest `limit` candles of (symbol, interval) from the kline table into *rows
// (without replacing open times already present). False with *error on failure.
bool ReadMysql(const Options& o, const std::string& symbol, klined::Interval iv,
               std::map<int64_t, Row>* rows, std::string* error) {
  const MysqlSpec m = ParseMysqlSpec(o.mysql);
  MYSQL* db = mysql_init(nullptr);
  std::unique_ptr<MYSQL, void (*)(MYSQL*)> guard(db, mysql_close);
  unsigned timeout = 5;
  mysql_options(db, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
  mysql_options(db, MYSQL_OPT_READ_TIMEOUT, &timeout);
  if (mysql_real_connect(db, m.host.c_str(), m.user.c_str(), m.password.c_str(), m.db.c_str(),
                         m.port, nullptr, 0) == nullptr) {
    *error = "cannot connect to MySQL at " + m.host + ":" + std::to_string(m.port) + ": " +
             mysql_error(db);
    return false;
  }
  std::string esc(symbol.size() * 2 + 1, '\0');
  esc.resize(mysql_real_escape_string(db, esc.data(), symbol.data(), symbol.size()));
  const std::string sql =
      "SELECT open_time, close_time, open, high, low, close, volume, quote_volume, "
      "taker_buy_volume, taker_buy_quote_volume, trades, first_trade_id, last_trade_id "
      "FROM kline WHERE symbol = '" +
      esc + "' AND `interval` = '" + std::string(klined::IntervalName(iv)) +
      "' ORDER BY open_time DESC LIMIT " + std::to_string(o.limit);
  if (mysql_query(db, sql.c_str()) != 0) {
    *error = std::string("MySQL query failed: ") + mysql_error(db);
    return false;
  }
  MYSQL_RES* res = mysql_store_result(db);
  if (res == nullptr) {
    *error = std::string("MySQL result: ") + mysql_error(db);
    return false;
  }
  std::unique_ptr<MYSQL_RES, void (*)(MYSQL_RES*)> res_guard(res, mysql_free_result);
  while (MYSQL_ROW r = mysql_fetch_row(res)) {
    Row row;
    row.source = "mysql";
    Candle& c = row.candle;
    c.interval = iv;
    bool good = true;
    auto integer = [&](int i) -> int64_t {
      if (r[i] == nullptr) good = false;
      return r[i] != nullptr ? std::strtoll(r[i], nullptr, 10) : 0;
    };
    auto decimal = [&](int i) -> klined::Decimal {
      klined::Decimal d;
      if (r[i] == nullptr || klined::ParseStoredDecimal(r[i], &d) != klined::DecimalError::kOk) {
        good = false;
      }
      return d;
    };
    c.open_time = integer(0);
    c.close_time = integer(1);
    c.open = decimal(2);
    c.high = decimal(3);
    c.low = decimal(4);
    c.close = decimal(5);
    c.volume = decimal(6);
    c.quote_volume = decimal(7);
    c.taker_volume = decimal(8);
    c.taker_quote_volume = decimal(9);
    c.count = integer(10);
    c.first_id = integer(11);
    c.last_id = integer(12);
    if (!good) {
      std::fprintf(stderr, "klinectl: skipping unreadable MySQL row at open_time %s\n",
                   r[0] != nullptr ? r[0] : "NULL");
      continue;
    }
    rows->emplace(c.open_time, std::move(row));
  }
  return true;
}

// ---- output ----------------------------------------------------------------------------

using klined::klinectl::IsoTime;

void PrintTable(const std::vector<std::vector<std::string>>& table) {
  std::vector<size_t> width;
  for (const auto& row : table) {
    width.resize(std::max(width.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : table) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      if (i > 0) line += "  ";
      // First column left-aligned, numbers right-aligned.
      const std::string pad(width[i] - row[i].size(), ' ');
      line += i == 0 ? row[i] + pad : pad + row[i];
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::puts(line.c_str());
  }
}

// ---- commands --------------------------------------------------------------------------

klined::KeyLayout Keys(const Options& o) { return klined::KeyLayout(o.prefix, o.ticker_prefix); }

int Candles(const Options& o) {
  if (o.args.size() != 3) Die("usage: klinectl candles SYMBOL INTERVAL [--limit N]");
  const std::string& symbol = o.args[1];
  if (!klined::IsValidSymbol(symbol)) Die("bad symbol '" + symbol + "'");
  const auto iv = klined::ParseInterval(o.args[2]);
  if (!iv) Die("unknown interval '" + o.args[2] + "' (1s 1m 3m 5m ... 1d 3d 1w 1M)");
  const std::string base = Keys(o).Current(symbol, *iv);

  std::map<int64_t, Row> rows;  // by open time
  Redis redis(o);
  bool redis_ok = redis.ok();
  auto add_redis = [&](std::string json) {
    Row row;
    row.source = "redis";
    std::string_view sym;
    if (!klined::ParseCandleJson(json, &row.candle, &sym, &row.closed)) {
      std::fprintf(stderr, "klinectl: skipping unreadable candle in %s: %s\n", base.c_str(),
                   json.c_str());
      return;
    }
    row.json = std::move(json);
    rows[row.candle.open_time] = std::move(row);  // Redis replaces MySQL; current replaces hist
  };
  if (redis_ok) {
    Reply hist = redis.Command(
        {"ZREVRANGE", Keys(o).History(symbol, *iv), "0", std::to_string(o.limit - 1)});
    Reply cur = hist ? redis.Command({"GET", base}) : nullptr;
    if (!hist || !cur) {
      redis_ok = false;
    } else {
      for (size_t i = 0; i < hist->elements; ++i) {
        const redisReply* e = hist->element[i];
        if (e->type == REDIS_REPLY_STRING) add_redis(std::string(e->str, e->len));
      }
      if (cur->type == REDIS_REPLY_STRING) add_redis(std::string(cur->str, cur->len));
    }
  }
  if (!redis_ok) {
    if (o.mysql.empty()) Die(redis.error());
    std::fprintf(stderr, "klinectl: %s; reading MySQL only\n", redis.error().c_str());
  }
  if (!o.mysql.empty()) {
    std::map<int64_t, Row> from_mysql;
    std::string error;
    if (!ReadMysql(o, symbol, *iv, &from_mysql, &error)) {
      if (!redis_ok) Die(error);
      std::fprintf(stderr, "klinectl: %s; showing Redis only\n", error.c_str());
    }
    for (auto& [t, row] : from_mysql) rows.emplace(t, std::move(row));  // keeps Redis rows
  }
  if (rows.empty()) {
    std::fprintf(stderr, "klinectl: no %s candles for %s (%s, %s:hist%s)\n", o.args[2].c_str(),
                 symbol.c_str(), base.c_str(), base.c_str(), o.mysql.empty() ? "" : ", MySQL");
    return 1;
  }
  while (rows.size() > static_cast<size_t>(o.limit)) rows.erase(rows.begin());

  if (o.json) {
    for (const auto& [t, row] : rows) {
      const std::string json =
          row.json.empty() ? klined::CandleJson(row.candle, symbol, row.closed) : row.json;
      std::puts(json.c_str());
    }
    return 0;
  }
  std::vector<std::vector<std::string>> table;
  table.push_back({"open_time", "open", "high", "low", "close", "volume", "trades", "x", "src"});
  for (const auto& [t, row] : rows) {
    const Candle& c = row.candle;
    table.push_back({IsoTime(c.open_time), c.open.ToString(), c.high.ToString(), c.low.ToString(),
                     c.close.ToString(), c.volume.ToString(), std::to_string(c.count),
                     row.closed ? "true" : "false", row.source});
  }
  std::printf("%s %s\n", symbol.c_str(), o.args[2].c_str());
  PrintTable(table);
  return 0;
}

// Splits a flat JSON object into (name, value) pairs, values without quotes. nullopt if the
// text is not a flat object of strings and scalars.
std::optional<std::vector<std::pair<std::string, std::string>>> FlatJson(std::string_view s) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t i = 0;
  auto ws = [&] {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r')) ++i;
  };
  auto str = [&](std::string* v) {
    if (i >= s.size() || s[i] != '"') return false;
    for (++i; i < s.size() && s[i] != '"'; ++i) {
      if (s[i] == '\\') {
        if (++i >= s.size()) return false;
      }
      v->push_back(s[i]);
    }
    if (i >= s.size()) return false;
    ++i;
    return true;
  };
  ws();
  if (i >= s.size() || s[i++] != '{') return std::nullopt;
  ws();
  if (i < s.size() && s[i] == '}') return out;
  for (;;) {
    std::string name, value;
    ws();
    if (!str(&name)) return std::nullopt;
    ws();
    if (i >= s.size() || s[i++] != ':') return std::nullopt;
    ws();
    if (i < s.size() && s[i] == '"') {
      if (!str(&value)) return std::nullopt;
    } else {
      while (i < s.size() && s[i] != ',' && s[i] != '}') value.push_back(s[i++]);
      while (!value.empty() && value.back() == ' ') value.pop_back();
      if (value.empty() || value[0] == '{' || value[0] == '[') return std::nullopt;
    }
    out.emplace_back(std::move(name), std::move(value));
    ws();
    if (i >= s.size()) return std::nullopt;
    if (s[i] == '}') return out;
    if (s[i++] != ',') return std::nullopt;
  }
}

int Ticker(const Options& o) {
  if (o.args.size() != 2) Die("usage: klinectl ticker SYMBOL");
  const std::string& symbol = o.args[1];
  if (!klined::IsValidSymbol(symbol)) Die("bad symbol '" + symbol + "'");
  Redis redis(o);
  if (!redis.ok()) Die(redis.error());
  const std::string key = Keys(o).Ticker(symbol);
  Reply r = redis.Command({"GET", key});
  if (!r) Die(redis.error());
  if (r->type != REDIS_REPLY_STRING) {
    std::fprintf(stderr, "klinectl: no ticker for %s (%s does not exist)\n", symbol.c_str(),
                 key.c_str());
    return 1;
  }
  const std::string json(r->str, r->len);
  auto fields = o.json ? std::nullopt : FlatJson(json);
  if (!fields) {
    std::puts(json.c_str());
    return 0;
  }
  std::vector<std::vector<std::string>> table;
  for (auto& [name, value] : *fields) {
    if (name == "openTime" || name == "closeTime") {
      char* end = nullptr;
      const long long ms = std::strtoll(value.c_str(), &end, 10);
      if (*end == '\0') value += " (" + IsoTime(ms) + ")";
    }
    table.push_back({name, value});
  }
  std::printf("%s\n", key.c_str());
  // Values left-aligned too: they are of mixed kinds.
  size_t w = 0;
  for (const auto& row : table) w = std::max(w, row[0].size());
  for (const auto& row : table) {
    std::printf("  %-*s  %s\n", static_cast<int>(w), row[0].c_str(), row[1].c_str());
  }
  return 0;
}

int Symbols(const Options& o) {
  if (o.args.size() != 1) Die("usage: klinectl symbols");
  Redis redis(o);
  if (!redis.ok()) Die(redis.error());
  Reply r = redis.Command({"SMEMBERS", Keys(o).Symbols()});
  if (!r) Die(redis.error());
  std::vector<std::string> names;
  for (size_t i = 0; i < r->elements; ++i) {
    names.emplace_back(r->element[i]->str, r->element[i]->len);
  }
  if (names.empty()) {
    std::fprintf(stderr, "klinectl: no symbols in %s\n", Keys(o).Symbols().c_str());
    return 1;
  }
  std::sort(names.begin(), names.end());
  for (const std::string& n : names) std::puts(n.c_str());
  return 0;
}

// The connections and settings the history tools work with: klined's config, flags over it.
klined::klinectl::RestoreOptions HistoryOptions(const Options& o) {
  if (!o.cfg && o.mysql.empty()) Die(o.args[0] + " reads MySQL: give --config FILE or --mysql");
  const klined::Config defaults;
  const klined::Config& c = o.cfg ? *o.cfg : defaults;
  klined::klinectl::RestoreOptions r;
  r.redis = TopologyOf(o);
  r.mysql = klined::MysqlOptionsFrom(c);
  if (o.mysql_flag || !o.cfg) {
    const MysqlSpec m = ParseMysqlSpec(o.mysql);
    r.mysql.host = m.host;
    r.mysql.port = static_cast<int>(m.port);
    r.mysql.user = m.user;
    r.mysql.password = m.password;
    r.mysql.database = m.db;
  }
  r.keys = Keys(o);
  r.intervals = c.intervals;
  r.tz = c.time_zone;
  r.limit = c.redis.history_limit;
  r.symbols = o.symbols;
  r.dry_run = o.dry_run;
  return r;
}

int Retire(const Options& o) {
  if (o.args.size() < 2) Die("usage: klinectl retire SYMBOL... [--dry-run]");
  Redis redis(o);
  if (!redis.ok()) Die(redis.error());
  const klined::KeyLayout keys = Keys(o);
  int code = 0;
  for (size_t i = 1; i < o.args.size(); ++i) {
    const std::string& sym = o.args[i];
    if (!klined::IsValidSymbol(sym)) Die("bad symbol '" + sym + "'");
    Reply active = redis.Command({"SISMEMBER", keys.Symbols(), sym});
    if (!active) Die(redis.error());
    if (active->integer != 1) {
      std::fprintf(stderr,
                   "klinectl: %s is not active (not in %s: retired already, or never "
                   "traded)\n",
                   sym.c_str(), keys.Symbols().c_str());
      code = 1;
      continue;
    }
    if (o.dry_run) {
      std::printf("would retire %s\n", sym.c_str());
      continue;
    }
    // The two sets live in other slots than the symbol (and each other), so no one call moves
    // it; the order makes it safe. The shard's write stamp is voided first: its next flush is
    // a FLUSH, which finds the stamp void and has its store add a symbol that trades again
    // back (FLUSH_FAST does not). Then out of the known symbols, into the retired set (in
    // between it is in neither, never in both, which the census reads as "traded again"),
    // and a trade flushed meanwhile (its add may have come before the SREM) puts it back.
    const auto wm_now = [&] {
      Reply wm = redis.Command({"GET", keys.Watermark(sym)});
      if (!wm) Die(redis.error());
      return wm->type == REDIS_REPLY_STRING ? std::string(wm->str, wm->len) : std::string();
    };
    const std::string wm = wm_now();
    if (!redis.Command({"SET", keys.WriteStamp(sym), ""}) ||
        !redis.Command({"SREM", keys.Symbols(), sym}) ||
        !redis.Command({"SADD", keys.RetiredSymbols(), sym})) {
      Die(redis.error());
    }
    if (wm_now() != wm) {
      if (!redis.Command({"SADD", keys.Symbols(), sym})) Die(redis.error());
      std::printf("%s traded while being retired: left active\n", sym.c_str());
      continue;
    }
    std::printf("retired %s\n", sym.c_str());
  }
  return code;
}

int RestoreRedis(const Options& o) {
  if (o.args.size() != 1) {
    Die("usage: klinectl (--config FILE | --mysql SPEC) restore-redis [--symbols A,B] [--dry-run]");
  }
  return klined::klinectl::RestoreRedis(HistoryOptions(o));
}

int Derive(const Options& o) {
  if (o.args.size() != 1 || !o.derive_interval) {
    Die("usage: klinectl (--config FILE | --mysql SPEC) derive --interval IV [--source IV] "
        "[--from T] [--to T] [--symbols A,B] [--dry-run]");
  }
  if (o.from_ms > o.to_ms) Die("--from is after --to");
  klined::klinectl::DeriveOptions d;
  d.base = HistoryOptions(o);
  d.target = *o.derive_interval;
  d.source = o.derive_source;
  d.from_ms = o.from_ms;
  d.to_ms = o.to_ms;
  return klined::klinectl::Derive(d);
}

int Recompute(const Options& o) {
  if (o.args.size() != 1 || o.from_ms == INT64_MIN || o.to_ms == INT64_MAX || !o.cfg) {
    Die("usage: klinectl --config FILE recompute --from T --to T [--symbols A,B] [--dry-run]");
  }
  if (o.from_ms > o.to_ms) Die("--from is after --to");
  const klined::Config& c = *o.cfg;
  klined::klinectl::RecomputeOptions r;
  r.base = HistoryOptions(o);
  r.brokers = c.kafka.brokers;
  r.topic = c.kafka.topic;
  r.kafka_properties = c.kafka.properties;
  r.fields = c.trade_fields;
  r.from_ms = o.from_ms;
  r.to_ms = o.to_ms;
  return klined::klinectl::Recompute(r);
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = ParseArgs(argc, argv);
  const std::string& cmd = o.args[0];
  if (cmd == "candles") return Candles(o);
  if (cmd == "ticker") return Ticker(o);
  if (cmd == "symbols") return Symbols(o);
  if (cmd == "restore-redis") return RestoreRedis(o);
  if (cmd == "derive") return Derive(o);
  if (cmd == "retire") return Retire(o);
  if (cmd == "recompute") return Recompute(o);
  Die("unknown command '" + cmd +
      "' (candles, ticker, symbols, retire, restore-redis, derive, recompute; see --help)");
}
