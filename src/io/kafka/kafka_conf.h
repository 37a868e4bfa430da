// librdkafka configuration shared by klined's Kafka client handles: the consumer, the
// dead-letter producer (src/io/kafka/consumer.cc) and the startup probe (src/app/main.cc).
//
// DESIGN
// kafka.properties is passed through to the consumer as given. The other handles reach the
// same brokers, so they need the same connection and security settings (TLS, SASL, socket
// and broker-version options), but not the consumer's own (group, fetch, session), which a
// producer rejects or warns about. IsConnectionProperty is the one place that decides which
// pass-through properties are connection-level.
#pragma once

#include <librdkafka/rdkafka.h>

#include <map>
#include <string>
#include <string_view>

namespace klined {

// rd_kafka_conf_set, with a refusal as *error ("kafka property NAME: why", never the value).
bool SetProperty(rd_kafka_conf_t* conf, const std::string& name, const std::string& value,
                 std::string* error);

// True for a librdkafka property about reaching and authenticating with the brokers:
// security.*, sasl.*, ssl.*, socket.*, broker.*, client.*, reconnect.backoff.*, api.version.*,
// connections.max.idle.ms, enable.ssl.certificate.verification,
// enable.sasl.oauthbearer.unsecure.jwt.
bool IsConnectionProperty(std::string_view name);

// A configuration for a handle other than the consumer: bootstrap.servers = brokers plus
// every connection-level entry of `properties`. Null with *error (naming the property, never
// its value) if librdkafka refuses one. The caller owns the result (rd_kafka_new takes it).
rd_kafka_conf_t* NewClientConf(const std::string& brokers,
                               const std::map<std::string, std::string>& properties,
                               std::string* error);

// The dead-letter producer's configuration: NewClientConf plus its batching (linger.ms).
rd_kafka_conf_t* NewDeadLetterConf(const std::string& brokers,
                                   const std::map<std::string, std::string>& properties,
                                   std::string* error);

}  // namespace klined
