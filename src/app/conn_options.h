// The connection options every Redis and MySQL client of the daemon is built from, mapped
// from the config in one place: the shards, the timer jobs, the persistence worker and the
// startup probes all connect alike (address, ACL user, password, TLS).
#pragma once

#include "api/api_server.h"
#include "app/config.h"
#include "io/mysql/mysql_conn.h"
#include "io/redis/cluster/router.h"
#include "io/redis/redis_conn.h"

namespace klined {

RedisOptions RedisOptionsFrom(const Config& config, int command_timeout_ms);
MysqlOptions MysqlOptionsFrom(const Config& config);
// The Redis topology the shard stores route through: redis.address as the seed list
// (comma-separated in cluster mode), the WaitReplicas marker under redis.key_prefix.
cluster::TopologyOptions TopologyOptionsFrom(const Config& config, int command_timeout_ms);
// The market-data API server's options: its own Redis and MySQL clients (the MySQL read
// timeout from api.mysql_timeout_ms), limits, and what requests are validated against.
api::ApiServerOptions ApiOptionsFrom(const Config& config);

}  // namespace klined
