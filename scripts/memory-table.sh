#!/bin/sh
# Prints the memory-plan table of docs/memory.md: every model, -O2.
#   scripts/memory-table.sh [BATCH_224] [BATCH_28]
set -eu
N=${NETCC:-build/netcc}
b224=${1:-1}
b28=${2:-1}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "| model | batch | nodes | arena bytes | lower bound | naive | arena / bound | naive / arena |"
echo "|---|---|---|---|---|---|---|---|"
for m in resnet18 resnet34 resnet50 resnet101 resnet152 plain18 plain34 \
	resnet20 resnet32 resnet44 resnet56 resnet110 plain20 plain32 plain44 plain56; do
	case $m in *20|*32|*44|*56|*110) b=$b28 ;; *) b=$b224 ;; esac
	$N compile models/$m.nn --batch "$b" --weights-file --emit=llvm -o "$tmp/$m.ll" --report \
		>"$tmp/r" 2>/dev/null
	awk -v m="$m" -v b="$b" '
		/^nodes:/ {n = $2} /^arena_bytes:/ {a = $2}
		/^lower_bound_bytes:/ {l = $2} /^naive_bytes:/ {v = $2}
		END {printf "| %s | %d | %d | %d | %d | %d | %.4f | %.1f |\n", m, b, n, a, l, v, a / l, v / a}' "$tmp/r"
done
