// UncommittedRounds: the consumer's offsets awaiting the shards' flushes, bounded.
#include <doctest/doctest.h>

#include <map>

#include "io/kafka/consumer.h"

namespace klined {

TEST_CASE("uncommitted rounds: offsets commit per round, latest per partition") {
  UncommittedRounds r;
  r.Add(1, {{0, 10}, {1, 5}});
  r.Add(2, {{0, 12}});
  r.Add(3, {{2, 7}});
  CHECK(r.TakeUpTo(2) == std::map<int32_t, int64_t>{{0, 12}, {1, 5}});
  CHECK(r.size() == 1);
  CHECK(r.TakeUpTo(2).empty());
  CHECK(r.TakeUpTo(3) == std::map<int32_t, int64_t>{{2, 7}});
}

TEST_CASE("uncommitted rounds: past the bound the oldest merge into the next, never commit early") {
  // A long Redis outage: rounds keep coming (even if every message is rejected), none commits.
  UncommittedRounds r(4);
  for (uint64_t seq = 1; seq <= 1000; ++seq) {
    r.Add(seq, {{static_cast<int32_t>(seq % 3), static_cast<int64_t>(seq * 10)}});
  }
  CHECK(r.size() == 4);
  // Nothing before round 997 can be committed alone any more: its offsets wait for 997.
  CHECK(r.TakeUpTo(996).empty());
  // Every partition's latest offset up to the round taken.
  CHECK(r.TakeUpTo(998) == std::map<int32_t, int64_t>{{0, 9960}, {1, 9970}, {2, 9980}});
  CHECK(r.TakeUpTo(1000) == std::map<int32_t, int64_t>{{0, 9990}, {1, 10000}});
  CHECK(r.size() == 0);
}

}  // namespace klined
