#!/usr/bin/env bash
# fuzz.sh runs every fuzz target of the module for a bounded time each
# (FUZZTIME, default 10s). It stops at the first crash, which `go test`
# writes to the package's testdata/fuzz directory.
set -euo pipefail
fuzztime=${FUZZTIME:-10s}
cd "$(dirname "$0")/.."
for pkg in $(go list ./...); do
	for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		echo "fuzz: $pkg $target ($fuzztime)"
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg"
	done
done
