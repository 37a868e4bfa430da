// Smoke tests of the integration fixtures themselves (test/support/): each proves
// a fixture starts a real component, that the component does what later tests
// rely on, and that it comes back after a stop. If one of these fails, every
// integration test built on that fixture is suspect.

#include <doctest/doctest.h>
#include <librdkafka/rdkafka.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <string>
#include <thread>

#include "kafka_broker.h"
#include "mariadb_server.h"
#include "redis_server.h"
#include "subprocess.h"
#include "temp_dir.h"

namespace kt = klined::test;
using std::chrono::milliseconds;
using std::chrono::seconds;

TEST_CASE("TempDir and FreePort: a fresh directory, removed afterwards; a bindable port") {
  std::filesystem::path p;
  {
    kt::TempDir dir;
    p = dir.path();
    CHECK(std::filesystem::is_directory(p));
    kt::WriteFile(dir / "f", "x");
    CHECK(kt::ReadFile(dir / "f") == "x");
  }
  if (!kt::KeepTemporaryFiles()) CHECK_FALSE(std::filesystem::exists(p));
  int port = kt::FreePort();
  CHECK(port > 0);
  CHECK(port < 65536);
}

TEST_CASE("Subprocess: output capture, line wait, stop/continue, exit status, kill on scope exit") {
  kt::TempDir dir;
  SUBCASE("exit code and captured output") {
    kt::Subprocess p("sh", {"-c", "echo READY=1; echo oops >&2; exit 3"},
                     {.log_dir = dir.path(), .name = "sh", .env = {}, .cwd = {}});
    auto line = p.WaitForLine("READY=", seconds(5));
    REQUIRE(line);
    CHECK(*line == "READY=1");
    auto st = p.Wait(seconds(5));
    REQUIRE(st);
    CHECK(st->Exited());
    CHECK(st->Code() == 3);
    CHECK(p.Stderr() == "oops\n");
  }
  SUBCASE("environment is passed through and overridden") {
    kt::Subprocess p("sh", {"-c", "echo V=$KLINED_SMOKE"},
                     {.log_dir = dir.path(), .name = "env", .env = {"KLINED_SMOKE=42"}, .cwd = {}});
    auto line = p.WaitForLine("V=", seconds(5));
    REQUIRE(line);
    CHECK(*line == "V=42");
  }
  SUBCASE("a line that never comes times out; SIGSTOP/SIGCONT; SIGTERM") {
    kt::Subprocess p("sleep", {"30"},
                     {.log_dir = dir.path(), .name = "sleep", .env = {}, .cwd = {}});
    CHECK_FALSE(p.WaitForLine("NEVER", milliseconds(50)));
    p.Pause();
    CHECK_FALSE(p.Wait(milliseconds(50)));
    p.Resume();
    CHECK(p.Running());
    auto st = p.Stop(seconds(5));
    CHECK(st.Signaled());
    CHECK(st.Signal() == SIGTERM);
  }
  SUBCASE("the whole process group dies with the object") {
    pid_t grandchild = 0;
    {
      kt::Subprocess p("sh", {"-c", "sleep 30 & echo CHILD=$!; wait"},
                       {.log_dir = dir.path(), .name = "group", .env = {}, .cwd = {}});
      auto line = p.WaitForLine("CHILD=", seconds(5));
      REQUIRE(line);
      grandchild = std::stoi(line->substr(6));
      CHECK(kill(grandchild, 0) == 0);
    }
    // The grandchild was re-parented (to init or a subreaper); give it a moment to be reaped.
    // A zombie counts as gone: the reaper (PID 1 in a container) may be slow.
    auto dead = [](pid_t pid) {
      std::string stat = kt::ReadFile("/proc/" + std::to_string(pid) + "/stat");
      auto paren = stat.rfind(')');
      return stat.empty() || (paren != std::string::npos && paren + 2 < stat.size() &&
                              (stat[paren + 2] == 'Z' || stat[paren + 2] == 'X'));
    };
    bool gone = false;
    for (int i = 0; i < 200 && !gone; ++i) {
      gone = dead(grandchild);
      if (!gone) std::this_thread::sleep_for(milliseconds(10));
    }
    CHECK(gone);
  }
  SUBCASE("a missing binary throws") {
    CHECK_THROWS(kt::Subprocess("klined-no-such-binary", {},
                                {.log_dir = dir.path(), .name = {}, .env = {}, .cwd = {}}));
  }
}

TEST_CASE("RedisServer: SET/GET, and AOF data survives Restart() on the same port") {
  kt::RedisServer redis({.appendonly = true, .extra_config = {}});
  const int port = redis.port();
  {
    auto c = redis.Connect();
    auto r = c.Command({"SET", "kline:{BTCUSDT}:1m", "{\"x\":false}"});
    REQUIRE(r->type == REDIS_REPLY_STATUS);
    CHECK(c.Get("kline:{BTCUSDT}:1m") == "{\"x\":false}");
    CHECK(c.Integer({"ZADD", "kline:{BTCUSDT}:1m:hist", "1000", "a", "2000", "b"}) == 2);
    CHECK_FALSE(c.Get("missing"));
  }
  redis.Restart();
  CHECK(redis.port() == port);
  auto c = redis.Connect();
  CHECK(c.Get("kline:{BTCUSDT}:1m") == "{\"x\":false}");
  CHECK(c.Strings({"ZRANGE", "kline:{BTCUSDT}:1m:hist", "0", "-1"}) ==
        std::vector<std::string>{"a", "b"});

  // SIGKILL with appendfsync always: acknowledged writes are on disk.
  CHECK(c.Integer({"SADD", "kline:symbols", "BTCUSDT"}) == 1);
  redis.process().Kill();
  redis.process().Wait(seconds(5));
  redis.Start();
  CHECK(redis.Connect().Strings({"SMEMBERS", "kline:symbols"}) ==
        std::vector<std::string>{"BTCUSDT"});
}

TEST_CASE("RedisServer without persistence starts empty after a restart") {
  kt::RedisServer redis;
  redis.Connect().Command({"SET", "k", "v"});
  redis.Restart();
  CHECK_FALSE(redis.Connect().Get("k"));
}

TEST_CASE("MariaDbServer: klined user, create/insert/select, data survives Stop()/Start()") {
  kt::MariaDbServer db;
  {
    auto conn = db.Connect();  // as klined@127.0.0.1 with a password, over TCP
    kt::RunQuery(conn.get(),
                 "CREATE TABLE t (id BIGINT PRIMARY KEY, v DECIMAL(38,18) NOT NULL) ENGINE=InnoDB;"
                 "INSERT INTO t VALUES (1, '43210.5'), (2, '0.000000000000000001')");
    auto who = kt::RunQuery(conn.get(), "SELECT CURRENT_USER()");
    REQUIRE(who.size() == 1);
    CHECK(who[0][0] == "klined@127.0.0.1");
  }
  auto rows = db.Query("SELECT id, v, NULL FROM t ORDER BY id");
  REQUIRE(rows.size() == 2);
  CHECK(rows[0] == kt::Row{"1", "43210.500000000000000000", "NULL"});
  CHECK(rows[1] == kt::Row{"2", "0.000000000000000001", "NULL"});

  const int port = db.port();
  db.Stop();
  CHECK_THROWS(db.Connect());  // down means down
  db.Start();
  CHECK(db.port() == port);
  CHECK(db.Query("SELECT COUNT(*) FROM t") == std::vector<kt::Row>{{"2"}});

  // A crash keeps committed rows too.
  db.Query("INSERT INTO t VALUES (3, '1')");
  db.Kill();
  db.Start();
  CHECK(db.Query("SELECT COUNT(*) FROM t") == std::vector<kt::Row>{{"3"}});

  // The klined user has no rights outside its database (grants are real).
  auto conn = db.Connect();
  CHECK_THROWS(kt::RunQuery(conn.get(), "SELECT COUNT(*) FROM mysql.user"));
}

namespace {

// session.timeout.ms matters on the mock (librdkafka 2.0.2): a group's first join
// waits a fixed 3 s, and a member whose session is shorter than ~4 s expires while
// it waits, so the group never forms. After a member leaves, the next join waits
// session.timeout.ms - 1 s. 6 s is safe on a loaded 2-core box.
kt::RdKafkaPtr GroupConsumer(const std::string& bootstrap, const std::string& group,
                             const std::string& topic) {
  rd_kafka_conf_t* conf = kt::MakeKafkaConf(bootstrap, {{"group.id", group},
                                                        {"auto.offset.reset", "earliest"},
                                                        {"enable.auto.commit", "false"},
                                                        {"session.timeout.ms", "6000"},
                                                        {"heartbeat.interval.ms", "500"}});
  char err[512];
  kt::RdKafkaPtr rk(rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err)));
  REQUIRE_MESSAGE(rk, err);
  rd_kafka_poll_set_consumer(rk.get());
  rd_kafka_topic_partition_list_t* sub = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(sub, topic.c_str(), RD_KAFKA_PARTITION_UA);
  REQUIRE(rd_kafka_subscribe(rk.get(), sub) == RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_topic_partition_list_destroy(sub);
  return rk;
}

// Polls until `want` more messages arrived or `timeout`; returns their values.
std::vector<std::string> Poll(rd_kafka_t* rk, size_t want, milliseconds timeout) {
  std::vector<std::string> got;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (got.size() < want && std::chrono::steady_clock::now() < deadline) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 100);
    if (!m) continue;
    if (!m->err) got.emplace_back(static_cast<const char*>(m->payload), m->len);
    rd_kafka_message_destroy(m);
  }
  return got;
}

int64_t CommittedTotal(rd_kafka_t* rk, const std::string& topic, int partitions) {
  rd_kafka_topic_partition_list_t* l = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p) rd_kafka_topic_partition_list_add(l, topic.c_str(), p);
  int64_t total = 0;
  if (rd_kafka_committed(rk, l, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    for (int i = 0; i < l->cnt; ++i) total += l->elems[i].offset > 0 ? l->elems[i].offset : 0;
  } else {
    total = -1;
  }
  rd_kafka_topic_partition_list_destroy(l);
  return total;
}

}  // namespace

TEST_CASE(
    "KafkaBroker: consumer group reads 1000 messages; committed offsets resume a new member") {
  const std::string topic = "trades";
  kt::KafkaBroker broker({.brokers = 1, .topics = {{topic, 4}}});
  REQUIRE_FALSE(broker.bootstrap().empty());

  {
    kt::Producer producer(broker.bootstrap());
    for (int i = 0; i < 1000; ++i) {
      producer.Produce(topic, "SYM" + std::to_string(i % 17), std::to_string(i));
    }
    producer.Produce(topic, std::nullopt, "headered", 2, {{"klined-reject-reason", "bad_json"}});
    producer.Flush();
  }

  // Group-less read of everything, headers included.
  auto all = kt::ConsumeAll(broker.bootstrap(), topic, seconds(10));
  REQUIRE(all.size() == 1001);
  std::set<int32_t> partitions;
  for (const auto& m : all) partitions.insert(m.partition);
  CHECK(partitions.size() == 4);  // keys spread over all partitions
  auto h = std::find_if(all.begin(), all.end(), [](auto& m) { return m.value == "headered"; });
  REQUIRE(h != all.end());
  CHECK(h->partition == 2);
  CHECK_FALSE(h->key);
  CHECK(h->Header("klined-reject-reason") == "bad_json");

  // Member 1 of group g reads 400, commits synchronously, leaves.
  std::set<std::string> seen;
  {
    auto c1 = GroupConsumer(broker.bootstrap(), "g", topic);
    auto got = Poll(c1.get(), 400, seconds(20));
    REQUIRE(got.size() == 400);
    seen.insert(got.begin(), got.end());
    REQUIRE(rd_kafka_commit(c1.get(), nullptr, 0) == RD_KAFKA_RESP_ERR_NO_ERROR);
    CHECK(CommittedTotal(c1.get(), topic, 4) == 400);
    rd_kafka_consumer_close(c1.get());
  }
  // Member 2 of the same group resumes at the committed offsets: exactly the other 601.
  {
    auto c2 = GroupConsumer(broker.bootstrap(), "g", topic);
    auto got = Poll(c2.get(), 601, seconds(20));
    CHECK(got.size() == 601);
    for (const auto& v : got) CHECK_MESSAGE(seen.insert(v).second, "re-delivered: " << v);
    CHECK(Poll(c2.get(), 1, milliseconds(300)).empty());  // nothing beyond the end
    REQUIRE(rd_kafka_commit(c2.get(), nullptr, 0) == RD_KAFKA_RESP_ERR_NO_ERROR);
    CHECK(CommittedTotal(c2.get(), topic, 4) == 1001);
    rd_kafka_consumer_close(c2.get());
  }
  CHECK(seen.size() == 1001);

  // SIGTERM ends the broker with exit code 0.
  auto st = broker.process().Stop(seconds(10));
  CHECK(st.Exited());
  CHECK(st.Code() == 0);
}

TEST_CASE("klined-testbroker: --help, bad arguments, pre-created topics, no side effects") {
  kt::TempDir dir;
  {
    kt::Subprocess help(kt::TestBrokerPath(), {"--help"},
                        {.log_dir = dir.path(), .name = "help", .env = {}, .cwd = {}});
    auto st = help.Wait(seconds(5));
    REQUIRE(st);
    CHECK(st->Code() == 0);
    CHECK(help.Stdout().find("--topic NAME:PARTITIONS") != std::string::npos);
  }
  {
    kt::Subprocess bad(kt::TestBrokerPath(), {"--topic", "x:0"},
                       {.log_dir = dir.path(), .name = "bad", .env = {}, .cwd = {}});
    auto st = bad.Wait(seconds(5));
    REQUIRE(st);
    CHECK(st->Code() == 1);
    CHECK(bad.Stdout().empty());  // never a BOOTSTRAP line on failure
  }
  kt::KafkaBroker broker({.brokers = 3, .topics = {{"t1", 1}, {"t7", 7}}});
  CHECK(std::count(broker.bootstrap().begin(), broker.bootstrap().end(), ',') == 2);
  // A group-less read of a missing topic returns nothing and does not create it.
  CHECK(kt::ConsumeAll(broker.bootstrap(), "absent", milliseconds(300)).empty());
  {
    kt::Producer producer(broker.bootstrap());
    for (int p = 0; p < 7; ++p) producer.Produce("t7", std::nullopt, std::to_string(p), p);
    producer.Flush();
    const rd_kafka_metadata_t* md = nullptr;
    REQUIRE(rd_kafka_metadata(producer.handle(), 1, nullptr, &md, 5000) ==
            RD_KAFKA_RESP_ERR_NO_ERROR);
    std::set<std::string> topics;
    for (int i = 0; i < md->topic_cnt; ++i) topics.insert(md->topics[i].topic);
    rd_kafka_metadata_destroy(md);
    CHECK(topics == std::set<std::string>{"t1", "t7"});
  }
  auto msgs = kt::ConsumeAll(broker.bootstrap(), "t7", seconds(5));
  REQUIRE(msgs.size() == 7);
  for (int p = 0; p < 7; ++p) CHECK(msgs[p].partition == p);
}
