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
  return o;
}

}  // namespace klined
