# Thin front over meson. `make test` is what CI runs (.ci/run); `make demo` is the main job.
BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
FUZZ_BUILD ?= build-fuzz
MESON_OPTS ?=

.PHONY: all deps build test test-one-slot test-cluster unit asan tsan fuzz chaos chaos-cluster bench demo format clean

all: build

deps:
	./scripts/install-deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD) --buildtype=release --werror $(MESON_OPTS)

build: $(BUILD)/build.ninja
	ninja -C $(BUILD)

# Installs dependencies, builds with -Werror, runs every default suite (unit, fuzz smoke,
# integration). Prints each runner's closing line; exits non-zero on any failure.
test: deps
	./scripts/test.sh

unit: build
	$(BUILD)/test/unit_tests

# The write path's, jobs', tools' and API's integration cases with every Redis a one-node cluster
# (cluster-enabled, serving every slot): any script call, MULTI or multi-key command that
# touches more than one slot is refused, as a real cluster would (~8 min).
test-one-slot: deps build
	env KLINED_BUILD=$(BUILD) KLINED_TEST_ONE_NODE_CLUSTER=1 $(BUILD)/test/integration_tests \
	  --no-colors -tc='pipeline*,jobs*,persist*,exactly once*,poison*,retire*,redis loss*,recompute*,derive*,failover*,tools*,api*,web*'

# The end-to-end cases whose checks read through the stack's Redis() with the real binary on a
# Redis Cluster of three primaries and three replicas (redis.cluster: true): the pipeline,
# ticker, failover, market-data API and klinectl cases that do not stop or proxy one Redis
# (~8 min).
CLUSTER_CASES = pipeline: Redis equals*,pipeline: live*,pipeline: kill -9*,pipeline: one symbol*,pipeline: the 24h*,pipeline: a ticker*,failover: idle*,failover: kill -9*,failover: SIGTERM hands*,failover: MySQL down*,api: klines rows*,api: klines/latest*,api: every bad*,api ws: kline events*,api cache*,web*,recompute*,derive*,retire*
test-cluster: deps build
	env KLINED_BUILD=$(BUILD) KLINED_TEST_CLUSTER=1 $(BUILD)/test/integration_tests \
	  --no-colors -tc='$(CLUSTER_CASES)'

# Unit and integration tests under AddressSanitizer + UndefinedBehaviorSanitizer.
asan: deps
	BUILD=$(ASAN_BUILD) SANITIZE=address,undefined ./scripts/test.sh

# Under ThreadSanitizer (klined itself too): the unit suite and the threaded integration cases.
tsan: deps
	BUILD=$(TSAN_BUILD) SANITIZE=thread ./scripts/test.sh --threaded

# libFuzzer targets with clang, run for FUZZ_SECONDS each (default 60).
fuzz: deps
	FUZZ_BUILD=$(FUZZ_BUILD) ./scripts/fuzz.sh $${FUZZ_SECONDS:-60}

# Chaos soak, not in the default run: two instances under load while they are killed
# (SIGKILL, SIGTERM) and Redis is restarted or down, CHAOS_SECONDS long (default 600), then
# Redis and MySQL compared with the independent computation. CHAOS_SEED repeats a run.
chaos: deps build
	env KLINED_BUILD=$(BUILD) KLINED_CHAOS_SECONDS=$${CHAOS_SECONDS:-600} \
	  $${CHAOS_SEED:+KLINED_CHAOS_SEED=$$CHAOS_SEED} \
	  $(BUILD)/test/integration_tests --no-colors -tc='chaos*'

# The chaos soak on a Redis Cluster of three primaries and three replicas (wait_replicas 1):
# the Redis faults are a primary killed (its replica promoted), two primaries paused past the
# node timeout (CLUSTERDOWN) and a busy symbol's slot moved under load.
chaos-cluster: deps build
	env KLINED_BUILD=$(BUILD) KLINED_CHAOS_SECONDS=$${CHAOS_SECONDS:-600} KLINED_CHAOS_CLUSTER=1 \
	  $${CHAOS_SEED:+KLINED_CHAOS_SEED=$$CHAOS_SEED} \
	  $(BUILD)/test/integration_tests --no-colors -tc='chaos*'

bench: deps build
	./scripts/bench.sh

demo: deps build
	./scripts/demo.sh

format:
	clang-format -i $$(git ls-files '*.h' '*.cc')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD)
