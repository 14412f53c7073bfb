#!/bin/sh
# Runs every fuzz target in the module for the given time each (default 60s).
# Fails when a package's targets cannot be listed (a build error would
# otherwise drop its targets silently) or when one of the required fuzz
# targets (the parsers of untrusted input, the transport's origin check and
# the terminal escaping of server text; RELIABILITY.md, "Fuzzing") is
# missing.
set -eu
cd "$(dirname "$0")/.."
GO=${GO:-go}
t=${1:-60s}
required="FuzzParseTokenResponse FuzzParseErrorResponse FuzzParseDiscovery FuzzParseChallenges FuzzDecodeEntry FuzzJWTExpiry FuzzOriginCheck FuzzTerminal FuzzHTU FuzzChallenge"
list=$(mktemp)
trap 'rm -f "$list"' EXIT
pkgs=$($GO list ./...) # an assignment, so that set -e sees a failure
for pkg in $pkgs; do
	if ! out=$($GO test -list '^Fuzz' "$pkg"); then
		echo "fuzz.sh: listing the fuzz targets of $pkg failed:" >&2
		printf '%s\n' "$out" >&2
		exit 1
	fi
	# grep finds nothing in a package without fuzz targets: not an error.
	for f in $(printf '%s\n' "$out" | grep '^Fuzz' || true); do
		echo "$pkg $f" >>"$list"
	done
done
n=$(wc -l <"$list" | tr -d " ")
missing=""
for f in $required; do
	grep -q " $f\$" "$list" || missing="$missing $f"
done
if [ -n "$missing" ]; then
	echo "fuzz.sh: found $n fuzz targets; missing:$missing" >&2
	exit 1
fi
echo "fuzz.sh: $n fuzz targets, $t each"
# Go 1.26's fuzzing coordinator can fail a target with a bare "context
# deadline exceeded" at the end of -fuzztime, with no failing input, when
# the machine is busy (golang/go#75804, fixed in Go 1.27). Such a run is
# repeated once; a failure that wrote an input, or that repeats, fails.
log=$(mktemp)
trap 'rm -f "$list" "$log"' EXIT
while read -r pkg f; do
	for try in 1 2; do
		echo "== $pkg $f ($t)"
		if $GO test -run '^$' -fuzz "^$f\$" -fuzztime "$t" "$pkg" </dev/null >"$log" 2>&1; then
			cat "$log"
			break
		fi
		cat "$log"
		if [ "$try" = 1 ] && grep -q 'context deadline exceeded' "$log" &&
			! grep -q 'Failing input written\|panic:\|_test\.go:[0-9]' "$log"; then
			echo "fuzz.sh: $f stopped with the fuzzing engine's deadline race and no failing input; running it once more" >&2
			continue
		fi
		exit 1
	done
done <"$list"
