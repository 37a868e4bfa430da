# Thin front over meson. `make test` is what CI runs (.ci/run); `make demo` is the main job.
BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
FUZZ_BUILD ?= build-fuzz
MESON_OPTS ?=

.PHONY: all deps build test unit asan tsan fuzz bench demo format clean

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

# Unit and integration tests under AddressSanitizer + UndefinedBehaviorSanitizer.
asan: deps
	BUILD=$(ASAN_BUILD) SANITIZE=address,undefined ./scripts/test.sh

# Threaded tests under ThreadSanitizer.
tsan: deps
	BUILD=$(TSAN_BUILD) SANITIZE=thread ./scripts/test.sh --unit-only

# libFuzzer targets with clang, run for FUZZ_SECONDS each (default 60).
fuzz: deps
	FUZZ_BUILD=$(FUZZ_BUILD) ./scripts/fuzz.sh $${FUZZ_SECONDS:-60}

bench: deps build
	./scripts/bench.sh

demo: deps build
	./scripts/demo.sh

format:
	clang-format -i $$(git ls-files '*.h' '*.cc')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD)
