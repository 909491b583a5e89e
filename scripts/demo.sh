#!/bin/sh
# make demo: what netcc does, step by step. Run from the repository root
# after `make` (the Makefile's demo target does both).
set -eu
N=build/netcc
OUT=build/demo
mkdir -p "$OUT"
step() { printf '\n== %s\n' "$*"; }

step "netcc reads ResNet-50 from a 24-line model file and infers every shape"
echo "\$ $N summary models/resnet50.nn"
$N summary models/resnet50.nn >"$OUT/resnet50.summary"
head -n 8 "$OUT/resnet50.summary"
echo "   ... ($(wc -l <"$OUT/resnet50.summary") lines in all, in $OUT/resnet50.summary)"
tail -n 3 "$OUT/resnet50.summary"
echo "(torchvision's ResNet-50 has 25557032 parameters and 4.09 GMACs)"

step "He-initialised weights for ResNet-20 (Fashion-MNIST size)"
echo "\$ $N init models/resnet20.nn -o $OUT/resnet20.safetensors --seed 0"
$N init models/resnet20.nn -o "$OUT/resnet20.safetensors" --seed 0

step "a reference run on one Fashion-MNIST test image (an ankle boot; the weights are untrained)"
echo "\$ $N run models/resnet20.nn --weights $OUT/resnet20.safetensors --input examples/data/ankle_boot.npy --reference"
$N run models/resnet20.nn --weights "$OUT/resnet20.safetensors" \
	--input examples/data/ankle_boot.npy --reference

step "the same run compiled: netcc JIT-compiles the graph with LLVM and runs the machine code"
echo "\$ $N run models/resnet20.nn --weights $OUT/resnet20.safetensors --input examples/data/ankle_boot.npy"
$N run models/resnet20.nn --weights "$OUT/resnet20.safetensors" \
	--input examples/data/ankle_boot.npy

step "errors point at the source"
printf 'version 1\nmodel m(x: f32[N, 3, 32, 32]) -> (y: f32[N, 10])\ngraph {\n    h = conv(x, 16, kernal = 3)\n}\n' >"$OUT/typo.nn"
echo "\$ $N ir $OUT/typo.nn"
$N ir "$OUT/typo.nn" || echo "(exit status $?)"

# The example's build rules live in the Makefile; its outputs are removed first
# so that every demo shows the commands running.
EX=build/examples
export MAKEFLAGS= # the sub-make is a step of its own, not part of the caller's -j
rm -f "$EX/libresnet18.so" "$EX/resnet18.h" "$EX/classify-resnet18"

step "netcc compile: ResNet-18 to a shared library and its C header (He-initialised weights embedded)"
echo "\$ make $EX/libresnet18.so"
make --no-print-directory "$EX/libresnet18.so"
echo "files written:"
ls -l "$EX/libresnet18.so" "$EX/resnet18.h" | sed 's/^/   /'
echo "the header, $EX/resnet18.h, begins:"
head -n 16 "$EX/resnet18.h" | sed 's/^/   | /'
echo "   | ... ($(wc -l <"$EX/resnet18.h") lines: constants, error codes, the functions)"

step "an application: examples/classify.c, built against that library and header only"
echo "\$ make $EX/classify-resnet18"
make --no-print-directory "$EX/classify-resnet18"

step "classify the bundled ankle boot with it (28x28 grey, resized to 224x224 RGB; the weights are untrained, so the classes mean nothing)"
echo "\$ $EX/classify-resnet18 --repeat 5 examples/data/ankle_boot.pgm"
"$EX/classify-resnet18" --repeat 5 examples/data/ankle_boot.pgm

step "and a colour image (a synthetic 64x64 test pattern)"
echo "\$ $EX/classify-resnet18 examples/data/test_pattern.ppm"
"$EX/classify-resnet18" examples/data/test_pattern.ppm

# ---- the training loop closed: train, compile the trained weights, classify --------------
DATA=/usr/share/datasets/fashion-mnist
TRAIN="$OUT/train"
rm -rf "$TRAIN" "$OUT/libresnet20.so" "$OUT/resnet20.h" "$OUT/classify-resnet20"

step "netcc train: ResNet-20 on Fashion-MNIST for a short while (one pass over the first 12800 training images; the full recipe, 10 epochs, reaches 93%: docs/training.md)"
echo "\$ $N train models/resnet20.nn --data fashion-mnist --epochs 1 --limit-train 12800 --limit-test 2000 --lr 0.05 --out $TRAIN"
$N train models/resnet20.nn --data fashion-mnist --epochs 1 --limit-train 12800 \
	--limit-test 2000 --lr 0.05 --out "$TRAIN"

step "compile the trained model: its weights and BatchNorm statistics go into the library (BatchNorm folded into the convolutions)"
echo "\$ $N compile models/resnet20.nn --weights $TRAIN/model.safetensors --batch 100 -o $OUT/libresnet20.so"
$N compile models/resnet20.nn --weights "$TRAIN/model.safetensors" --batch 100 \
	-o "$OUT/libresnet20.so"

step "the same examples/classify.c, built against this library"
set -- -std=c11 -O2 -Wall -Wextra -Werror -I"$OUT" -DMODEL_HEADER='"resnet20.h"' -DMODEL=resnet20 \
	-DMODEL_UPPER=RESNET20 examples/classify.c -L"$OUT" -lresnet20 -lz -lm \
	-Wl,-rpath,'$ORIGIN' -o "$OUT/classify-resnet20"
echo "\$ ${CC:-cc} -std=c11 -O2 -Wall -Wextra -Werror -I$OUT -DMODEL_HEADER='\"resnet20.h\"' -DMODEL=resnet20" \
	"-DMODEL_UPPER=RESNET20 examples/classify.c -L$OUT -lresnet20 -lz -lm -Wl,-rpath,'\$ORIGIN' -o $OUT/classify-resnet20"
${CC:-cc} "$@"

step "classify all 10000 Fashion-MNIST test images with the compiled library (none of them was trained on)"
echo "\$ $OUT/classify-resnet20 --test $DATA/t10k-images-idx3-ubyte.gz $DATA/t10k-labels-idx1-ubyte.gz"
"$OUT/classify-resnet20" --test "$DATA/t10k-images-idx3-ubyte.gz" "$DATA/t10k-labels-idx1-ubyte.gz"

step "and the ankle boot from before, now with trained weights"
echo "\$ $OUT/classify-resnet20 examples/data/ankle_boot.pgm"
"$OUT/classify-resnet20" examples/data/ankle_boot.pgm

step "the training run's curves: loss and error by epoch, rewritten after every epoch (netcc plot draws several runs into one)"
echo "\$ $N plot $TRAIN/log.csv -o $OUT/curves.svg --label resnet20"
$N plot "$TRAIN/log.csv" -o "$OUT/curves.svg" --label resnet20
ls -l "$TRAIN/curves.svg" "$OUT/curves.svg" | sed 's/^/   /'
echo "open $TRAIN/curves.svg in a browser to see them"
