# netcc: build, test, demo.  `make` builds build/netcc; `make test` runs the
# Check suites twice (plain, then under ASan+UBSan); `make demo` shows the main job.

LLVM_CONFIG ?= /usr/lib/llvm-19/bin/llvm-config
CC          ?= cc
CLANG       ?= clang-19

# Every target that compiles runs deps.sh first; the stamp keeps it to once.
DEPS_STAMP := build/.deps-ok
SHELL := /bin/bash
.DEFAULT_GOAL := all

WARN    := -Wall -Wextra -Werror -Wno-unused-parameter
BASE    := -std=c11 -D_GNU_SOURCE -g $(WARN) -Ifrontend -Iir -Ipasses -Ibackend -Iruntime -Idriver
LLVM_CF  = $(shell $(LLVM_CONFIG) --cflags 2>/dev/null | sed 's/-std=[^ ]*//')
LLVM_LD  = $(shell $(LLVM_CONFIG) --ldflags 2>/dev/null) -lLLVM-19 -Wl,-rpath,$(shell $(LLVM_CONFIG) --libdir 2>/dev/null)
CHECK_LD = $(shell pkg-config --libs check 2>/dev/null)
RT_LD   := -lcjson -lz -lm -lpthread
OPT     ?= -O2
# The GEMM is built for this CPU (netcc builds where its code runs), and
# after the flavour's flags so -O3 wins there even in the sanitizer build.
GEMM_FLAGS := -O3 -march=native -ffp-contract=fast
# The element-wise kernels promise the reference's bits: vectorised for
# this CPU, but no multiply-add contracted where the reference has two ops.
EWISE_FLAGS := -O3 -march=native -ffp-contract=off

RT_SRC   := $(wildcard runtime/*.c)
CC_SRC   := $(wildcard ir/*.c frontend/*.c passes/*.c backend/*.c)
DRV_SRC  := $(filter-out driver/main.c,$(wildcard driver/*.c))
TEST_SRC := $(wildcard tests/test_*.c)
TESTS    := $(TEST_SRC:tests/%.c=%)

# Two flavours share the rules: build/ (plain) and build/san/ (sanitizers).
define flavour
$(1)RT_OBJ  := $$(RT_SRC:%.c=$(2)/obj/%.o)
$(1)CC_OBJ  := $$(CC_SRC:%.c=$(2)/obj/%.o)
$(1)DRV_OBJ := $$(DRV_SRC:%.c=$(2)/obj/%.o)

$(2)/obj/%.o: %.c $$(wildcard */*.h ir/*.def) | $(DEPS_STAMP)
	@mkdir -p $$(dir $$@)
	@echo "  CC    $$@"
	@$$(CC) $$(BASE) $(3) -fPIC $$(LLVM_CF) $$(OBJ_CF) -c $$< -o $$@

$(2)/obj/runtime/gemm.o $(2)/obj/runtime/peak.o $(2)/obj/runtime/winograd.o $(2)/obj/runtime/maxpool.o $(2)/obj/runtime/conv_direct.o: OBJ_CF := $$(GEMM_FLAGS)
$(2)/obj/runtime/kernels.o $(2)/obj/runtime/kernels_train.o $(2)/obj/runtime/conv.o: OBJ_CF := $$(EWISE_FLAGS)

$(2)/libnetcc_rt.a: $$($(1)RT_OBJ)
	@rm -f $$@; ar rcs $$@ $$^

$(2)/libnetcc.a: $$($(1)CC_OBJ) $$($(1)DRV_OBJ)
	@rm -f $$@; ar rcs $$@ $$^

# netcc carries the whole runtime: the JIT resolves kernels in the process.
$(2)/netcc: $(2)/obj/driver/main.o $(2)/libnetcc.a $(2)/libnetcc_rt.a $(2)/libnetcc_out.a
	@echo "  LD    $$@"
	@$$(CC) $(3) -rdynamic -o $$@ $(2)/obj/driver/main.o $(2)/libnetcc.a \
		-Wl,--whole-archive $(2)/libnetcc_rt.a -Wl,--no-whole-archive $$(LLVM_LD) $$(RT_LD)

# What generated libraries link: the plain runtime, even beside the
# sanitizer build's netcc (an application need not be sanitized).
$(2)/libnetcc_out.a: build/libnetcc_rt.a
	@cp $$< $$@

$(2)/tests/%: tests/%.c tests/testutil.h $(2)/libnetcc.a $(2)/libnetcc_rt.a
	@mkdir -p $$(dir $$@)
	@echo "  TEST  $$@"
	@$$(CC) $$(BASE) $(3) -Itests $$(LLVM_CF) -rdynamic -o $$@ $$< $(2)/libnetcc.a \
		-Wl,--whole-archive $(2)/libnetcc_rt.a -Wl,--no-whole-archive \
		$$(CHECK_LD) $$(LLVM_LD) $$(RT_LD)
endef

SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -O1
$(eval $(call flavour,P_,build,$(OPT)))
$(eval $(call flavour,S_,build/san,$(SAN)))

.PHONY: all test test-plain test-san demo bench fuzz clean format deps
all: build/netcc

deps $(DEPS_STAMP):
	@scripts/deps.sh
	@mkdir -p build && touch $(DEPS_STAMP)

# Tests find the golden vectors and the build through these variables. The
# shared copy beside the checkout wins; tests/golden is the same set, kept
# in the repository so a clone elsewhere still tests against PyTorch.
GOLDEN ?= $(if $(wildcard ../shared/golden/README.md),$(abspath ../shared/golden),$(CURDIR)/tests/golden)
export NETCC_GOLDEN := $(GOLDEN)
export NETCC_ROOT := $(CURDIR)

test: test-plain test-san

test-plain: build/netcc $(TESTS:%=build/tests/%)
	@set -e; for t in $(TESTS); do echo "== $$t"; NETCC_BIN=$(CURDIR)/build/netcc \
		NETCC_BUILD=$(CURDIR)/build build/tests/$$t; done

# LLVM's own allocations at exit are not ours to chase: leaks are checked
# on netcc's code by the valgrind run in the test suite.
test-san: build/san/netcc $(TESTS:%=build/san/tests/%)
	@set -e; for t in $(TESTS); do echo "== san $$t"; NETCC_BIN=$(CURDIR)/build/san/netcc \
		NETCC_BUILD=$(CURDIR)/build/san NETCC_SANITIZED=1 \
		ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
		build/san/tests/$$t; done

demo: build/netcc
	@scripts/demo.sh

# examples/classify built against a compiled ResNet-18 (examples/README.md: any model).
# The commands are echoed in full: the demo shows them as how an application is built.
EX := build/examples
.PHONY: examples
examples: $(EX)/classify-resnet18

$(EX)/libresnet18.so: models/resnet18.nn build/netcc
	@mkdir -p $(EX)
	build/netcc compile $< -o $@ --time-phases

$(EX)/classify-resnet18: examples/classify.c $(EX)/libresnet18.so
	$(CC) -std=c11 -O2 -Wall -Wextra -Werror -I$(EX) -DMODEL_HEADER='"resnet18.h"' -DMODEL=resnet18 -DMODEL_UPPER=RESNET18 $< -L$(EX) -lresnet18 -lz -lm -Wl,-rpath,'$$ORIGIN' -o $@

clean:
	rm -rf build

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

# ---- fuzzing (tests/fuzz/README.md) ------------------------------------------
FUZZ_CC      ?= clang-19
FUZZ_SECONDS ?= 60
FUZZ_FLAGS   := -std=c11 -D_GNU_SOURCE -g -O1 -Wall -Werror -Wno-unused-parameter \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Iir -Ifrontend -Iruntime \
	-DFE_STEP_LIMIT=200000 -DIR_NODE_LIMIT=32768
# (lower limits, same code: a million-node graph takes a second plainly but
# over ten under the sanitizers, which libFuzzer's timeout calls a hang)
FUZZ_COMMON  := runtime/array.c runtime/file.c
FUZZ_SRC_frontend    := $(wildcard ir/*.c frontend/*.c) runtime/rng.c
FUZZ_SRC_safetensors := runtime/safetensors.c $(FUZZ_COMMON)
FUZZ_SRC_npy         := runtime/npy.c $(FUZZ_COMMON)
FUZZ_SRC_idx         := runtime/idx.c $(FUZZ_COMMON)
FUZZERS := frontend safetensors npy idx

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(wildcard */*.h ir/*.def runtime/*.c ir/*.c frontend/*.c) | $(DEPS_STAMP)
	@mkdir -p build/fuzz
	@echo "  FUZZ  $@"
	@$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(FUZZ_SRC_$*) -lcjson -lz -lm

# Seeds beyond tests/fuzz/seeds: the repository's own models and arrays.
build/fuzz/corpus-%: | $(DEPS_STAMP)
	@mkdir -p $@ build/fuzz/artifacts
	@cp tests/fuzz/seeds/$*/* $@/ 2>/dev/null || true
	@if [ $* = frontend ]; then cp models/*.nn tests/errors/*.nn tests/blocks/*.nn $@/; fi
	@if [ $* = npy ]; then cp examples/data/*.npy $@/; \
		for f in $(GOLDEN)/*/x.npy; do cp $$f $@/$$(basename $$(dirname $$f)).npy; done; fi

fuzz: $(FUZZERS:%=build/fuzz/fuzz_%) $(FUZZERS:%=build/fuzz/corpus-%)
	@mkdir -p build/fuzz/artifacts
	@set -e; for f in $(FUZZERS); do echo "== fuzz $$f for $(FUZZ_SECONDS) s"; \
		build/fuzz/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
			-print_final_stats=1 -artifact_prefix=build/fuzz/artifacts/$$f- \
			build/fuzz/corpus-$$f tests/fuzz/regressions/$$f 2>build/fuzz/$$f.log \
			|| { tail -40 build/fuzz/$$f.log; exit 1; }; \
		grep -E "stat::number_of_executed_units|stat::new_units_added" build/fuzz/$$f.log; done

# ---- benchmark (bench/README.md): netcc against ONNX Runtime and PyTorch -----
# Not part of `make test`. BENCH_QUICK=1 for a short smoke run. npm ci only when
# node_modules is older than the lockfile; ONNXRUNTIME_NODE_INSTALL=skip keeps
# onnxruntime-node's install script from fetching GPU files (the CPU ones ship).
bench: build/netcc
	@scripts/deps.sh bench
	@cd bench && { [ node_modules/.package-lock.json -nt package-lock.json ] || \
		ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund; }
	@/usr/bin/python3 bench/bench.py
	@$(MAKE) --no-print-directory build/bench/gemm_bench build/bench/ab
	@echo "== netcc's GEMM against OpenBLAS's (bench/gemm_bench.c)"
	@build/bench/gemm_bench $(if $(BENCH_QUICK),4,30) | tee build/bench/gemm.txt

# Two builds of a model timed in alternation in one process (bench/ab.c).
build/bench/ab: bench/ab.c
	@mkdir -p build/bench
	$(CC) $(BASE) -O2 -o $@ $< -ldl

# OpenBLAS is linked only here: netcc's own kernels replaced it (docs/performance.md).
build/bench/gemm_bench: bench/gemm_bench.c build/libnetcc_rt.a
	@mkdir -p build/bench
	$(CC) $(BASE) -O2 -o $@ $< build/libnetcc_rt.a -lopenblas $(RT_LD)
