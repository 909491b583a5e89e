#!/bin/sh
# Installs the Debian 12 packages netcc needs, and only those missing.
# Safe to run repeatedly: `make`, `make test` and `make demo` call it.
#   scripts/deps.sh          build + test dependencies
#   scripts/deps.sh bench    also the reference engines for `make bench`
set -eu

# gcc-aarch64-linux-gnu and the arm64 libraries build and link --target
# aarch64 (Debian multiarch: arm64 beside amd64); qemu-user runs that code,
# and x86-64-v3 code on an emulated Haswell, in the tests. librsvg2-bin's
# rsvg-convert renders the training curves' SVG in the tests, to see that
# it draws (netcc writes the SVG itself and needs nothing to do so).
pkgs="llvm-19-dev clang-19 libclang-rt-19-dev lld-19 check
pkg-config zlib1g-dev libstb-dev libprotobuf-c-dev protobuf-c-compiler
make gcc libc6-dev valgrind libopenmpi-dev openmpi-bin
dataset-fashion-mnist gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
zlib1g-dev:arm64 librsvg2-bin"
if [ "${1:-}" = bench ]; then
	pkgs="$pkgs libopenblas-dev python3-torch python3-torchvision python3-onnx python3-numpy"
	# node and npm may come from elsewhere (NodeSource's nodejs bundles npm and
	# conflicts with Debian's npm): install Debian's only where they are absent.
	command -v node >/dev/null 2>&1 || pkgs="$pkgs nodejs"
	command -v npm >/dev/null 2>&1 || pkgs="$pkgs npm"
fi

missing=""
for p in $pkgs; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

echo "deps.sh: installing$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
case "$missing" in *:arm64*)
	dpkg --print-foreign-architectures | grep -qx arm64 || $SUDO dpkg --add-architecture arm64
esac
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
