#!/bin/bash
# scripts/bits.sh [BASE_REV]: "bits unchanged". Builds netcc at BASE_REV
# (default origin/main, else main) in a temporary git worktree and the
# working tree as it is, then runs both on the same weights and inputs and
# compares what they write byte for byte: ResNet-18 and ResNet-50 outputs
# (JIT and reference executor), a few training steps' weights and
# checkpoint, a compiled library's header and outputs, and LLVM IR.
# One line per check; exit 1 on any difference but the IR's (reported
# only), 2 if a build or run fails.
# `make bits` runs it. BITS_TARGETS overrides the targets compared.
# shellcheck disable=SC2317 # cleanup, netcc and lib_infer are called through trap and both
set -eu

root=$(git rev-parse --show-toplevel)
cd "$root"
if [ $# -gt 0 ]; then base=$1
elif git rev-parse -q --verify origin/main >/dev/null; then base=origin/main
else base=main; fi
git rev-parse -q --verify "$base^{commit}" >/dev/null ||
	{ echo "bits.sh: no revision $base" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/netcc-bits.XXXXXX")
cleanup() {
	git worktree remove --force "$tmp/base" 2>/dev/null || true
	rm -rf "$tmp"
	git worktree prune
}
trap cleanup EXIT
trap 'exit 130' INT TERM # through the EXIT trap: the worktree goes too

# Two builds, one after the other (-j2: the machine has two cores).
git worktree add -q --detach "$tmp/base" "$base"
build() { # build DIR NAME
	echo "building netcc: $2"
	make -C "$1" -j2 build/netcc >"$tmp/build-$2.log" 2>&1 ||
		{ tail -n 30 "$tmp/build-$2.log"; echo "bits.sh: the build of $2 failed" >&2; exit 2; }
}
start=$SECONDS
build "$tmp/base" "$base ($(git rev-parse --short "$base"))"
build "$root" "working tree"
built=$SECONDS
declare -A bin=([old]="$tmp/base/build/netcc" [new]="$root/build/netcc")

# Results are bit-identical across thread counts (docs/reliability.md), but
# set one anyway so a difference cannot come from two machines' CPU counts.
export NETCC_THREADS=2
# The kernels are chosen by --target, and x86-64-v3 and -v4 sum in different
# orders: compare on every target this CPU runs, each named explicitly.
targets=${BITS_TARGETS:-$("${bin[new]}" targets | awk '$3 == "yes" { printf "%s ", $1 }')}
M=$root/models

# both CMD...: CMD in $tmp/old with the base's netcc, then in $tmp/new with
# the tree's; `netcc` in CMD is that side's binary. Same relative paths on
# both sides, so nothing differs by where it was written.
netcc() { "$NC" "$@"; }
both() {
	for s in old new; do
		(cd "$tmp/$s" && NC=${bin[$s]} "$@") >>"$tmp/$s.log" 2>&1 ||
			{ tail -n 20 "$tmp/$s.log"; echo "bits.sh: failed ($s): $*" >&2; exit 2; }
	done
}
status=0
same() { # same WHAT FILE: FILE as each side wrote it
	if cmp -s "$tmp/old/$2" "$tmp/new/$2"; then echo "same: $1"
	else echo "DIFFERENT: $1 ($2)"; status=1; fi
}
# like same, but a difference is reported, not failed: code that changes
# (a kernel's new argument) while every result keeps its bits
note() { # note WHAT FILE
	if cmp -s "$tmp/old/$2" "$tmp/new/$2"; then echo "same: $1"
	else echo "differs (not a result): $1 ($2)"; fi
}
# lib_infer DIR NAME: NAME_infer of DIR/libNAME.so on x.npy, its weights
# from DIR/NAME.safetensors, the output's floats to DIR/y.f32. Python's
# ctypes calls the library, so there is no C to build here.
lib_infer() {
	python3 - "$@" <<'EOF'
import ctypes, re, sys
d, name = sys.argv[1:3]
n = int(re.search(r"_OUTPUT_SIZE (\d+)", open(f"{d}/{name}.h").read()).group(1))
lib = ctypes.CDLL(f"./{d}/lib{name}.so")
def fn(sym, res, *args):
    f = getattr(lib, name + sym)
    f.restype, f.argtypes = res, args
    return f
P = ctypes.c_void_p
create = fn("_create", P)
load = fn("_load_weights", ctypes.c_int, P, ctypes.c_char_p)
threads = fn("_set_threads", ctypes.c_int, P, ctypes.c_int)
infer = fn("_infer", ctypes.c_int, P, ctypes.c_char_p, P)
x = open("x.npy", "rb").read()
x = x[10 + int.from_bytes(x[8:10], "little"):]  # .npy 1.0: magic, version, length, header
y = ctypes.create_string_buffer(4 * n)
m = create()
if not m or load(m, f"{d}/{name}.safetensors".encode()) or threads(m, 2) or infer(m, x, y):
    sys.exit(f"lib_infer: {d}/lib{name}.so failed")
open(f"{d}/y.f32", "wb").write(y.raw)
EOF
}
mkdir "$tmp/old" "$tmp/new"

# One deterministic input, shared: uniform in [-1, 1) from a seeded PRNG.
python3 - "$tmp/old/x.npy" <<'EOF'
import random, struct, sys
r, n = random.Random(1), 3 * 224 * 224
h = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 224, 224), }"
h += " " * (63 - (10 + len(h)) % 64) + "\n"
data = struct.pack("<%df" % n, *(r.uniform(-1, 1) for _ in range(n)))
open(sys.argv[1], "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode() + data)
EOF
cp "$tmp/old/x.npy" "$tmp/new/x.npy"

# He initialisation is compiler code too: each side writes its own, then
# both run on the base's, so a difference here does not hide the rest.
for m in resnet18 resnet50 resnet20; do
	both netcc init "$M/$m.nn" -o "$m.safetensors" --seed 1
	same "$m init weights" "$m.safetensors"
	cp "$tmp/old/$m.safetensors" "$tmp/new/$m.safetensors"
done

for m in resnet18 resnet50; do
	both netcc run "$M/$m.nn" --weights "$m.safetensors" --input x.npy -o "$m-ref.npy" --reference
	same "$m outputs, reference executor" "$m-ref.npy"
done
for t in $targets; do
	for m in resnet18 resnet50; do
		both netcc run "$M/$m.nn" --weights "$m.safetensors" --input x.npy -o "$m-$t.npy" --target "$t"
		same "$m outputs, $t" "$m-$t.npy"
	done

	# Three SGD steps of 16 Fashion-MNIST images, with BatchNorm, momentum and
	# an evaluation. model.safetensors holds no time; log.csv's last column
	# and the checkpoint's "log" and "epoch_seconds" are wall-clock times.
	both netcc train "$M/resnet20.nn" --data fashion-mnist --weights resnet20.safetensors \
		--epochs 1 --batch 16 --limit-train 48 --limit-test 32 --seed 1 --target "$t" --out "train-$t"
	same "resnet20 training: weights, $t" "train-$t/model.safetensors"
	for s in old new; do
		d=$tmp/$s/train-$t
		cut -d, -f1-6 "$d/log.csv" >"$d/log.untimed"
		# safetensors: an 8-byte little-endian header length, the JSON header, the tensors
		n=$(od -An -tu8 -N8 "$d/checkpoint.safetensors" | tr -d ' ')
		{ head -c $((8 + n)) "$d/checkpoint.safetensors" | tail -c +9 |
			sed -e 's/"log":"[^"]*",\{0,1\}//' -e 's/"epoch_seconds":"[^"]*",\{0,1\}//'
		  tail -c +$((9 + n)) "$d/checkpoint.safetensors"; } >"$d/checkpoint.untimed"
	done
	same "resnet20 training: losses and errors (log.csv without times), $t" "train-$t/log.untimed"
	same "resnet20 training: checkpoint (momentum, RNG, schedule; without times), $t" \
		"train-$t/checkpoint.untimed"

	# A library: its header, and its outputs through its own API (the
	# runtime it links folds BatchNorm and transforms weights as it loads
	# them). The .so itself is not compared: it carries the runtime's machine
	# code, which a refactor may move without changing a bit it computes.
	both mkdir -p "lib-$t"
	both netcc compile "$M/resnet18.nn" --weights resnet18.safetensors --weights-file \
		--target "$t" -o "lib-$t/libresnet18.so"
	same "resnet18 library: header, $t" "lib-$t/resnet18.h"
	both lib_infer "lib-$t" resnet18
	same "resnet18 library: outputs, $t" "lib-$t/y.f32"
	# LLVM IR (after O3) with the training step: stricter than the bits, as
	# a refactor that reorders code generation shows here first; reported,
	# not failed, since a refactor may change the code and not its results.
	both netcc compile "$M/resnet20.nn" --weights resnet20.safetensors --train --emit llvm \
		--target "$t" -o "resnet20-$t.ll"
	note "resnet20 LLVM IR with training step, $t" "resnet20-$t.ll"
done

echo "bits.sh: $base against the working tree, targets ${targets% }, NETCC_THREADS=2;" \
	"builds $((built - start)) s, checks $((SECONDS - built)) s"
exit $status
