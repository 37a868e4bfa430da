#include "app/conn_options.h"

#include <algorithm>

namespace klined {

RedisOptions RedisOptionsFrom(const Config& c, int command_timeout_ms) {
  RedisOptions o;
  o.address = c.redis.address;
  o.user = c.redis.user;
  o.password = c.redis.password;
  o.connect_timeout_ms = static_cast<int>(c.redis.connect_timeout_ms);
  o.command_timeout_ms = command_timeout_ms;
  return o;
}

cluster::TopologyOptions TopologyOptionsFrom(const Config& c, int command_timeout_ms) {
  cluster::TopologyOptions o;
  o.cluster = c.redis.cluster;
  o.node = RedisOptionsFrom(c, command_timeout_ms);
  std::string_view rest = c.redis.address;
  while (!rest.empty()) {
    const size_t comma = o.cluster ? rest.find(',') : std::string_view::npos;
    std::string_view seed = rest.substr(0, comma);
    while (!seed.empty() && seed.front() == ' ') seed.remove_prefix(1);
    while (!seed.empty() && seed.back() == ' ') seed.remove_suffix(1);
    if (!seed.empty()) o.seeds.emplace_back(seed);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
  }
  o.marker_stem = c.redis.key_prefix + ":wait";
  return o;
}

MysqlOptions MysqlOptionsFrom(const Config& c) {
  MysqlOptions o;
  o.host = c.mysql.host;
  o.port = c.mysql.port;
  o.user = c.mysql.user;
  o.password = c.mysql.password;
  o.database = c.mysql.database;
  switch (c.mysql.ssl_mode) {
    case MysqlSslMode::kDisabled:
      o.tls = MysqlTlsMode::kDisabled;
      break;
    case MysqlSslMode::kPreferred:
      o.tls = MysqlTlsMode::kPreferred;
      break;
    case MysqlSslMode::kRequired:
      o.tls = MysqlTlsMode::kRequired;
      break;
    case MysqlSslMode::kVerifyCa:
      o.tls = MysqlTlsMode::kVerifyCa;
      break;
    case MysqlSslMode::kVerifyIdentity:
      o.tls = MysqlTlsMode::kVerifyIdentity;
      break;
  }
  o.tls_ca = c.mysql.ssl_ca;
  return o;
}

api::ApiServerOptions ApiOptionsFrom(const Config& c) {
  api::ApiServerOptions o;
  o.listen = c.api.listen;
  o.threads = static_cast<int>(c.api.threads);
  o.max_connections = c.api.max_connections;
  o.idle_timeout_ms = c.api.idle_timeout_ms;
  o.symbols_refresh_ms = c.api.symbols_refresh_ms;
  // A reply waits on at most one Redis round trip: a short timeout answers 503 quickly.
  o.topology = TopologyOptionsFrom(c, 2000);
  o.mysql = MysqlOptionsFrom(c);
  o.mysql.read_timeout_s = o.mysql.write_timeout_s =
      static_cast<int>((c.api.mysql_timeout_ms + 999) / 1000);
  o.keys = KeyLayout(c.redis.key_prefix, c.redis.ticker_prefix);
  o.handler.intervals = c.intervals;
  o.handler.time_zone = c.time_zone;
  o.handler.quote_assets = c.api.quote_assets;
  o.handler.weight_per_minute = c.api.weight_per_minute;
  o.handler.web_root = c.api.web_root;
  o.ws.max_streams = static_cast<size_t>(c.api.ws_max_streams);
  o.ws.send_queue_bytes = static_cast<size_t>(c.api.ws_send_queue_bytes);
  o.ws.messages_per_second = static_cast<int>(c.api.ws_messages_per_second);
  o.cache.max_bytes = static_cast<size_t>(c.api.cache_bytes);
  // Every row an entry holds must stay in Redis (so each change of it is published): at most
  // the history limit, and at most a reply's 1000.
  o.cache.rows = static_cast<size_t>(std::clamp<int64_t>(c.redis.history_limit, 1, 1000));
  o.cache.page_ttl_ms = c.api.cache_page_ttl_ms;
  o.watch_ttl_ms = c.api.watch_ttl_ms;
  o.cache.time_zone = c.time_zone;
  return o;
}

}  // namespace klined
