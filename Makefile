# The two things a newcomer does. Each installs what the build needs first (Debian packages).
#   make run   - build, describe the shipped model and generate text with it
#   make test  - build and run every test
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
MODEL ?= models/debdocs-41m.gguf

DEBIAN_PACKAGES = build-essential cmake ninja-build pkg-config \
	libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev libcli11-dev libpcre2-dev \
	clang libclang-rt-14-dev clang-format

.PHONY: deps build run test test-asan test-tsan fuzz bench format clean

deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi

build: deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

run: build
	./$(BUILD)/bitnet info $(MODEL)
	@echo
	@echo "debdocs-41m: a 41M-parameter BitNet b1.58 model trained for this repository on Debian's"
	@echo "free documentation and the King James Bible (docs/MODEL.md). Sampled continuation:"
	./$(BUILD)/bitnet generate $(MODEL) -p "And it came to pass, when the king" -n 64 --temp 0.7 --seed 1 --stream

test: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

# The tests again under AddressSanitizer and UndefinedBehaviorSanitizer: the library and kernels
# at -O1 with both, the CLI's and the tests' own code at -O0 under ASan only, and a few soak
# loops shortened (kUnderSanitizers in tests/test_support.h). The tests run as JOBS shards, one
# process each (tests/run_shards.sh), rather than ctest's process a test.
test-asan: deps
	cmake -S . -B $(BUILD)-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
		-DBITNET_SANITIZE=ON -DBITNET_BUILD_BENCH=OFF
	cmake --build $(BUILD)-asan -j $(JOBS)
	tests/run_shards.sh $(BUILD)-asan/tests/bitnet_tests $(JOBS)

# The tests that run threads against each other, under ThreadSanitizer (the model cache, the
# thread pool, concurrent tokenizers, background generation streams, batches run a share of the
# sequences a thread).
TSAN_TESTS ?= ModelCache*:CoreThreadPool*:TokenizerThreads*:GenerationTest.Streaming*:GenerationTest.Cancelled*:ForwardBySequence*:ForwardPruning*:HugePageAlloc*:WeightMemory*
test-tsan: deps
	cmake -S . -B $(BUILD)-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
		-DBITNET_TSAN=ON -DBITNET_BUILD_BENCH=OFF
	cmake --build $(BUILD)-tsan -j $(JOBS) --target bitnet_tests
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
		$(BUILD)-tsan/tests/bitnet_tests --gtest_filter='$(TSAN_TESTS)'

# libFuzzer on the model-file parsers (clang): FUZZ_SECONDS in all, half for the safetensors +
# config loader, half for GGUF. -g1: line tables are all a report needs. FUZZ_OPT -O0 builds the
# tree in 50-60% of -O1's time, which suits CI's one-minute run; long runs, which want executions
# a second, take FUZZ_OPT=-O1 (the default -O2 -g took half again as long as -O1 -g1).
FUZZ_SECONDS ?= 60
FUZZ_OPT ?= -O0
fuzz: deps
	cmake -S . -B $(BUILD)-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$(FUZZ_OPT) -g1" -DBITNET_FUZZ=ON -DBITNET_SANITIZE=ON -DBITNET_BUILD_BENCH=OFF -DBITNET_BUILD_TESTS=ON
	cmake --build $(BUILD)-fuzz -j $(JOBS) --target fuzz_model_files fuzz_gguf
	mkdir -p $(BUILD)-fuzz/corpus $(BUILD)-fuzz/corpus_gguf
	./$(BUILD)-fuzz/tests/fuzz/fuzz_model_files -max_total_time=$$(( $(FUZZ_SECONDS) / 2 )) -rss_limit_mb=4096 \
		$(BUILD)-fuzz/corpus tests/fuzz/corpus
	./$(BUILD)-fuzz/tests/fuzz/fuzz_gguf -max_total_time=$$(( $(FUZZ_SECONDS) - $(FUZZ_SECONDS) / 2 )) -rss_limit_mb=4096 \
		$(BUILD)-fuzz/corpus_gguf tests/fuzz/corpus_gguf

bench: build
	./$(BUILD)/bench/bench_kernels --benchmark_repetitions=3 --benchmark_report_aggregates_only=true

format:
	clang-format -i $$(git ls-files '*.cpp' '*.h')

clean:
	rm -rf $(BUILD) $(BUILD)-asan $(BUILD)-tsan $(BUILD)-fuzz
