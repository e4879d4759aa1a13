#!/bin/sh
# demo.sh runs the loopback demo (see cmd/demo): a broker, a bridge server,
# three proxies and a client carry a 100 MB download, one proxy is killed
# halfway, and the SHA-256 is checked. `make demo` builds bin/ first.
# Extra arguments go to the demo program (try -h).
set -eu
cd "$(dirname "$0")/.."
GO=${GO:-go}
BIN=${BIN:-bin}
for b in snowflake-server snowflake-broker snowflake-proxy snowflake-client; do
	if [ ! -x "$BIN/$b" ]; then
		echo "demo: $BIN/$b is missing; run \`make build\` (or \`make demo\`)" >&2
		exit 1
	fi
done
"$GO" build -trimpath -o "$BIN/snowflake-demo" ./cmd/demo
exec "$BIN/snowflake-demo" -bin "$BIN" "$@"
