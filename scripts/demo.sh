#!/bin/sh
# demo.sh: until the full demo exists, run the bridge server's end-to-end test,
# which moves real bytes through the real snowflake-server binary.
set -eu
cd "$(dirname "$0")/.."
./scripts/install-test-deps.sh
exec go test -count=1 -v -run 'TestEndToEnd' ./server/...
