// klinectl's pipeline step (src/tools/klinectl/stage.h): every item pushed is worked off
// once, Finish returns with any number of idle workers, a failing item stops the stage.
#include "tools/klinectl/stage.h"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <set>

using klined::klinectl::Stage;

TEST_CASE("stage: every item once, by any of its workers; Finish joins idle ones") {
  for (size_t threads : {1u, 2u, 4u}) {
    CAPTURE(threads);
    std::mutex mu;
    std::multiset<int> seen;
    std::atomic<size_t> max_worker{0};
    Stage<int> stage(2, threads, [&](int& item, size_t worker) {
      std::lock_guard lock(mu);
      seen.insert(item);
      if (worker > max_worker) max_worker = worker;
      return true;
    });
    for (int i = 0; i < 1000; ++i) REQUIRE(stage.Push(i));
    // Every worker idle, asleep on the empty queue: Finish wakes them all (it once woke one,
    // and a run with two MySQL writers hung in its dry run).
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    CHECK(stage.Finish());
    CHECK(seen.size() == 1000);
    CHECK(std::set<int>(seen.begin(), seen.end()).size() == 1000);
    CHECK(max_worker < threads);
  }
  // Nothing pushed at all.
  Stage<int> idle(2, 3, [](int&, size_t) { return true; });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(idle.Finish());
  CHECK(idle.Finish());  // a second call (the destructor's) is harmless
}

TEST_CASE("stage: a failing item stops it: Push and Finish report it") {
  std::atomic<int> worked{0};
  Stage<int> stage(4, 2, [&](int& item, size_t) {
    ++worked;
    return item != 10;
  });
  bool refused = false;
  for (int i = 0; i < 100000 && !refused; ++i) refused = !stage.Push(i);
  CHECK(refused);  // the queue is bounded (4): Push blocks until the failure is seen
  CHECK_FALSE(stage.Finish());
  CHECK(worked < 100000);
}
