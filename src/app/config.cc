// The key table and the loader built on it. See config.h for the design.
#include "app/config.h"
#include "app/config_rules.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <type_traits>
#include <utility>

namespace klined {
namespace {

using namespace config_rules;  // NOLINT(google-build-using-namespace): the key table's rules

enum class Reload : bool { kRestart, kSighup };

// What is wrong with one value: where it is, what, and for map-valued keys (kafka.properties)
// which entry, appended to the key's path.
struct Problem {
  YAML::Mark mark;
  std::string what;
  std::string subkey;
};
using ProblemOr = std::optional<Problem>;

template <typename T>
using ValueParser = std::function<ProblemOr(const YAML::Node&, T*)>;
template <typename T>
using ValueShower = std::function<std::string(const T&)>;

// One config key. Built by the typed helpers below, which close over the accessor into Config,
// so everything the rest of the file does with keys goes through these functions.
struct KeySpec {
  std::string_view path;
  std::string type;
  Reload reload = Reload::kRestart;
  std::string_view env;  // environment variable that overrides the file, or empty
  bool secret = false;   // redacted by DescribeConfig
  std::string_view help;
  std::function<void(Config*)> set_default;
  std::function<ProblemOr(const YAML::Node&, Config*)> parse;
  std::function<void(std::string, Config*)> set_string;  // for env overrides; string keys only
  std::function<bool(const Config&, const Config&)> equal;
  std::function<void(const Config&, Config*)> copy;
  std::function<std::string(const Config&)> show;
};

// ---- rendering ---------------------------------------------------------------------------

// How a node that has the wrong type reads in a message: "got a list", "got the string "1"".
std::string Got(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Sequence:
      return "got a list";
    case YAML::NodeType::Map:
      return "got a map";
    case YAML::NodeType::Scalar:
      if (node.Tag() == "!" || node.Tag() == "tag:yaml.org,2002:str") {
        return "got the string " + Quote(node.Scalar());
      }
      return "got " + Quote(node.Scalar());
    default:
      return "got nothing";
  }
}

std::string Position(std::string_view name, const YAML::Mark& mark) {
  std::string out(name);
  if (!mark.is_null()) {
    out += ':' + std::to_string(mark.line + 1) + ':' + std::to_string(mark.column + 1);
  }
  return out + ": ";
}

std::string FormatOffset(UtcOffset tz) {
  int64_t minutes = (tz.ms < 0 ? -tz.ms : tz.ms) / 60000;
  char buf[8];
  buf[0] = tz.ms < 0 ? '-' : '+';
  buf[1] = static_cast<char>('0' + minutes / 60 / 10);
  buf[2] = static_cast<char>('0' + minutes / 60 % 10);
  buf[3] = ':';
  buf[4] = static_cast<char>('0' + minutes % 60 / 10);
  buf[5] = static_cast<char>('0' + minutes % 60 % 10);
  return std::string(buf, 6);
}

// librdkafka properties that hold secrets (sasl.password, ssl.key.pem, ...).
bool IsSecretProperty(std::string_view name) {
  return name.find("password") != std::string_view::npos ||
         name.find("secret") != std::string_view::npos ||
         name.find("pem") != std::string_view::npos ||
         name.find("oauthbearer.config") != std::string_view::npos;
}

// ---- typed keys ------------------------------------------------------------------------

template <typename Get>
using FieldType = std::remove_cvref_t<std::invoke_result_t<Get, Config&>>;

template <typename Get, typename T = FieldType<Get>>
KeySpec MakeKey(std::string_view path, Get get, std::type_identity_t<T> def, std::string type,
                std::type_identity_t<ValueParser<T>> parse,
                std::type_identity_t<ValueShower<T>> show, Reload reload, std::string_view help) {
  KeySpec key;
  key.path = path;
  key.type = std::move(type);
  key.reload = reload;
  key.help = help;
  key.set_default = [get, def](Config* c) { get(*c) = def; };
  key.parse = [get, parse](const YAML::Node& node, Config* c) -> ProblemOr {
    T value{};
    if (auto problem = parse(node, &value)) return problem;
    get(*c) = std::move(value);
    return std::nullopt;
  };
  key.equal = [get](const Config& a, const Config& b) { return get(a) == get(b); };
  key.copy = [get](const Config& from, Config* to) { get(*to) = get(from); };
  key.show = [get, show](const Config& c) { return show(get(c)); };
  return key;
}

template <typename Get, typename T = FieldType<Get>>
KeySpec IntKey(std::string_view path, Get get, std::type_identity_t<T> def, int64_t lo, int64_t hi,
               Reload reload, std::string_view help) {
  static_assert(std::is_integral_v<T>);
  std::string range = std::to_string(lo) + ".." + std::to_string(hi);
  ValueParser<T> parse = [lo, hi, range](const YAML::Node& node, T* out) -> ProblemOr {
    // A quoted "333" is a string in YAML; only plain (or !!int) scalars are integers.
    if (!node.IsScalar() || !(node.Tag() == "?" || node.Tag() == "tag:yaml.org,2002:int")) {
      return Problem{node.Mark(), "expected an integer, " + Got(node), ""};
    }
    const std::string& text = node.Scalar();
    int64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec == std::errc::result_out_of_range) {
      return Problem{node.Mark(), text + " is out of range " + range, ""};
    }
    if (ec != std::errc() || end != text.data() + text.size()) {
      return Problem{node.Mark(), "expected an integer, " + Got(node), ""};
    }
    if (value < lo || value > hi) {
      return Problem{node.Mark(), text + " is out of range " + range, ""};
    }
    *out = static_cast<T>(value);
    return std::nullopt;
  };
  ValueShower<T> show = [](const T& v) { return std::to_string(v); };
  return MakeKey<Get, T>(path, get, def, "integer " + range, parse, show, reload, help);
}

template <typename Get>
KeySpec StringKey(std::string_view path, Get get, std::string def, StringRule rule, Reload reload,
                  std::string_view help) {
  ValueParser<std::string> parse = [rule](const YAML::Node& node, std::string* out) -> ProblemOr {
    if (!node.IsScalar()) return Problem{node.Mark(), "expected a string, " + Got(node), ""};
    if (rule.check) {
      if (auto what = rule.check(node.Scalar())) return Problem{node.Mark(), *what, ""};
    }
    *out = node.Scalar();
    return std::nullopt;
  };
  KeySpec key =
      MakeKey<Get>(path, get, std::move(def), std::string(rule.type), parse, Quote, reload, help);
  key.set_string = [get](std::string value, Config* c) { get(*c) = std::move(value); };
  return key;
}

// A password: any string, redacted when shown, overridden by an environment variable.
template <typename Get>
KeySpec SecretKey(std::string_view path, Get get, std::string_view env, std::string_view help) {
  KeySpec key = StringKey(path, get, "", kAnyString, Reload::kRestart, help);
  key.env = env;
  key.secret = true;
  return key;
}

template <typename E>
using EnumNames = std::vector<std::pair<std::string_view, E>>;

template <typename Get, typename E = FieldType<Get>>
KeySpec EnumKey(std::string_view path, Get get, std::type_identity_t<E> def, EnumNames<E> names,
                Reload reload, std::string_view help) {
  std::string choices;
  for (const auto& [name, value] : names) {
    choices += (choices.empty() ? "" : "|") + std::string(name);
  }
  ValueParser<E> parse = [names, choices](const YAML::Node& node, E* out) -> ProblemOr {
    if (node.IsScalar()) {
      for (const auto& [name, value] : names) {
        if (node.Scalar() == name) {
          *out = value;
          return std::nullopt;
        }
      }
      return Problem{node.Mark(), Quote(node.Scalar()) + " is not one of " + choices, ""};
    }
    return Problem{node.Mark(), "expected one of " + choices + ", " + Got(node), ""};
  };
  ValueShower<E> show = [names](const E& v) {
    for (const auto& [name, value] : names) {
      if (value == v) return std::string(name);
    }
    return std::string("?");
  };
  return MakeKey<Get, E>(path, get, def, choices, parse, show, reload, help);
}

std::string AllIntervalNames() {
  std::string out;
  for (Interval iv : kAllIntervals) out += (out.empty() ? "" : " ") + std::string(IntervalName(iv));
  return out;
}

template <typename Get>
KeySpec IntervalsKey(std::string_view path, Get get, std::vector<Interval> def, Reload reload,
                     std::string_view help) {
  ValueParser<std::vector<Interval>> parse = [](const YAML::Node& node,
                                                std::vector<Interval>* out) -> ProblemOr {
    if (!node.IsSequence()) return Problem{node.Mark(), "expected a list, " + Got(node), ""};
    std::set<Interval> seen;
    for (const YAML::Node& item : node) {
      if (!item.IsScalar()) {
        return Problem{item.Mark(), "expected an interval name, " + Got(item), ""};
      }
      std::optional<Interval> iv = ParseInterval(item.Scalar());
      if (!iv) {
        return Problem{item.Mark(),
                       Quote(item.Scalar()) + " is not an interval (" + AllIntervalNames() + ")",
                       ""};
      }
      if (!seen.insert(*iv).second) {
        return Problem{item.Mark(), std::string(IntervalName(*iv)) + " is listed twice", ""};
      }
    }
    if (seen.empty()) return Problem{node.Mark(), "must list at least one interval", ""};
    // The 24h ticker (contract section 4) is made of 1m candles.
    if (!seen.contains(Interval::k1m)) {
      return Problem{node.Mark(), "must include 1m (the 24h ticker is built from 1m candles)", ""};
    }
    out->assign(seen.begin(), seen.end());  // enum order is kAllIntervals order
    return std::nullopt;
  };
  ValueShower<std::vector<Interval>> show = [](const std::vector<Interval>& ivs) {
    std::string out = "[";
    for (Interval iv : ivs) out += (out.size() > 1 ? ", " : "") + std::string(IntervalName(iv));
    return out + "]";
  };
  return MakeKey<Get>(path, get, std::move(def), "list of intervals: " + AllIntervalNames(), parse,
                      show, reload, help);
}

template <typename Get>
KeySpec OffsetKey(std::string_view path, Get get, UtcOffset def, Reload reload,
                  std::string_view help) {
  ValueParser<UtcOffset> parse = [](const YAML::Node& node, UtcOffset* out) -> ProblemOr {
    if (!node.IsScalar())
      return Problem{node.Mark(), "expected +HH:MM or -HH:MM, " + Got(node), ""};
    std::optional<UtcOffset> tz = ParseUtcOffset(node.Scalar());
    if (!tz) return Problem{node.Mark(), Quote(node.Scalar()) + " is not +HH:MM or -HH:MM", ""};
    *out = *tz;
    return std::nullopt;
  };
  return MakeKey<Get>(path, get, def, "UTC offset +HH:MM or -HH:MM", parse, FormatOffset, reload,
                      help);
}

template <typename Get>
KeySpec RolesKey(std::string_view path, Get get, std::string_view help) {
  ValueParser<Config::Roles> parse = [](const YAML::Node& node, Config::Roles* out) -> ProblemOr {
    if (!node.IsSequence()) return Problem{node.Mark(), "expected a list, " + Got(node), ""};
    Config::Roles roles{false, false, false};
    for (const YAML::Node& item : node) {
      bool* role = nullptr;
      if (item.IsScalar() && item.Scalar() == "ingest") role = &roles.ingest;
      if (item.IsScalar() && item.Scalar() == "jobs") role = &roles.jobs;
      if (item.IsScalar() && item.Scalar() == "api") role = &roles.api;
      if (role == nullptr) {
        return Problem{item.Mark(),
                       (item.IsScalar() ? Quote(item.Scalar()) + " is not a role"
                                        : "expected a role, " + Got(item)) +
                           " (ingest, jobs, api)",
                       ""};
      }
      if (*role) return Problem{item.Mark(), Quote(item.Scalar()) + " is listed twice", ""};
      *role = true;
    }
    if (!roles.ingest && !roles.jobs && !roles.api) {
      return Problem{node.Mark(), "must list at least one role (ingest, jobs, api)", ""};
    }
    *out = roles;
    return std::nullopt;
  };
  ValueShower<Config::Roles> show = [](const Config::Roles& r) {
    std::string out = "[";
    if (r.ingest) out += "ingest";
    if (r.jobs) out += std::string(out.size() > 1 ? ", " : "") + "jobs";
    if (r.api) out += std::string(out.size() > 1 ? ", " : "") + "api";
    return out + "]";
  };
  return MakeKey<Get>(path, get, Config::Roles{}, "list of roles: ingest jobs api", parse, show,
                      Reload::kRestart, help);
}

// A list of upper-case asset names (A-Z 0-9, 1..16 characters), e.g. api.quote_assets.
template <typename Get>
KeySpec AssetListKey(std::string_view path, Get get, std::vector<std::string> def, Reload reload,
                     std::string_view help) {
  using List = std::vector<std::string>;
  ValueParser<List> parse = [](const YAML::Node& node, List* out) -> ProblemOr {
    if (!node.IsSequence()) return Problem{node.Mark(), "expected a list, " + Got(node), ""};
    List items;
    for (const YAML::Node& item : node) {
      const bool ok = item.IsScalar() && !item.Scalar().empty() && item.Scalar().size() <= 16 &&
                      std::all_of(item.Scalar().begin(), item.Scalar().end(), [](char c) {
                        return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
                      });
      if (!ok)
        return Problem{item.Mark(), "expected an asset name (A-Z 0-9, 1..16), " + Got(item), ""};
      if (std::find(items.begin(), items.end(), item.Scalar()) != items.end()) {
        return Problem{item.Mark(), Quote(item.Scalar()) + " is listed twice", ""};
      }
      items.push_back(item.Scalar());
    }
    *out = std::move(items);
    return std::nullopt;
  };
  ValueShower<List> show = [](const List& items) {
    std::string out = "[";
    for (const std::string& i : items) out += (out.size() > 1 ? ", " : "") + i;
    return out + "]";
  };
  return MakeKey<Get>(path, get, std::move(def), "list of asset names", parse, show, reload, help);
}

// librdkafka properties klined sets itself: overriding them would break the contract
// (offsets committed only for trades in Redis, earliest start) or duplicate a typed key.
constexpr std::array<std::pair<std::string_view, std::string_view>, 6> kReservedProperties = {{
    {"bootstrap.servers", "set by klined from kafka.brokers"},
    {"metadata.broker.list", "set by klined from kafka.brokers"},
    {"group.id", "set by klined from kafka.group"},
    {"enable.auto.commit", "set by klined: offsets are committed only for trades in Redis"},
    {"enable.auto.offset.store", "set by klined: offsets are committed only for trades in Redis"},
    {"auto.offset.reset", "set by klined: a new group starts at the earliest message"},
}};

// A pass-through property klined cannot honour, or nullopt. The consumer's rebalance
// callback (src/io/kafka/consumer.cc) speaks the eager protocol: it assigns and revokes whole
// assignments with rd_kafka_assign. cooperative-sticky switches librdkafka to the incremental
// protocol (incremental_assign/unassign), under which that callback would be wrong.
std::optional<std::string> CheckProperty(std::string_view name, std::string_view value) {
  if (name == "partition.assignment.strategy") {
    std::string lower(value);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (lower.find("cooperative-sticky") != std::string::npos) {
      return "cooperative-sticky needs the incremental rebalance protocol, which klined does "
             "not implement (its rebalance callback assigns and revokes whole assignments); "
             "use range and/or roundrobin";
    }
  }
  return std::nullopt;
}

template <typename Get>
KeySpec PropertiesKey(std::string_view path, Get get, Reload reload, std::string_view help) {
  using Map = std::map<std::string, std::string>;
  ValueParser<Map> parse = [](const YAML::Node& node, Map* out) -> ProblemOr {
    if (!node.IsMap()) return Problem{node.Mark(), "expected a map, " + Got(node), ""};
    for (const auto& entry : node) {
      const YAML::Node& name = entry.first;
      const YAML::Node& value = entry.second;
      if (!name.IsScalar()) {
        return Problem{name.Mark(), "property names must be strings, " + Got(name), ""};
      }
      std::string sub = "." + name.Scalar();
      for (const auto& [reserved, why] : kReservedProperties) {
        if (name.Scalar() == reserved) return Problem{name.Mark(), std::string(why), sub};
      }
      if (!value.IsScalar()) {
        return Problem{value.Mark(), "expected a string value, " + Got(value), sub};
      }
      if (auto problem = CheckProperty(name.Scalar(), value.Scalar())) {
        return Problem{value.Mark(), *problem, sub};
      }
      if (!out->emplace(name.Scalar(), value.Scalar()).second) {
        return Problem{name.Mark(), "duplicate key", sub};
      }
    }
    return std::nullopt;
  };
  ValueShower<Map> show = [](const Map& map) {
    std::string out = "{";
    for (const auto& [name, value] : map) {
      out += (out.size() > 1 ? ", " : "") + name + ": " +
             (IsSecretProperty(name) ? std::string("<redacted>") : Quote(value));
    }
    return out + "}";
  };
  return MakeKey<Get>(path, get, Map{}, "map of librdkafka property to string", parse, show, reload,
                      help);
}

// ---- the key table ---------------------------------------------------------------------

#define KLINED_FIELD(member) \
  [](auto& c) -> auto& { return c.member; }

constexpr Reload kRestart = Reload::kRestart;
constexpr Reload kSighup = Reload::kSighup;

std::vector<Interval> DefaultIntervals() {
  std::vector<Interval> all(kAllIntervals.begin(), kAllIntervals.end());
  std::erase(all, Interval::k1s);
  return all;
}

// Every config key, in the order config/klined.yaml documents them. Bounds say what the
// implementation is built and tested for; the reasons are in the help text where not obvious.
const std::vector<KeySpec>& Keys() {
  static const std::vector<KeySpec> keys = [] {
    const TradeFieldMap binance;  // the decoder's default names, Binance's
    std::vector<KeySpec> k;
    k.push_back(StringKey("kafka.brokers", KLINED_FIELD(kafka.brokers), "127.0.0.1:9092", kBrokers,
                          kRestart, "bootstrap servers, comma-separated"));
    k.push_back(StringKey("kafka.topic", KLINED_FIELD(kafka.topic), "trades", kTopic, kRestart,
                          "topic the trades come from"));
    k.push_back(StringKey("kafka.group", KLINED_FIELD(kafka.group), "klined", kNonEmpty, kRestart,
                          "consumer group"));
    k.push_back(StringKey("kafka.dead_letter_topic", KLINED_FIELD(kafka.dead_letter_topic), "",
                          kOptionalTopic, kSighup,
                          "rejected messages are copied here; empty = none"));
    k.push_back(PropertiesKey("kafka.properties", KLINED_FIELD(kafka.properties), kRestart,
                              "librdkafka properties passed through, e.g. session.timeout.ms"));
    k.push_back(IntKey("kafka.batch_size", KLINED_FIELD(kafka.batch_size), 10000, 1, 100000,
                       kRestart, "messages taken per consume call"));

    k.push_back(StringKey("redis.address", KLINED_FIELD(redis.address), "127.0.0.1:6379",
                          kRedisAddress, kRestart,
                          "host:port, or unix:/path/to/socket; with redis.cluster a "
                          "comma-separated seed list of host:port"));
    k.push_back([] {
      KeySpec key = StringKey("redis.user", KLINED_FIELD(redis.user), "", kAnyString, kRestart,
                              "ACL user: AUTH user password; empty = AUTH password (the default "
                              "user); KLINED_REDIS_USER overrides");
      key.env = "KLINED_REDIS_USER";
      return key;
    }());
    k.push_back(SecretKey("redis.password", KLINED_FIELD(redis.password), "KLINED_REDIS_PASSWORD",
                          "empty = no AUTH; KLINED_REDIS_PASSWORD overrides"));
    k.push_back(StringKey("redis.key_prefix", KLINED_FIELD(redis.key_prefix), "kline", kKeyPrefix,
                          kRestart, "PREFIX of PREFIX:{SYMBOL}:INTERVAL keys"));
    k.push_back(StringKey("redis.ticker_prefix", KLINED_FIELD(redis.ticker_prefix), "ticker",
                          kKeyPrefix, kRestart, "prefix of the 24h ticker keys"));
    k.push_back(IntKey("redis.history_limit", KLINED_FIELD(redis.history_limit), 1000, 1, 10000000,
                       kSighup, "closed candles kept at least per history key"));
    k.push_back(IntKey("redis.connect_timeout_ms", KLINED_FIELD(redis.connect_timeout_ms), 1000, 10,
                       60000, kRestart, "connect timeout"));
    k.push_back(EnumKey("redis.cluster", KLINED_FIELD(redis.cluster), false,
                        {{"false", false}, {"true", true}}, kRestart,
                        "Redis Cluster (redis.address a seed list): every call routed to the "
                        "primary serving its slot"));
    k.push_back(IntKey("redis.wait_replicas", KLINED_FIELD(redis.wait_replicas), 0, 0, 64, kRestart,
                       "replicas that must acknowledge a flush (WAIT) before the Kafka offsets "
                       "behind it are committed; 0 = none"));
    k.push_back(IntKey("redis.wait_timeout_ms", KLINED_FIELD(redis.wait_timeout_ms), 1000, 10, 4000,
                       kRestart,
                       "how long one WAIT may take; on a timeout the offsets are held and the "
                       "wait is repeated (under the 5 s command timeout of the shards' "
                       "connections)"));

    k.push_back(StringKey("mysql.host", KLINED_FIELD(mysql.host), "127.0.0.1", kNonEmpty, kRestart,
                          "host name or address"));
    k.push_back(IntKey("mysql.port", KLINED_FIELD(mysql.port), 3306, 1, 65535, kRestart, "port"));
    k.push_back(
        StringKey("mysql.user", KLINED_FIELD(mysql.user), "klined", kNonEmpty, kRestart, "user"));
    k.push_back(SecretKey("mysql.password", KLINED_FIELD(mysql.password), "KLINED_MYSQL_PASSWORD",
                          "KLINED_MYSQL_PASSWORD overrides"));
    k.push_back(StringKey("mysql.database", KLINED_FIELD(mysql.database), "klined", kDatabase,
                          kRestart, "database holding the kline table"));
    k.push_back(IntKey("mysql.persist_interval_ms", KLINED_FIELD(mysql.persist_interval_ms), 5000,
                       100, 3600000, kSighup, "a closed candle reaches MySQL within this"));
    k.push_back(IntKey("mysql.batch_rows", KLINED_FIELD(mysql.batch_rows), 500, 1, 10000, kRestart,
                       "rows per upsert statement"));
    k.push_back(EnumKey("mysql.ssl_mode", KLINED_FIELD(mysql.ssl_mode), MysqlSslMode::kDisabled,
                        {{"disabled", MysqlSslMode::kDisabled},
                         {"preferred", MysqlSslMode::kPreferred},
                         {"required", MysqlSslMode::kRequired},
                         {"verify_ca", MysqlSslMode::kVerifyCa},
                         {"verify_identity", MysqlSslMode::kVerifyIdentity}},
                        kRestart,
                        "TLS to MySQL: disabled (no TLS), preferred (TLS when the server offers "
                        "it), required (TLS or no connection), verify_ca (and the server's "
                        "certificate signed by mysql.ssl_ca), verify_identity (and its name "
                        "matching mysql.host)"));
    k.push_back(StringKey("mysql.ssl_ca", KLINED_FIELD(mysql.ssl_ca), "", kAnyString, kRestart,
                          "CA certificate file (PEM) the server's certificate must chain to; "
                          "needed by verify_ca, verify_identity uses the system's CAs without "
                          "it; empty = none"));

    k.push_back(IntervalsKey("intervals", KLINED_FIELD(intervals), DefaultIntervals(), kRestart,
                             "candle intervals; 1s may be added; 1m is required (ticker)"));
    k.push_back(OffsetKey("time_zone", KLINED_FIELD(time_zone), UtcOffset{}, kRestart,
                          "buckets are aligned in this fixed UTC offset"));
    k.push_back(IntKey("flush_interval_ms", KLINED_FIELD(flush_interval_ms), 333, 10, 60000,
                       kSighup, "a trade is in Redis within this + 100 ms"));
    k.push_back(IntKey("rollover_grace_ms", KLINED_FIELD(rollover_grace_ms), 1000, 10, 60000,
                       kSighup, "candles roll over within this after a bucket boundary"));
    k.push_back(IntKey("drain_timeout_ms", KLINED_FIELD(drain_timeout_ms), 20000, 1000, 600000,
                       kRestart, "the SIGTERM drain's bound; keep it below TimeoutStopSec"));
    k.push_back(IntKey("max_future_skew_ms", KLINED_FIELD(max_future_skew_ms), 60000, 0, 86400000,
                       kSighup, "trades further ahead of the wall clock are rejected"));
    k.push_back(IntKey("shards", KLINED_FIELD(shards), 0, 0, 256, kRestart, "0 = one per core"));
    k.push_back(IntKey("lease.ttl_ms", KLINED_FIELD(lease.ttl_ms), 3000, 300, 600000, kRestart,
                       "timer-job lease; a dead holder is replaced within 2 x this"));
    k.push_back(StringKey("metrics.listen", KLINED_FIELD(metrics.listen), "127.0.0.1:9464", kListen,
                          kRestart, "Prometheus /metrics endpoint; port 0 = any"));

    k.push_back(StringKey("trade_fields.symbol", KLINED_FIELD(trade_fields.symbol), binance.symbol,
                          kFieldName, kRestart, "JSON member holding the symbol"));
    k.push_back(StringKey("trade_fields.id", KLINED_FIELD(trade_fields.id), binance.id, kFieldName,
                          kRestart, "JSON member holding the trade id"));
    k.push_back(StringKey("trade_fields.price", KLINED_FIELD(trade_fields.price), binance.price,
                          kFieldName, kRestart, "JSON member holding the price"));
    k.push_back(StringKey("trade_fields.qty", KLINED_FIELD(trade_fields.qty), binance.qty,
                          kFieldName, kRestart, "JSON member holding the quantity"));
    k.push_back(StringKey("trade_fields.time", KLINED_FIELD(trade_fields.time), binance.time,
                          kFieldName, kRestart, "JSON member holding the trade time"));
    k.push_back(StringKey("trade_fields.buyer_maker", KLINED_FIELD(trade_fields.buyer_maker),
                          binance.buyer_maker, kOptionalFieldName, kRestart,
                          "JSON member holding buyer-is-maker; empty = never read"));
    k.push_back(EnumKey("trade_fields.time_format", KLINED_FIELD(trade_fields.time_format),
                        binance.time_format,
                        {{"epoch_ms", TimeFormat::kEpochMs},
                         {"iso8601", TimeFormat::kIso8601},
                         {"auto", TimeFormat::kAuto}},
                        kRestart, "epoch_ms integer, iso8601 string, or auto (by JSON type)"));

    k.push_back(EnumKey("log.level", KLINED_FIELD(log.level), LogLevel::kInfo,
                        {{"debug", LogLevel::kDebug},
                         {"info", LogLevel::kInfo},
                         {"warn", LogLevel::kWarn},
                         {"error", LogLevel::kError}},
                        kSighup, "lowest level logged"));
    k.push_back(IntKey("log.rate_limit_per_s", KLINED_FIELD(log.rate_limit_per_s), 10, 0, 100000,
                       kSighup, "lines per second per hot-path log site; 0 = none"));
    k.push_back(IntKey("limits.max_pending_trades", KLINED_FIELD(limits.max_pending_trades),
                       1000000, 1000, 1000000000, kRestart,
                       "trades a shard holds (applied, write not yet confirmed) before it "
                       "stops taking batches; then the consumer pauses"));
    k.push_back(IntKey(
        "limits.max_gap_candles", KLINED_FIELD(limits.max_gap_candles), 1000000, 1000, 1000000000,
        kRestart,
        "empty candles one trade may gap-fill per interval; more rejects it (out_of_range)"));
    k.push_back(IntKey("limits.idle_release_ms", KLINED_FIELD(limits.idle_release_ms), 86460000,
                       1000, 31536000000, kSighup,
                       "a symbol that took no trade for this long leaves shard memory and is "
                       "reloaded on its next trade; below 24h+1m its 24h ticker stops sliding"));
    k.push_back(IntKey("limits.retire_idle_after", KLINED_FIELD(limits.retire_idle_after), 0, 0,
                       31536000000000, kSighup,
                       "ms without a trade before the lease holder retires a symbol (as "
                       "klinectl retire: out of the rollover; a trade brings it back); 0 = off"));

    k.push_back(RolesKey("roles", KLINED_FIELD(roles),
                         "ingest = consume Kafka; jobs = compete for the timer-job lease; api = "
                         "serve the market-data API (REST + WebSocket)"));
    k.push_back(StringKey("api.listen", KLINED_FIELD(api.listen), "127.0.0.1:8080", kListen,
                          kRestart, "REST + WebSocket endpoint; port 0 = any"));
    k.push_back(IntKey("api.threads", KLINED_FIELD(api.threads), 1, 1, 64, kRestart,
                       "event-loop threads (api-N), each owning its connections"));
    k.push_back(IntKey("api.max_connections", KLINED_FIELD(api.max_connections), 10000, 1, 1000000,
                       kRestart, "open API sockets; one more is accepted and closed at once"));
    k.push_back(IntKey("api.weight_per_minute", KLINED_FIELD(api.weight_per_minute), 6000, 0,
                       100000000, kSighup,
                       "request weight per client IP per minute (Binance's weights); more is "
                       "answered 429 (-1003); 0 = no limit"));
    k.push_back(IntKey("api.idle_timeout_ms", KLINED_FIELD(api.idle_timeout_ms), 60000, 100,
                       3600000, kRestart,
                       "a connection sending nothing (or a request too slowly) is closed"));
    k.push_back(IntKey("api.mysql_timeout_ms", KLINED_FIELD(api.mysql_timeout_ms), 2000, 100, 60000,
                       kRestart, "read timeout of the API's MySQL range reads"));
    k.push_back(IntKey("api.symbols_refresh_ms", KLINED_FIELD(api.symbols_refresh_ms), 1000, 100,
                       60000, kRestart,
                       "how often the known-symbol set (kline:symbols) is re-read; a new "
                       "symbol is answered as unknown until then"));
    k.push_back(AssetListKey("api.quote_assets", KLINED_FIELD(api.quote_assets),
                             {"USDT", "USDC", "FDUSD", "BUSD", "TUSD", "BTC", "ETH", "BNB", "EUR",
                              "TRY", "BRL", "JPY", "DAI"},
                             kRestart,
                             "exchangeInfo splits a symbol into base + the longest of these "
                             "that ends it"));
    k.push_back(StringKey("api.web_root", KLINED_FIELD(api.web_root), "", kAnyString, kRestart,
                          "directory GET / serves the chart page from; empty = no page"));
    k.push_back(IntKey("api.ws_max_streams", KLINED_FIELD(api.ws_max_streams), 1024, 1, 65536,
                       kRestart, "streams one WebSocket connection may subscribe (Binance: 1024)"));
    k.push_back(IntKey("api.ws_send_queue_bytes", KLINED_FIELD(api.ws_send_queue_bytes), 1048576,
                       4096, 1073741824, kRestart,
                       "bytes queued to one WebSocket client (after conflation) before it is "
                       "closed as too slow"));
    k.push_back(IntKey("api.ws_messages_per_second", KLINED_FIELD(api.ws_messages_per_second), 5, 1,
                       10000, kRestart,
                       "messages a WebSocket client may send per second; more closes it "
                       "(Binance: 5)"));
    k.push_back(IntKey("api.cache_bytes", KLINED_FIELD(api.cache_bytes), 10485760, 0, 68719476736,
                       kRestart,
                       "bytes the L1 cache of klines rows may hold (hot symbol/interval pairs, "
                       "kept fresh by pub/sub); 0 = no cache, every request reads Redis"));
    k.push_back(IntKey("api.cache_page_ttl_ms", KLINED_FIELD(api.cache_page_ttl_ms), 30000, 100,
                       86400000, kRestart,
                       "lifetime of a cached page of MySQL rows (history older than Redis), "
                       "x a random 0.8-1.2"));
    k.push_back(IntKey("api.watch_ttl_ms", KLINED_FIELD(api.watch_ttl_ms), 30000, 1000, 3600000,
                       kRestart,
                       "how long what this instance streams stays in Redis's watch of a symbol "
                       "(FLUSH publishes only watched intervals) without a refresh; refreshed "
                       "every third of it, so an instance that died stops costing publishes "
                       "after this"));
    return k;
  }();
  return keys;
}

#undef KLINED_FIELD

const KeySpec* FindKey(std::string_view path) {
  for (const KeySpec& key : Keys()) {
    if (key.path == path) return &key;
  }
  return nullptr;
}

// A section is a proper prefix of a key path: "kafka", "trade_fields".
bool IsSection(std::string_view path) {
  for (const KeySpec& key : Keys()) {
    if (key.path.size() > path.size() && key.path.starts_with(path) &&
        key.path[path.size()] == '.') {
      return true;
    }
  }
  return false;
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// "did you mean redis.history_limit?" for a key in the wrong section or a near-miss spelling.
std::string Suggestion(std::string_view path) {
  size_t dot = path.rfind('.');
  std::string_view leaf = dot == path.npos ? path : path.substr(dot + 1);
  std::string_view section = dot == path.npos ? std::string_view() : path.substr(0, dot);
  for (const KeySpec& key : Keys()) {
    size_t key_dot = key.path.rfind('.');
    std::string_view key_leaf = key_dot == key.path.npos ? key.path : key.path.substr(key_dot + 1);
    if (key_leaf == leaf) return " (did you mean " + std::string(key.path) + "?)";
  }
  for (const KeySpec& key : Keys()) {
    size_t key_dot = key.path.rfind('.');
    std::string_view key_section =
        key_dot == key.path.npos ? std::string_view() : key.path.substr(0, key_dot);
    std::string_view key_leaf = key_dot == key.path.npos ? key.path : key.path.substr(key_dot + 1);
    if (key_section == section && EditDistance(leaf, key_leaf) <= 2) {
      return " (did you mean " + std::string(key.path) + "?)";
    }
  }
  return "";
}

// ---- loading ---------------------------------------------------------------------------

class Loader {
 public:
  Loader(std::string_view name, const Environment& env) : name_(name), env_(env) {}

  ConfigResult Load(std::string_view yaml) {
    std::vector<YAML::Node> docs = YAML::LoadAll(std::string(yaml));
    if (docs.size() > 1) {
      return Error(docs[1].Mark(), "", "a config file holds one YAML document, this one has more");
    }
    Config config;
    if (!docs.empty() && !docs[0].IsNull()) {
      if (!docs[0].IsMap()) {
        return Error(docs[0].Mark(), "", "the top level must be a map of keys, " + Got(docs[0]));
      }
      if (auto error = Walk(docs[0], "", &config)) return *error;
    }
    for (const KeySpec& key : Keys()) {
      if (key.env.empty() || !env_) continue;
      std::optional<std::string> value = env_(key.env);
      if (value && !value->empty()) key.set_string(std::move(*value), &config);
    }
    if (auto error = CrossCheck(config)) return *error;
    return config;
  }

 private:
  ConfigError Error(const YAML::Mark& mark, std::string_view key, std::string_view what) const {
    std::string message = Position(name_, mark);
    if (!key.empty()) message += std::string(key) + ": ";
    return ConfigError{message + std::string(what)};
  }

  // Parses the keys of one map, `prefix` being its section ("" at the top).
  std::optional<ConfigError> Walk(const YAML::Node& map, const std::string& prefix,
                                  Config* config) {
    for (const auto& entry : map) {
      const YAML::Node& name = entry.first;
      const YAML::Node& value = entry.second;
      if (!name.IsScalar()) {
        return Error(name.Mark(), prefix, "keys must be strings, " + Got(name));
      }
      std::string path = prefix.empty() ? name.Scalar() : prefix + "." + name.Scalar();
      if (!marks_.emplace(path, value.IsNull() ? name.Mark() : value.Mark()).second) {
        return Error(name.Mark(), path, "duplicate key");
      }
      if (const KeySpec* key = FindKey(path)) {
        if (value.IsNull()) continue;  // `key:` with no value = the default
        if (ProblemOr problem = key->parse(value, config)) {
          return Error(problem->mark, path + problem->subkey, problem->what);
        }
      } else if (IsSection(path)) {
        if (value.IsNull()) continue;
        if (!value.IsMap()) return Error(value.Mark(), path, "expected a map, " + Got(value));
        if (auto error = Walk(value, path, config)) return error;
      } else {
        return Error(name.Mark(), path, "unknown key" + Suggestion(path));
      }
    }
    return std::nullopt;
  }

  YAML::Mark MarkOf(const std::string& path) const {
    auto it = marks_.find(path);
    return it == marks_.end() ? YAML::Mark::null_mark() : it->second;
  }

  // Rules that span keys. Reported at the key the file set (the later one when both).
  std::optional<ConfigError> CrossCheck(const Config& config) const {
    if (!config.redis.cluster && config.redis.address.find(',') != std::string::npos) {
      return Error(MarkOf("redis.address"), "redis.address",
                   "a comma-separated seed list needs redis.cluster: true");
    }
    if (!config.kafka.dead_letter_topic.empty() &&
        config.kafka.dead_letter_topic == config.kafka.topic) {
      return Error(MarkOf("kafka.dead_letter_topic"), "kafka.dead_letter_topic",
                   "must differ from kafka.topic (rejected messages would be consumed again)");
    }
    if (config.mysql.ssl_mode == MysqlSslMode::kVerifyCa && config.mysql.ssl_ca.empty()) {
      return Error(MarkOf("mysql.ssl_mode"), "mysql.ssl_mode",
                   "verify_ca needs mysql.ssl_ca (the CA file the server's certificate must "
                   "chain to)");
    }
    if (config.mysql.ssl_mode == MysqlSslMode::kDisabled && !config.mysql.ssl_ca.empty()) {
      return Error(MarkOf("mysql.ssl_ca"), "mysql.ssl_ca",
                   "is set but mysql.ssl_mode is disabled (no TLS): set mysql.ssl_mode too");
    }
    const std::pair<const char*, const std::string*> fields[] = {
        {"trade_fields.symbol", &config.trade_fields.symbol},
        {"trade_fields.id", &config.trade_fields.id},
        {"trade_fields.price", &config.trade_fields.price},
        {"trade_fields.qty", &config.trade_fields.qty},
        {"trade_fields.time", &config.trade_fields.time},
        {"trade_fields.buyer_maker", &config.trade_fields.buyer_maker},
    };
    for (size_t i = 0; i < std::size(fields); ++i) {
      for (size_t j = 0; j < i; ++j) {
        if (!fields[i].second->empty() && *fields[i].second == *fields[j].second) {
          // Blame whichever of the two the file set, preferring the later one.
          const char* blamed = marks_.contains(fields[i].first) || !marks_.contains(fields[j].first)
                                   ? fields[i].first
                                   : fields[j].first;
          const char* other = blamed == fields[i].first ? fields[j].first : fields[i].first;
          return Error(MarkOf(blamed), blamed,
                       Quote(*fields[i].second) + " is also " + other + "; names must differ");
        }
      }
    }
    return std::nullopt;
  }

  std::string_view name_;
  const Environment& env_;
  std::map<std::string, YAML::Mark> marks_;  // where the file set each key
};

}  // namespace

Config::Config() {
  for (const KeySpec& key : Keys()) key.set_default(this);
}

Environment ProcessEnvironment() {
  return [](std::string_view name) -> std::optional<std::string> {
    const char* value = std::getenv(std::string(name).c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

ConfigResult LoadConfigString(std::string_view yaml, std::string_view name,
                              const Environment& env) {
  // The src/app boundary: nothing yaml-cpp (or an allocation) throws gets past here.
  try {
    return Loader(name, env).Load(yaml);
  } catch (const YAML::Exception& e) {
    return ConfigError{Position(name, e.mark) + "invalid YAML: " + e.msg};
  } catch (const std::exception& e) {
    return ConfigError{std::string(name) + ": " + e.what()};
  }
}

ConfigResult LoadConfigFile(const std::string& path, const Environment& env) {
  std::string text;
  try {
    std::ifstream in(path, std::ios::binary);
    if (!in) return ConfigError{path + ": cannot open the config file"};
    std::ostringstream buffer;
    buffer << in.rdbuf();
    if (in.bad()) return ConfigError{path + ": cannot read the config file"};
    text = std::move(buffer).str();
  } catch (const std::exception& e) {
    return ConfigError{path + ": cannot read the config file: " + e.what()};
  }
  return LoadConfigString(text, path, env);
}

std::vector<std::string> ChangedKeys(const Config& a, const Config& b) {
  std::vector<std::string> changed;
  for (const KeySpec& key : Keys()) {
    if (!key.equal(a, b)) changed.emplace_back(key.path);
  }
  return changed;
}

std::vector<std::string> RestartOnlyChanges(const Config& running, const Config& next) {
  std::vector<std::string> changed;
  for (const KeySpec& key : Keys()) {
    if (key.reload == Reload::kRestart && !key.equal(running, next)) {
      changed.emplace_back(key.path);
    }
  }
  return changed;
}

void ApplyReloadable(const Config& next, Config* running) {
  for (const KeySpec& key : Keys()) {
    if (key.reload == Reload::kSighup) key.copy(next, running);
  }
}

std::string DescribeConfig(const Config& config) {
  std::string out;
  for (const KeySpec& key : Keys()) {
    std::string value = key.show(config);
    if (key.secret && value != "\"\"") value = "<redacted>";
    out += (out.empty() ? "" : " ") + std::string(key.path) + "=" + value;
  }
  return out;
}

std::vector<ConfigKeyInfo> ConfigKeys() {
  const Config defaults;
  std::vector<ConfigKeyInfo> infos;
  for (const KeySpec& key : Keys()) {
    infos.push_back(ConfigKeyInfo{key.path, key.type, key.show(defaults),
                                  key.reload == Reload::kSighup, key.env, key.help});
  }
  return infos;
}

}  // namespace klined
