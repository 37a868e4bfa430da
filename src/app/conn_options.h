// The connection options every Redis and MySQL client of the daemon is built from, mapped
// from the config in one place: the shards, the timer jobs, the persistence worker and the
// startup probes all connect alike (address, ACL user, password, TLS).
#pragma once

#include "app/config.h"
#include "io/mysql/mysql_conn.h"
#include "io/redis/redis_conn.h"

namespace klined {

RedisOptions RedisOptionsFrom(const Config& config, int command_timeout_ms);
MysqlOptions MysqlOptionsFrom(const Config& config);

}  // namespace klined
