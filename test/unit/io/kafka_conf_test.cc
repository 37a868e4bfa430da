// Which kafka.properties reach the handles other than the consumer (the dead-letter producer,
// the startup probe): the connection and security ones, not the consumer's own.
#include "io/kafka/kafka_conf.h"

#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <string>

namespace klined {
namespace {

struct ConfFree {
  void operator()(rd_kafka_conf_t* c) const { rd_kafka_conf_destroy(c); }
};
using Conf = std::unique_ptr<rd_kafka_conf_t, ConfFree>;

std::string Get(rd_kafka_conf_t* conf, const char* name) {
  char buf[512];
  size_t size = sizeof buf;
  if (rd_kafka_conf_get(conf, name, buf, &size) != RD_KAFKA_CONF_OK) return "<unknown>";
  return buf;
}

// A SASL/TLS deployment's properties, as kafka.properties would hold them, plus consumer ones.
const std::map<std::string, std::string> kSecured = {
    {"security.protocol", "sasl_ssl"},
    {"sasl.mechanism", "SCRAM-SHA-512"},
    {"sasl.username", "klined"},
    {"sasl.password", "s3cret"},
    {"ssl.ca.location", "/etc/ssl/certs/ca-certificates.crt"},
    {"ssl.endpoint.identification.algorithm", "https"},
    {"enable.ssl.certificate.verification", "true"},
    {"socket.timeout.ms", "12345"},
    {"socket.keepalive.enable", "true"},
    {"broker.address.family", "v4"},
    {"client.id", "klined-eu-1"},
    {"reconnect.backoff.max.ms", "7000"},
    {"api.version.request.timeout.ms", "6000"},
    {"connections.max.idle.ms", "300000"},
    {"session.timeout.ms", "6000"},
    {"heartbeat.interval.ms", "500"},
    {"fetch.max.bytes", "1048576"},
    {"partition.assignment.strategy", "roundrobin"},
};

}  // namespace

TEST_CASE("kafka conf: connection-level properties") {
  for (const char* name :
       {"security.protocol", "sasl.mechanism", "sasl.username", "sasl.password",
        "sasl.oauthbearer.config", "ssl.ca.location", "ssl.key.password", "ssl.certificate.pem",
        "socket.timeout.ms", "broker.version.fallback", "client.id", "client.rack",
        "reconnect.backoff.ms", "api.version.request", "connections.max.idle.ms",
        "enable.ssl.certificate.verification", "enable.sasl.oauthbearer.unsecure.jwt"}) {
    CHECK_MESSAGE(IsConnectionProperty(name), std::string(name));
  }
  for (const char* name : {"session.timeout.ms", "heartbeat.interval.ms", "group.instance.id",
                           "fetch.max.bytes", "partition.assignment.strategy", "linger.ms",
                           "statistics.interval.ms", "debug", "isolation.level"}) {
    CHECK_MESSAGE(!IsConnectionProperty(name), std::string(name));
  }
}

TEST_CASE("kafka conf: the dead-letter producer gets the consumer's security settings") {
  std::string error;
  Conf conf(NewDeadLetterConf("k1:9093,k2:9093", kSecured, &error));
  REQUIRE_MESSAGE(conf != nullptr, error);
  CHECK(Get(conf.get(), "bootstrap.servers") == "k1:9093,k2:9093");
  CHECK(Get(conf.get(), "linger.ms") == "20");
  for (const auto& [name, value] : kSecured) {
    CAPTURE(name);
    if (!IsConnectionProperty(name)) continue;
    if (name == "sasl.password") continue;  // write-only: librdkafka shows it as ***
    CHECK(Get(conf.get(), name.c_str()) == value);
  }
  // The consumer's own settings stay with the consumer (a producer warns about them).
  CHECK(Get(conf.get(), "session.timeout.ms") == "45000");
  CHECK(Get(conf.get(), "partition.assignment.strategy") == "range,roundrobin");
}

TEST_CASE("kafka conf: the startup probe's client gets the same; errors name the property") {
  std::string error;
  Conf conf(NewClientConf("k1:9093", kSecured, &error));
  REQUIRE_MESSAGE(conf != nullptr, error);
  CHECK(Get(conf.get(), "security.protocol") == "sasl_ssl");
  CHECK(Get(conf.get(), "sasl.username") == "klined");
  CHECK(Get(conf.get(), "client.id") == "klined-eu-1");
  CHECK(Get(conf.get(), "session.timeout.ms") == "45000");

  Conf bad(NewClientConf("k1:9093", {{"security.protocol", "carrier-pigeon"}}, &error));
  CHECK(bad == nullptr);
  CHECK(error.rfind("kafka property security.protocol: ", 0) == 0);
}

}  // namespace klined
