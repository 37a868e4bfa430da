#include "kafka_broker.h"

#include <algorithm>
#include <cstdlib>
#include <stdexcept>
#include <thread>

namespace klined::test {

std::string TestBrokerPath() {
  const char* build = std::getenv("KLINED_BUILD");
  std::filesystem::path p = std::filesystem::path(build && *build ? build : "build") / "src" /
                            "tools" / "testbroker" / "klined-testbroker";
  return std::filesystem::absolute(p).string();
}

KafkaBroker::KafkaBroker(KafkaBrokerOptions options) {
  std::vector<std::string> args = {"--brokers", std::to_string(options.brokers)};
  for (const auto& [name, partitions] : options.topics) {
    args.push_back("--topic");
    args.push_back(name + ":" + std::to_string(partitions));
  }
  proc_.emplace(
      TestBrokerPath(), std::move(args),
      SubprocessOptions{.log_dir = dir_.path(), .name = "testbroker", .env = {}, .cwd = {}});
  auto line = proc_->WaitForLine("BOOTSTRAP=", std::chrono::seconds(15));
  if (!line)
    throw std::runtime_error("klined-testbroker gave no BOOTSTRAP line:\n" + proc_->OutputTail());
  bootstrap_ = line->substr(std::string_view("BOOTSTRAP=").size());
}

void KafkaBroker::Stop() {
  if (proc_) proc_->Stop(std::chrono::seconds(10));
}

std::optional<std::string> KafkaMessage::Header(const std::string& name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return v;
  }
  return std::nullopt;
}

rd_kafka_conf_t* MakeKafkaConf(const std::string& bootstrap,
                               const std::map<std::string, std::string>& properties) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  auto set = [&](const std::string& k, const std::string& v) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof(err)) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      throw std::runtime_error("kafka property " + k + "=" + v + ": " + err);
    }
  };
  set("bootstrap.servers", bootstrap);
  set("broker.address.family", "v4");
  for (const auto& [k, v] : properties) set(k, v);
  return conf;
}

Producer::Producer(const std::string& bootstrap,
                   const std::map<std::string, std::string>& properties) {
  std::map<std::string, std::string> props = {{"linger.ms", "5"},
                                              {"partitioner", "murmur2_random"}};
  for (const auto& [k, v] : properties) props[k] = v;
  rd_kafka_conf_t* conf = MakeKafkaConf(bootstrap, props);
  rd_kafka_conf_set_dr_msg_cb(conf, &Producer::OnDelivery);
  rd_kafka_conf_set_opaque(conf, this);
  char err[512];
  rk_.reset(rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err)));
  if (!rk_) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error(std::string("rd_kafka_new(producer): ") + err);
  }
}

Producer::~Producer() {
  if (rk_) rd_kafka_flush(rk_.get(), 2000);
}

void Producer::OnDelivery(rd_kafka_t*, const rd_kafka_message_t* msg, void* opaque) {
  auto* self = static_cast<Producer*>(opaque);
  if (msg->err) {
    if (self->failed_++ == 0) self->first_error_ = rd_kafka_err2str(msg->err);
  }
}

void Producer::Produce(const std::string& topic, const std::optional<std::string>& key,
                       const std::string& value, int32_t partition, const KafkaHeaders& headers,
                       int64_t timestamp_ms) {
  rd_kafka_headers_t* hdrs = nullptr;
  if (!headers.empty()) {
    hdrs = rd_kafka_headers_new(headers.size());
    for (const auto& [k, v] : headers) {
      rd_kafka_header_add(hdrs, k.data(), static_cast<ssize_t>(k.size()), v.data(),
                          static_cast<ssize_t>(v.size()));
    }
  }
  // The RD_KAFKA_V_* macros cast their arguments unparenthesised: pass plain names.
  const void* key_data = key ? key->data() : nullptr;
  const size_t key_len = key ? key->size() : 0;
  void* value_data = const_cast<char*>(value.data());
  const size_t value_len = value.size();
  for (;;) {
    rd_kafka_resp_err_t e = rd_kafka_producev(
        rk_.get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(partition),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key_data, key_len),
        RD_KAFKA_V_VALUE(value_data, value_len), RD_KAFKA_V_HEADERS(hdrs),
        RD_KAFKA_V_TIMESTAMP(timestamp_ms), RD_KAFKA_V_END);
    if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(rk_.get(), 10);
      continue;
    }
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (hdrs) rd_kafka_headers_destroy(hdrs);  // ownership passes only on success
      throw std::runtime_error("produce to " + topic + ": " + rd_kafka_err2str(e));
    }
    break;
  }
  rd_kafka_poll(rk_.get(), 0);
}

void Producer::Flush(milliseconds timeout) {
  rd_kafka_resp_err_t e = rd_kafka_flush(rk_.get(), static_cast<int>(timeout.count()));
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    throw std::runtime_error(std::string("producer flush: ") + rd_kafka_err2str(e));
  }
  if (failed_ > 0) {
    int n = failed_;
    failed_ = 0;
    throw std::runtime_error(std::to_string(n) + " message(s) failed delivery: " + first_error_);
  }
}

KafkaMessage ToKafkaMessage(const rd_kafka_message_t* m) {
  KafkaMessage out;
  out.topic = rd_kafka_topic_name(m->rkt);
  out.partition = m->partition;
  out.offset = m->offset;
  if (m->key) out.key = std::string(static_cast<const char*>(m->key), m->key_len);
  if (m->payload) out.value.assign(static_cast<const char*>(m->payload), m->len);
  rd_kafka_headers_t* hdrs = nullptr;
  if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* name;
    const void* val;
    size_t size;
    for (size_t i = 0;
         rd_kafka_header_get_all(hdrs, i, &name, &val, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i) {
      out.headers.emplace_back(name, val ? std::string(static_cast<const char*>(val), size) : "");
    }
  }
  return out;
}

std::vector<KafkaMessage> ConsumeAll(const std::string& bootstrap, const std::string& topic,
                                     milliseconds timeout, size_t min_messages) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  // group.id only because the high-level consumer API wants one: partitions are
  // assigned by hand, nothing joins a group and nothing is committed.
  rd_kafka_conf_t* conf = MakeKafkaConf(bootstrap, {{"group.id", "klined-test-consumeall"},
                                                    {"enable.auto.commit", "false"},
                                                    {"enable.auto.offset.store", "false"},
                                                    {"enable.partition.eof", "false"},
                                                    {"auto.offset.reset", "earliest"},
                                                    // The mock long-polls the first fetch
                                                    // for the full wait: keep it short.
                                                    {"fetch.wait.max.ms", "20"}});
  char err[512];
  RdKafkaPtr rk(rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err)));
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error(std::string("rd_kafka_new(consumer): ") + err);
  }

  // Partition count from an all-topics metadata request: naming the topic in the
  // request would make the mock cluster auto-create it (it ignores
  // allow.auto.create.topics), and this reader must not create what it waits for.
  int partitions = 0;
  while (partitions == 0) {
    const rd_kafka_metadata_t* md = nullptr;
    if (rd_kafka_metadata(rk.get(), 1, nullptr, &md, 2000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      for (int i = 0; i < md->topic_cnt; ++i) {
        if (topic == md->topics[i].topic && md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
          partitions = md->topics[i].partition_cnt;
        }
      }
      rd_kafka_metadata_destroy(md);
    }
    if (partitions == 0) {
      if (std::chrono::steady_clock::now() >= deadline) return {};
      std::this_thread::sleep_for(milliseconds(50));
    }
  }

  std::vector<int64_t> high(partitions, 0);
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p) {
    // Start at the low watermark as an absolute offset: a logical BEGINNING costs an
    // extra offset query that librdkafka may defer by 500 ms right after assign.
    int64_t lo = 0, hi = 0;
    rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset =
        rd_kafka_query_watermark_offsets(rk.get(), topic.c_str(), p, &lo, &hi, 5000) ==
                RD_KAFKA_RESP_ERR_NO_ERROR
            ? lo
            : RD_KAFKA_OFFSET_BEGINNING;
    high[p] = hi;
  }
  rd_kafka_assign(rk.get(), list);
  rd_kafka_topic_partition_list_destroy(list);

  std::vector<KafkaMessage> out;
  std::vector<int64_t> next(partitions, 0);  // next offset expected per partition
  auto done = [&] {
    if (out.size() < min_messages) return false;
    for (int p = 0; p < partitions; ++p) {
      if (next[p] < high[p]) return false;
    }
    return true;
  };
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk.get(), 100);
    if (!m) continue;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      out.push_back(ToKafkaMessage(m));
      if (m->partition >= 0 && m->partition < partitions) next[m->partition] = m->offset + 1;
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk.get());
  std::stable_sort(out.begin(), out.end(), [](const KafkaMessage& a, const KafkaMessage& b) {
    return a.partition != b.partition ? a.partition < b.partition : a.offset < b.offset;
  });
  return out;
}

std::vector<std::pair<int64_t, int64_t>> CommittedAndEnd(const std::string& bootstrap,
                                                         const std::string& group,
                                                         const std::string& topic, int partitions) {
  rd_kafka_conf_t* conf =
      MakeKafkaConf(bootstrap, {{"group.id", group}, {"enable.auto.commit", "false"}});
  char err[512];
  RdKafkaPtr rk(rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err)));
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error(std::string("rd_kafka_new(consumer): ") + err);
  }
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p) rd_kafka_topic_partition_list_add(list, topic.c_str(), p);
  const rd_kafka_resp_err_t e = rd_kafka_committed(rk.get(), list, 5000);
  std::vector<std::pair<int64_t, int64_t>> out;
  for (int p = 0; p < partitions; ++p) {
    int64_t lo = 0, hi = -1;
    (void)rd_kafka_query_watermark_offsets(rk.get(), topic.c_str(), p, &lo, &hi, 5000);
    const int64_t committed =
        e == RD_KAFKA_RESP_ERR_NO_ERROR && list->elems[p].offset >= 0 ? list->elems[p].offset : -1;
    out.emplace_back(committed, hi);
  }
  rd_kafka_topic_partition_list_destroy(list);
  rd_kafka_consumer_close(rk.get());
  return out;
}

}  // namespace klined::test
