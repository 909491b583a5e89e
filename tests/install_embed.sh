#!/bin/sh
# make install into $2/inst, then build examples/classify.c against a model
# the installed netcc compiled, shared and static, with pkg-config's flags
# alone (the README's build line), and run both. Run from the repository
# root $1 by test_driver's install_and_embed.
set -eu
root=$1 tmp=$2
cd "$root"
make -s install PREFIX="$tmp/inst" >"$tmp/make.log" 2>&1
I=$tmp/inst A=$tmp/app
mkdir -p "$A/static"
env -u NETCC_RUNTIME "$I/bin/netcc" compile tests/models/tiny28.nn -o "$A/libtiny28.so" 2>/dev/null
env -u NETCC_RUNTIME "$I/bin/netcc" compile tests/models/tiny28.nn --static \
	-o "$A/static/libtiny28.a" 2>/dev/null
export PKG_CONFIG_PATH="$I/lib/pkgconfig"
F=$(pkg-config --cflags --libs netcc)

cc -std=c11 -O1 -DMODEL_HEADER='"tiny28.h"' -DMODEL=tiny28 -DMODEL_UPPER=TINY28 -I"$A" \
	examples/classify.c $F -L"$A" -ltiny28 -Wl,-rpath,"$A" -o "$A/classify"
cc -std=c11 -O1 -DMODEL_HEADER='"tiny28.h"' -DMODEL=tiny28 -DMODEL_UPPER=TINY28 -I"$A/static" \
	examples/classify.c "$A/static/libtiny28.a" $F -o "$A/classify-static"
"$A/classify" examples/data/ankle_boot.npy >"$A/shared.txt"
"$A/classify-static" examples/data/ankle_boot.npy >"$A/static.txt"
"$A/classify" examples/data/ankle_boot.png >"$A/png.txt"
"$A/classify" examples/data/ankle_boot.jpg >"$A/jpeg.txt"
readelf -d "$A/libtiny28.so" >"$A/dynamic.txt"
ldd "$A/libtiny28.so" >"$A/ldd.txt"

