# netcc: build, test, demo.  `make` builds build/netcc; `make test` runs the
# Check suites twice (plain, then under ASan+UBSan); `make demo` shows the main job.

LLVM_CONFIG ?= /usr/lib/llvm-19/bin/llvm-config
CC          ?= cc
CLANG       ?= clang-19

# Every target that compiles runs deps.sh first; the stamp keeps it to once.
DEPS_STAMP := build/.deps-ok
SHELL := /bin/bash
.DEFAULT_GOAL := all

GEN     := build/gen
WARN    := -Wall -Wextra -Werror -Wno-unused-parameter
BASE    := -std=c11 -D_GNU_SOURCE -g $(WARN) -Ifrontend -Iir -Ipasses -Ibackend -Iruntime -Idriver -Itrain \
	-Ionnx -I$(GEN)
LLVM_CF  = $(shell $(LLVM_CONFIG) --cflags 2>/dev/null | sed 's/-std=[^ ]*//')
LLVM_LD  = $(shell $(LLVM_CONFIG) --ldflags 2>/dev/null) -lLLVM-19 -Wl,-rpath,$(shell $(LLVM_CONFIG) --libdir 2>/dev/null)
CHECK_LD = $(shell pkg-config --libs check 2>/dev/null)
RT_LD   := -lz -lm -lpthread
# the ONNX importer (onnx/), in netcc and what links libnetcc.a
ONNX_LD := -lprotobuf-c
# Open MPI, for data-parallel netcc train (train/dist.c alone includes it)
MPI_CF   = $(shell pkg-config --cflags ompi-c 2>/dev/null)
MPI_LD   = $(shell pkg-config --libs ompi-c 2>/dev/null)
NETCC_LD = $(ONNX_LD) $(MPI_LD)
OPT     ?= -O2

# ---- the runtime: kernel sets (runtime/kset.h) -------------------------------
# The compute kernels (runtime/kernels/) are compiled once per kernel set,
# for its ISA, and linked into the libraries of every target that names the
# set (netcc targets); the JIT loads a set's kernels as one object. The rest of the
# runtime is compiled once per architecture, for its baseline, so a library
# checks the CPU (runtime/kset.c) before any of its set's code runs. netcc
# itself and the tests run the host architecture's first set (x86-64-v3 on
# x86-64). Nothing is built for the machine that builds it.
KSET_SRC := $(wildcard runtime/kernels/*.c)
RT_SRC   := $(wildcard runtime/*.c runtime/*/*.c)
RT_H     := $(wildcard runtime/*.h runtime/*/*.h runtime/*.def)
PORT_SRC := $(filter-out $(KSET_SRC),$(RT_SRC))
KSETS    := avx2 avx512 neon
KSET_CC_avx2   := $(CC)
KSET_CC_avx512 := $(CC)
KSET_CC_neon   := aarch64-linux-gnu-gcc
KSET_ISA_avx2   := -march=x86-64-v3
KSET_ISA_avx512 := -march=x86-64-v4 -mprefer-vector-width=512
KSET_ISA_neon   := -march=armv8-a
KSET_ARCH_avx2   := x86_64
KSET_ARCH_avx512 := x86_64
KSET_ARCH_neon   := aarch64
ARCH_CC_x86_64  := $(CC)
ARCH_CC_aarch64 := aarch64-linux-gnu-gcc
HOST_KSET := $(if $(filter aarch64,$(shell uname -m)),neon,avx2)
# The GEMM, Winograd, pooling and the direct convolutions contract
# multiply-adds (their results are fixed by the order of their sums, with
# FMA spelt out where it matters); the element-wise kernels and the weight
# transforms promise the reference's bits, so nothing is contracted there.
# Per file, after the flavour's flags so -O3 wins even in the sanitizer build.
KFLAGS_gemm            := -O3 -ffp-contract=fast
KFLAGS_gemm_micro      := $(KFLAGS_gemm)
KFLAGS_gemm_pack       := $(KFLAGS_gemm)
KFLAGS_peak            := -O3 -ffp-contract=fast
KFLAGS_winograd        := -O3 -ffp-contract=fast
KFLAGS_winograd_transform := $(KFLAGS_winograd)
KFLAGS_winograd_grad   := $(KFLAGS_winograd)
KFLAGS_maxpool         := -O3 -ffp-contract=fast
KFLAGS_conv_direct     := -O3 -ffp-contract=fast
KFLAGS_kernels         := -O3 -ffp-contract=off
KFLAGS_kernels_train   := -O3 -ffp-contract=off
KFLAGS_conv            := -O3 -ffp-contract=off
KFLAGS_winograd_weight := -O3 -ffp-contract=off
RT_CF := -std=c11 -D_GNU_SOURCE -g $(WARN) -Iruntime -fPIC -O2

# build/kset/SET/*.o: a set's kernels; build/kset/ARCH/*.o: the rest of the
# runtime; build/lib/netcc/SET/: what generated code links (libnetcc_rt.a)
# and what the JIT loads (kernels.o, x86-64 sets).
define kset
build/kset/$(1)/%.o: runtime/%.c $$(RT_H) | $(DEPS_STAMP)
	@mkdir -p $$(dir $$@)
	@echo "  CC    $$@"
	@$$(KSET_CC_$(1)) $$(RT_CF) $$(KSET_ISA_$(1)) $$(KFLAGS_$$(notdir $$*)) -c $$< -o $$@

build/lib/netcc/$(1)/libnetcc_rt.a: $$(KSET_SRC:runtime/%.c=build/kset/$(1)/%.o) \
		$$(PORT_SRC:runtime/%.c=build/kset/$$(KSET_ARCH_$(1))/%.o)
	@mkdir -p $$(dir $$@)
	@rm -f $$@; ar rcs $$@ $$^

build/lib/netcc/$(1)/kernels.o: $$(KSET_SRC:runtime/%.c=build/kset/$(1)/%.o)
	@mkdir -p $$(dir $$@)
	@ld -r -o $$@ $$^
endef
define arch
build/kset/$(1)/%.o: runtime/%.c $$(RT_H) | $(DEPS_STAMP)
	@mkdir -p $$(dir $$@)
	@echo "  CC    $$@"
	@$$(ARCH_CC_$(1)) $$(RT_CF) -c $$< -o $$@
endef
$(foreach k,$(KSETS),$(eval $(call kset,$(k))))
$(foreach a,x86_64 aarch64,$(eval $(call arch,$(a))))
KSET_LIBS := $(KSETS:%=build/lib/netcc/%/libnetcc_rt.a) \
	$(patsubst %,build/lib/netcc/%/kernels.o,$(filter-out neon,$(KSETS)))

CC_SRC   := $(wildcard ir/*.c frontend/*.c passes/*.c backend/*.c)
# ONNX's schema (onnx/onnx.proto, vendored) becomes C at build time, in GEN
ONNX_SRC := $(wildcard onnx/*.c) $(GEN)/onnx.pb-c.c
$(GEN)/onnx.pb-c.c $(GEN)/onnx.pb-c.h &: onnx/onnx.proto | $(DEPS_STAMP)
	@mkdir -p $(GEN)
	@echo "  PROTO $<"
	@protoc-c --c_out=$(GEN) --proto_path=onnx $<
DRV_SRC  := $(filter-out driver/main.c,$(wildcard driver/*.c train/*.c))
TEST_SRC := $(wildcard tests/test_*.c)
TESTS    := $(TEST_SRC:tests/%.c=%)
# Tests of the kernels alone run again on each x86-64 set the host has
# (skipping, and saying so, where it lacks one): test_gemm@avx512.
KSET_TESTS := test_gemm test_kernels test_kernels_train
SET_TESTS  := $(foreach k,$(filter-out $(HOST_KSET) neon,$(KSETS)),$(KSET_TESTS:%=%@$(k)))

# netcc --version: VERSION and the git revision; the stamp changes only
# when they do, so help.o is rebuilt then and only then.
NETCC_VERSION := $(shell cat VERSION)
NETCC_GIT     := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
$(shell mkdir -p build && echo '$(NETCC_VERSION) $(NETCC_GIT)' | cmp -s - build/version-stamp \
	|| echo '$(NETCC_VERSION) $(NETCC_GIT)' > build/version-stamp)

# Two flavours share the rules: build/ (plain) and build/san/ (sanitizers).
# Each runs its own runtime in process: the host's kernel set, with the
# flavour's flags.
define flavour
$(1)RT_OBJ  := $$(RT_SRC:%.c=$(2)/obj/%.o)
$(1)CC_OBJ  := $$(CC_SRC:%.c=$(2)/obj/%.o)
$(1)DRV_OBJ := $$(DRV_SRC:%.c=$(2)/obj/%.o)
$(1)ONNX_OBJ := $$(ONNX_SRC:%.c=$(2)/obj/%.o)
$$($(1)ONNX_OBJ): $(GEN)/onnx.pb-c.h

$(2)/obj/%.o: %.c $$(wildcard */*.h */*.def) $$(RT_H) | $(DEPS_STAMP)
	@mkdir -p $$(dir $$@)
	@echo "  CC    $$@"
	@$$(CC) $$(BASE) $(3) -fPIC $$(LLVM_CF) $$(OBJ_CF) -c $$< -o $$@

$$(KSET_SRC:%.c=$(2)/obj/%.o): OBJ_CF = $$(KSET_ISA_$(HOST_KSET)) $$(KFLAGS_$$(basename $$(notdir $$@)))
$(2)/obj/driver/help.o: OBJ_CF = -DNETCC_VERSION='"$$(NETCC_VERSION)"' -DNETCC_GIT='"$$(NETCC_GIT)"'
$(2)/obj/driver/help.o: build/version-stamp
$(2)/obj/train/dist.o: OBJ_CF = $$(MPI_CF)

$(2)/libnetcc_rt.a: $$($(1)RT_OBJ)
	@rm -f $$@; ar rcs $$@ $$^

$(2)/libnetcc.a: $$($(1)CC_OBJ) $$($(1)DRV_OBJ) $$($(1)ONNX_OBJ)
	@rm -f $$@; ar rcs $$@ $$^

# netcc carries the host's runtime whole: the reference executor runs
# it; the JIT loads the target's set from lib/netcc/SET/kernels.o.
$(2)/netcc: $(2)/obj/driver/main.o $(2)/libnetcc.a $(2)/libnetcc_rt.a $(KSET_LIBS)
	@echo "  LD    $$@"
	@$$(CC) $(3) -rdynamic -o $$@ $(2)/obj/driver/main.o $(2)/libnetcc.a \
		-Wl,--whole-archive $(2)/libnetcc_rt.a -Wl,--no-whole-archive $$(LLVM_LD) $$(RT_LD) \
		$$(NETCC_LD)

$(2)/tests/%: tests/%.c $$(wildcard tests/*.h) $(2)/libnetcc.a $(2)/libnetcc_rt.a
	@mkdir -p $$(dir $$@)
	@echo "  TEST  $$@"
	@$$(CC) $$(BASE) $(3) -Itests $$(LLVM_CF) -rdynamic -o $$@ $$< $(2)/libnetcc.a \
		-Wl,--whole-archive $(2)/libnetcc_rt.a -Wl,--no-whole-archive \
		$$(CHECK_LD) $$(LLVM_LD) $$(RT_LD) $$(NETCC_LD)
endef
SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -O1
$(eval $(call flavour,P_,build,$(OPT)))
$(eval $(call flavour,S_,build/san,$(SAN)))
# replays the compile fuzzer's regressions with its generator
build/tests/test_fuzz_corpus build/san/tests/test_fuzz_corpus: tests/fuzz/compile_model.c

# The sanitizer build's netcc finds the kernel sets where the plain one
# does: generated code links the plain runtime (an application need not
# be sanitized).
build/san/netcc: build/san/lib
build/san/lib: | $(DEPS_STAMP)
	@mkdir -p build/san && ln -sfn ../lib $@

# A kernel test on another set: the same source against that set's runtime.
define set_test
build/tests/%@$(1): tests/%.c $$(wildcard tests/*.h) build/libnetcc.a build/lib/netcc/$(1)/libnetcc_rt.a
	@mkdir -p $$(dir $$@)
	@echo "  TEST  $$@"
	@$$(CC) $$(BASE) $$(OPT) -Itests $$(LLVM_CF) -DNETCC_TEST_KSET='"$(1)"' -rdynamic -o $$@ $$< \
		build/libnetcc.a -Wl,--whole-archive build/lib/netcc/$(1)/libnetcc_rt.a \
		-Wl,--no-whole-archive $$(CHECK_LD) $$(LLVM_LD) $$(RT_LD) $$(NETCC_LD)
endef
$(foreach k,$(filter-out $(HOST_KSET) neon,$(KSETS)),$(eval $(call set_test,$(k))))

.PHONY: all test test-plain test-san demo bench fuzz clean format deps man install uninstall bits
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

test-plain: build/netcc $(TESTS:%=build/tests/%) $(SET_TESTS:%=build/tests/%)
	@set -e; for t in $(TESTS) $(SET_TESTS); do echo "== $$t"; NETCC_BIN=$(CURDIR)/build/netcc \
		NETCC_BUILD=$(CURDIR)/build build/tests/$$t; done

# LLVM's own allocations at exit are not ours to chase: leaks are checked
# on netcc's code by the valgrind run in the test suite.
test-san: build/san/netcc $(TESTS:%=build/san/tests/%)
	@set -e; for t in $(TESTS); do echo "== san $$t"; NETCC_BIN=$(CURDIR)/build/san/netcc \
		NETCC_BUILD=$(CURDIR)/build/san NETCC_SANITIZED=1 \
		ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
		build/san/tests/$$t; done

# the man page is generated from the option tables (driver/commands.c);
# test_driver checks the committed one is current
man: build/netcc
	build/netcc help --man > docs/netcc.1

demo: build/netcc
	@scripts/demo.sh

# "bits unchanged" (scripts/bits.sh): netcc built at BITS_BASE (default
# origin/main, else main) against the working tree, byte for byte. Not part
# of `make test`: it builds netcc twice.
bits:
	@scripts/bits.sh $(BITS_BASE)

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

# ---- install: PREFIX (default /usr/local), DESTDIR for staging ----------------
# bin/netcc finds its kernel sets in ../lib/netcc; lib/netcc/HOST_SET also
# serves applications the runtime's file formats (include/netcc/runtime.h),
# which is what netcc.pc links.
PREFIX ?= /usr/local
INST   := $(DESTDIR)$(PREFIX)
install: build/netcc $(KSET_LIBS)
	install -d $(INST)/bin $(INST)/include/netcc $(INST)/share/man/man1 $(INST)/lib/pkgconfig
	install -m 755 build/netcc $(INST)/bin/netcc
	for k in $(KSETS); do install -d $(INST)/lib/netcc/$$k && \
		install -m 644 build/lib/netcc/$$k/* $(INST)/lib/netcc/$$k/; done
	install -m 644 runtime/runtime.h $(INST)/include/netcc/runtime.h
	install -m 644 docs/netcc.1 $(INST)/share/man/man1/netcc.1
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(NETCC_VERSION)|' \
		-e 's|@SET@|$(HOST_KSET)|' scripts/netcc.pc.in > $(INST)/lib/pkgconfig/netcc.pc

uninstall:
	rm -rf $(INST)/bin/netcc $(INST)/lib/netcc $(INST)/include/netcc \
		$(INST)/share/man/man1/netcc.1 $(INST)/lib/pkgconfig/netcc.pc

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
FUZZ_COMMON  := runtime/formats/array.c runtime/formats/file.c
FUZZ_SRC_frontend    := $(wildcard ir/*.c frontend/*.c) runtime/rng.c
FUZZ_SRC_safetensors := $(addprefix runtime/formats/,safetensors.c safetensors_write.c) \
	$(wildcard runtime/formats/json*.c) \
	$(FUZZ_COMMON)
FUZZ_SRC_npy         := runtime/formats/npy.c $(FUZZ_COMMON)
FUZZ_SRC_idx         := runtime/formats/idx.c $(FUZZ_COMMON)
FUZZ_SRC_npz         := $(addprefix runtime/formats/,npz.c npz_member.c npy.c) $(FUZZ_COMMON)
# the whole compiler and the runtime it calls: the portable part built
# here, the host's kernel set as netcc links it (gcc's vector extensions)
FUZZ_KSET_OBJ        := $(KSET_SRC:runtime/%.c=build/kset/$(HOST_KSET)/%.o)
FUZZ_SRC_compile     := $(CC_SRC) $(PORT_SRC) $(FUZZ_KSET_OBJ)
build/fuzz/fuzz_compile: $(FUZZ_KSET_OBJ) tests/fuzz/compile_model.c
FUZZ_XF_compile       = -Ipasses -Ibackend $(LLVM_CF)
FUZZ_XL_compile       = $(LLVM_LD) -lpthread
# the ONNX reader, and the front end that parses what it writes
FUZZ_SRC_onnx        := $(ONNX_SRC) $(FUZZ_SRC_frontend) $(FUZZ_COMMON)
build/fuzz/fuzz_onnx: $(ONNX_SRC) $(GEN)/onnx.pb-c.h
FUZZ_XF_onnx          = -Ionnx -I$(GEN)
FUZZ_XL_onnx          = $(ONNX_LD)
FUZZERS := frontend safetensors npy npz idx compile onnx

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(wildcard */*.h */*.def $(CC_SRC) $(RT_SRC)) | $(DEPS_STAMP)
	@mkdir -p build/fuzz
	@echo "  FUZZ  $@"
	@$(FUZZ_CC) $(FUZZ_FLAGS) $(FUZZ_XF_$*) -o $@ $< $(FUZZ_SRC_$*) -lz -lm $(FUZZ_XL_$*)

# Seeds beyond tests/fuzz/seeds: the repository's own models and arrays.
build/fuzz/corpus-%: | $(DEPS_STAMP)
	@mkdir -p $@ build/fuzz/artifacts
	@cp tests/fuzz/seeds/$*/* $@/ 2>/dev/null || true
	@if [ $* = frontend ]; then cp models/*.nn tests/errors/*.nn tests/blocks/*.nn $@/; fi
	@if [ $* = onnx ]; then cp tests/onnx/*.onnx tests/onnx/malformed/*.onnx $@/; fi
	@if [ $* = npz ]; then cp tests/weights/*.npz $@/; fi
	@if [ $* = npy ]; then cp examples/data/*.npy $@/; \
		for f in $(GOLDEN)/*/x.npy; do cp $$f $@/$$(basename $$(dirname $$f)).npy; done; fi

# Each fuzzer is a target of its own, so `make -j2 fuzz` runs two at once
# (each is one process on one core): CI's seven minutes of fuzzing take
# four, with the same time for each fuzzer. A fuzzer's lines are printed
# together when it ends.
fuzz: $(FUZZERS:%=fuzz-run-%)
.PRECIOUS: build/fuzz/fuzz_% build/fuzz/corpus-%
fuzz-run-%: build/fuzz/fuzz_% build/fuzz/corpus-%
	@mkdir -p build/fuzz/artifacts
	@build/fuzz/fuzz_$* -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix=build/fuzz/artifacts/$*- \
		build/fuzz/corpus-$* tests/fuzz/regressions/$* 2>build/fuzz/$*.log \
		|| { echo "== fuzz $* FAILED"; tail -40 build/fuzz/$*.log; exit 1; }
	@{ echo "== fuzz $* for $(FUZZ_SECONDS) s"; \
		grep -E "stat::number_of_executed_units|stat::new_units_added" build/fuzz/$*.log; }

# ---- benchmark (bench/README.md): netcc against ONNX Runtime and PyTorch -----
# Not part of `make test`. BENCH_QUICK=1 for a short smoke run. npm ci only when
# node_modules is older than the lockfile; ONNXRUNTIME_NODE_INSTALL=skip keeps
# onnxruntime-node's install script from fetching GPU files (the CPU ones ship).
# BENCH_TARGET picks the code measured (default native; x86-64-v3 measures
# the AVX2 code on an AVX-512 host).
BENCH_TARGET ?= native
export BENCH_TARGET
bench: build/netcc
	@scripts/deps.sh bench
	@cd bench && { [ node_modules/.package-lock.json -nt package-lock.json ] || \
		ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund; }
	@/usr/bin/python3 bench/bench.py
	@set -e; k=$$(build/netcc targets --which $(BENCH_TARGET) | cut -d' ' -f2); \
		$(MAKE) --no-print-directory build/bench/gemm_bench-$$k build/bench/ab; \
		echo "== netcc's GEMM against OpenBLAS's (bench/gemm_bench.c), kernel set $$k"; \
		build/bench/gemm_bench-$$k $(if $(BENCH_QUICK),4,30) | tee build/bench/gemm.txt
	@bench/scaling --steps $(if $(BENCH_QUICK),4,20) | tee build/bench/scaling.txt

# The all-reduce's latency and bandwidth, for docs/training.md's model (bench/scaling).
build/bench/allreduce_bench: bench/allreduce_bench.c
	@mkdir -p build/bench
	mpicc -std=c11 -O2 $(WARN) -o $@ $<

# netcc export's files in ONNX Runtime (tools/onnx_export_check.py): the
# issue's bar, ORT within 1e-5 of netcc's reference executor. Not part of
# `make test`: it needs npm's onnxruntime-node, installed as for the bench.
.PHONY: export-check
export-check: build/netcc
	@cd bench && { [ node_modules/.package-lock.json -nt package-lock.json ] || \
		ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund; }
	@/usr/bin/python3 tools/onnx_export_check.py

# Two builds of a model timed in alternation in one process (bench/ab.c).
build/bench/ab: bench/ab.c
	@mkdir -p build/bench
	$(CC) $(BASE) -O2 -o $@ $< -ldl

# OpenBLAS is linked only here: netcc's own kernels replaced it (docs/performance.md).
build/bench/gemm_bench-%: bench/gemm_bench.c build/lib/netcc/%/libnetcc_rt.a
	@mkdir -p build/bench
	$(CC) $(BASE) -O2 -DGEMM_BENCH_KSET='"$*"' -o $@ $< build/lib/netcc/$*/libnetcc_rt.a \
		-lopenblas $(RT_LD)
