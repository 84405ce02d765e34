# sft: build, test and demo.  `make` builds build/sft; `make test` runs every
# test (unit binaries, CLI scripts, fixture parity); `make run` runs the demo.
# SAN=1 builds and tests under AddressSanitizer + UndefinedBehaviorSanitizer
# in build-san/. BUILD=dir picks another build folder.

CC ?= cc
SAN ?= 0
ifeq ($(SAN),1)
BUILD ?= build-san
SANFLAGS = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
OPT = -O1
else
BUILD ?= build
SANFLAGS =
OPT = -O2
endif

CFLAGS_BASE = -std=c11 -D_GNU_SOURCE $(OPT) -g -Wall -Wextra -Werror -fopenmp -Isrc -MMD -MP $(SANFLAGS)
CFLAGS += $(CFLAGS_BASE)
LDLIBS = -ljansson -lpcre2-8 -lopenblas -lyaml -lz -lm -lutf8proc -lxxhash -lcairo
LDFLAGS += -fopenmp $(SANFLAGS)

LIB_SRC := $(shell find src -name '*.c' ! -path 'src/cli/*' | sort)
CLI_SRC := $(sort $(wildcard src/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_SRC := $(filter-out tests/test_main.c,$(TEST_SRC))

LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
LIB := $(BUILD)/libsft.a
# The CLI's helpers without main.c (flag parsing, run flags), so that tests can drive them.
CLI_LIB := $(BUILD)/libsft-cli.a

.PHONY: all test run deps clean fuzz fuzz-deps bench
.SECONDARY:
all: deps $(BUILD)/sft

deps:
	@scripts/deps.sh

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# AdamW's loop vectorises its sqrtf only when sqrtf need not set errno (same bits either way).
$(BUILD)/obj/src/train/optim.o: CFLAGS += -fno-math-errno

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/sft: $(CLI_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(LIB) $(LDLIBS)

$(CLI_LIB): $(filter-out $(BUILD)/obj/src/cli/main.o,$(CLI_OBJ))
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(BUILD)/obj/tests/test_main.o $(CLI_LIB) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(BUILD)/obj/tests/test_main.o $(CLI_LIB) $(LIB) $(LDLIBS)

# Unit test binaries first, then the CLI scripts (tests/cli/*.sh get SFT=path to the binary).
test: deps $(BUILD)/sft $(TEST_BIN)
	@scripts/deps.sh --test
	@set -e; for t in $(TEST_BIN); do $$t; done
	@set -e; for s in $(sort $(wildcard tests/cli/*.sh)); do echo "$$s"; SFT=$(BUILD)/sft BUILD=$(BUILD) bash $$s; done
	@echo "all tests passed ($(BUILD))"

run: deps $(BUILD)/sft
	$(BUILD)/sft demo

# libFuzzer targets: build-fuzz/fuzz_X from fuzz/fuzz_X.c and the library,
# all compiled by clang with ASan + UBSan (how to run them: fuzz/README.md).
FUZZ_CC ?= clang
FUZZ_BUILD := build-fuzz
FUZZ_CFLAGS = -std=c11 -D_GNU_SOURCE -O1 -g -fopenmp -Isrc -MMD -MP -fno-omit-frame-pointer \
	-fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_BIN := $(patsubst fuzz/%.c,$(FUZZ_BUILD)/%,$(sort $(wildcard fuzz/fuzz_*.c)))
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_BUILD)/obj/%.o)

fuzz: $(FUZZ_BIN)

fuzz-deps:
	@scripts/deps.sh --fuzz

$(FUZZ_BUILD)/obj/%.o: %.c | fuzz-deps
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_BUILD)/libsft.a: $(FUZZ_LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c $(FUZZ_BUILD)/libsft.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $< $(FUZZ_BUILD)/libsft.a $(LDLIBS) -o $@

# Benchmarks: $(BUILD)/bench/bench_X from bench/bench_X.c; `make bench` builds and runs them (one thread each),
# then the training-step comparison with PyTorch (bench/run.sh; BENCH_ARGS=--quick for the short one).
BENCH_BIN := $(patsubst bench/%.c,$(BUILD)/bench/%,$(sort $(wildcard bench/bench_*.c)))
BENCH_MICRO := $(filter-out $(BUILD)/bench/bench_step,$(BENCH_BIN))

$(BUILD)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

bench: deps $(BENCH_BIN) $(BUILD)/sft
	@scripts/deps.sh --bench
	@set -e; for b in $(BENCH_MICRO); do echo "$$b"; OMP_NUM_THREADS=1 $$b; done
	bench/run.sh --build $(BUILD) $(BENCH_ARGS)

clean:
	rm -rf build build-san build-fuzz

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
-include $(shell find $(FUZZ_BUILD) -name '*.d' 2>/dev/null)
