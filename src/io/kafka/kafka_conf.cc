#include "io/kafka/kafka_conf.h"

#include <array>

namespace klined {

bool SetProperty(rd_kafka_conf_t* conf, const std::string& name, const std::string& value,
                 std::string* error) {
  char err[512];
  if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
    *error = "kafka property " + name + ": " + err;
    return false;
  }
  return true;
}

bool IsConnectionProperty(std::string_view name) {
  static constexpr std::array<std::string_view, 8> kPrefixes = {
      "security.",          "sasl.",       "ssl.", "socket.", "broker.", "client.",
      "reconnect.backoff.", "api.version."};
  static constexpr std::array<std::string_view, 3> kNames = {
      "connections.max.idle.ms", "enable.ssl.certificate.verification",
      "enable.sasl.oauthbearer.unsecure.jwt"};
  for (std::string_view p : kPrefixes) {
    if (name.starts_with(p)) return true;
  }
  for (std::string_view n : kNames) {
    if (name == n) return true;
  }
  return false;
}

rd_kafka_conf_t* NewClientConf(const std::string& brokers,
                               const std::map<std::string, std::string>& properties,
                               std::string* error) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  bool ok = SetProperty(conf, "bootstrap.servers", brokers, error);
  for (const auto& [name, value] : properties) {
    if (ok && IsConnectionProperty(name)) ok = SetProperty(conf, name, value, error);
  }
  if (!ok) {
    rd_kafka_conf_destroy(conf);
    return nullptr;
  }
  return conf;
}

rd_kafka_conf_t* NewDeadLetterConf(const std::string& brokers,
                                   const std::map<std::string, std::string>& properties,
                                   std::string* error) {
  rd_kafka_conf_t* conf = NewClientConf(brokers, properties, error);
  if (conf != nullptr && !SetProperty(conf, "linger.ms", "20", error)) {
    rd_kafka_conf_destroy(conf);
    return nullptr;
  }
  return conf;
}

}  // namespace klined
