#!/bin/sh
# build.sh builds the browser proxy: the WebAssembly binary, and from it the
# web page (OUT/page) and the unpacked Manifest V3 extension
# (OUT/extension). Both folders are complete and need nothing from the
# network: serve OUT/page with any static HTTP server, or load
# OUT/extension with chrome://extensions → "Load unpacked".
#
# Usage: proxy-wasm/build.sh [OUT]   (default: out/proxy-wasm)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
out=${1:-$root/out/proxy-wasm}
go=${GO:-go}

mkdir -p "$out"
out=$(cd "$out" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# -s drops the symbol table: about a quarter of the binary, and browsers
# print Go stack traces without it anyway (wasm function indices).
(cd "$root" && GOOS=js GOARCH=wasm "$go" build -trimpath -ldflags=-s -o "$tmp/snowflake.wasm" ./proxy-wasm)

goroot=$("$go" env GOROOT)
loader="$goroot/lib/wasm/wasm_exec.js"
[ -f "$loader" ] || loader="$goroot/misc/wasm/wasm_exec.js"

for target in page extension; do
	rm -rf "${out:?}/$target"
	mkdir -p "$out/$target"
	cp "$here/web/common/"* "$here/web/$target/"* "$out/$target/"
	cp "$tmp/snowflake.wasm" "$loader" "$out/$target/"
done

size=$(wc -c <"$tmp/snowflake.wasm")
gz=$(gzip -9 -c "$tmp/snowflake.wasm" | wc -c)
echo "proxy-wasm: $out/page and $out/extension (snowflake.wasm $size bytes, $gz gzipped)"
