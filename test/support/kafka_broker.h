// Kafka for integration tests: klined-testbroker (librdkafka's mock cluster in
// its own process) plus a producer and a group-less reader built on librdkafka.
#pragma once

#include <librdkafka/rdkafka.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "subprocess.h"
#include "temp_dir.h"

namespace klined::test {

// $KLINED_BUILD (default "build") + /src/tools/testbroker/klined-testbroker.
std::string TestBrokerPath();

struct KafkaBrokerOptions {
  int brokers = 1;
  // name -> partition count; created before bootstrap() is known. Topics not
  // listed are auto-created by the mock with 4 partitions on first use.
  std::vector<std::pair<std::string, int>> topics;
};

class KafkaBroker {
 public:
  // Starts klined-testbroker and waits for its BOOTSTRAP line (throws on failure).
  explicit KafkaBroker(KafkaBrokerOptions options = {});

  const std::string& bootstrap() const { return bootstrap_; }  // "host:port,..."
  Subprocess& process() { return *proc_; }
  // Ends the cluster and everything in it (messages, groups, offsets).
  void Stop();

 private:
  TempDir dir_{"klined-kafka"};
  std::string bootstrap_;
  std::optional<Subprocess> proc_;
};

using KafkaHeaders = std::vector<std::pair<std::string, std::string>>;

struct KafkaMessage {
  std::string topic;
  int32_t partition = -1;
  int64_t offset = -1;
  std::optional<std::string> key;  // nullopt = no key
  std::string value;
  KafkaHeaders headers;
  // First header named `name`, if any.
  std::optional<std::string> Header(const std::string& name) const;
};

struct RdKafkaDestroy {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
using RdKafkaPtr = std::unique_ptr<rd_kafka_t, RdKafkaDestroy>;

// Builds a conf from bootstrap + properties; throws on a bad property.
rd_kafka_conf_t* MakeKafkaConf(const std::string& bootstrap,
                               const std::map<std::string, std::string>& properties);

// A synchronous-enough producer: Produce() enqueues, Flush() waits for every
// delivery report and throws if any delivery failed.
class Producer {
 public:
  explicit Producer(const std::string& bootstrap,
                    const std::map<std::string, std::string>& properties = {});
  ~Producer();

  // partition = RD_KAFKA_PARTITION_UA uses the partitioner (murmur2 of the key,
  // like the Java client, so keyed messages land like a real producer's). timestamp_ms: the
  // message's CreateTime (0 = now).
  void Produce(const std::string& topic, const std::optional<std::string>& key,
               const std::string& value, int32_t partition = RD_KAFKA_PARTITION_UA,
               const KafkaHeaders& headers = {}, int64_t timestamp_ms = 0);
  void Flush(milliseconds timeout = milliseconds(10000));
  rd_kafka_t* handle() const { return rk_.get(); }

 private:
  static void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* msg, void* opaque);
  RdKafkaPtr rk_;
  int failed_ = 0;
  std::string first_error_;
};

// Reads `topic` from the beginning of every partition without a consumer group
// (manual assign, no commits) until each partition reaches the high watermark it
// had when reading started and at least `min_messages` were read, or `timeout`
// passes. Waits for the topic to exist (e.g. a DLQ klined has yet to create).
// Messages come back ordered by (partition, offset).
std::vector<KafkaMessage> ConsumeAll(const std::string& bootstrap, const std::string& topic,
                                     milliseconds timeout = milliseconds(10000),
                                     size_t min_messages = 0);

// For each of `partitions` partitions of `topic`: (offset committed by `group`, high
// watermark); -1 for an offset never committed. Joins no group and commits nothing.
std::vector<std::pair<int64_t, int64_t>> CommittedAndEnd(const std::string& bootstrap,
                                                         const std::string& group,
                                                         const std::string& topic, int partitions);

// Converts a consumed librdkafka message (copies key, value, headers).
KafkaMessage ToKafkaMessage(const rd_kafka_message_t* m);

}  // namespace klined::test
