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
LDLIBS = -ljansson -lpcre2-8 -lopenblas -lyaml -lz -lm
LDFLAGS += -fopenmp $(SANFLAGS)

LIB_SRC := $(shell find src -name '*.c' ! -path 'src/cli/*' | sort)
CLI_SRC := $(sort $(wildcard src/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_SRC := $(filter-out tests/test_main.c,$(TEST_SRC))

LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
LIB := $(BUILD)/libsft.a

.PHONY: all test run deps clean fuzz bench
.SECONDARY:
all: deps $(BUILD)/sft

deps:
	@scripts/deps.sh

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/sft: $(CLI_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(LIB) $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(BUILD)/obj/tests/test_main.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(BUILD)/obj/tests/test_main.o $(LIB) $(LDLIBS)

# Unit test binaries first, then the CLI scripts (tests/cli/*.sh get SFT=path to the binary).
test: deps $(BUILD)/sft $(TEST_BIN)
	@scripts/deps.sh --test
	@set -e; for t in $(TEST_BIN); do $$t; done
	@set -e; for s in $(sort $(wildcard tests/cli/*.sh)); do echo "$$s"; SFT=$(BUILD)/sft BUILD=$(BUILD) bash $$s; done
	@echo "all tests passed ($(BUILD))"

run: deps $(BUILD)/sft
	$(BUILD)/sft demo

clean:
	rm -rf build build-san build-fuzz

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
