#include "app/conn_options.h"

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

}  // namespace klined
