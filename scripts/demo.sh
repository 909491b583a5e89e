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

step "errors point at the source"
printf 'version 1\nmodel m(x: f32[N, 3, 32, 32]) -> (y: f32[N, 10])\ngraph {\n    h = conv(x, 16, kernal = 3)\n}\n' >"$OUT/typo.nn"
echo "\$ $N ir $OUT/typo.nn"
$N ir "$OUT/typo.nn" || echo "(exit status $?)"
