#!/bin/sh
# install-npm-deps.sh installs the npm packages pinned by test folders (for
# example the local SQS-compatible server that the SQS rendezvous tests run).
# Idempotent: a folder whose node_modules matches its lock file is left alone.
set -eu
cd "$(dirname "$0")/.."
find . -name node_modules -prune -o -name package-lock.json -print | sort | while read -r lock; do
	dir=$(dirname "$lock")
	# npm writes node_modules/.package-lock.json after a successful install.
	if [ -f "$dir/node_modules/.package-lock.json" ] && [ "$dir/node_modules/.package-lock.json" -nt "$lock" ]; then
		continue
	fi
	echo "install-npm-deps: npm ci in $dir"
	(cd "$dir" && npm ci --silent --no-audit --no-fund >/dev/null)
done
