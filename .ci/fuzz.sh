#!/bin/sh
# Runs every fuzz target in the module for the given time each (default 60s).
set -eu
cd "$(dirname "$0")/.."
GO=${GO:-go}
t=${1:-60s}
for pkg in $($GO list ./...); do
	for f in $($GO test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		echo "== $pkg $f ($t)"
		$GO test -run '^$' -fuzz "^$f\$" -fuzztime "$t" "$pkg"
	done
done
