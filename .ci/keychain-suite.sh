#!/bin/sh
# Runs the keychain suite (tests named TestKeychain*) against a real Secret
# Service: gnome-keyring, unlocked, inside a private dbus-run-session, with
# its keyrings in a throwaway directory so the user's keychain is never
# touched. Without those programs the suite skips with a message, except
# under CI=true, where a skip is a failure. TestKeychainLocked locks a
# keyring, so it starts gnome-keyring instances of its own (also in private
# D-Bus sessions) rather than lock the one the other tests share. No display
# is passed on: no test can show an unlock prompt on a developer's desktop.
set -eu
cd "$(dirname "$0")/.."
GO=${GO:-go}

skip() {
	if [ "${CI:-}" = true ]; then
		echo "keychain suite: FAIL: $1 (CI=true forbids skipping; .ci/run installs gnome-keyring and dbus)" >&2
		exit 1
	fi
	echo "keychain suite: SKIP: $1"
	exit 0
}

[ "$(uname -s)" = Linux ] || skip "only runs on Linux (macOS and Windows use their native keychains)"
command -v dbus-run-session >/dev/null 2>&1 || skip "dbus-run-session not found (apt-get install dbus)"
command -v gnome-keyring-daemon >/dev/null 2>&1 || skip "gnome-keyring-daemon not found (apt-get install gnome-keyring)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
mkdir -m 0700 "$tmp/data" "$tmp/runtime" "$tmp/config"
out="$tmp/out.txt"

# Keep Go's caches where they are: only the keyring locations move.
GOCACHE=$($GO env GOCACHE) GOMODCACHE=$($GO env GOMODCACHE) \
XDG_DATA_HOME="$tmp/data" XDG_RUNTIME_DIR="$tmp/runtime" XDG_CONFIG_HOME="$tmp/config" \
TOKENWARD_KEYCHAIN_SUITE=1 \
	env -u DISPLAY -u WAYLAND_DISPLAY dbus-run-session -- sh -c '
		# A non-empty password creates and unlocks the "login" collection
		# without a prompter.
		eval "$(printf "tokenward-ci" | gnome-keyring-daemon --unlock --components=secrets)"
		export GNOME_KEYRING_CONTROL
		exec "$0" test -race -count=1 -v -run "^TestKeychain" ./...
	' "$GO" >"$out" 2>&1 || { cat "$out"; echo "keychain suite: FAIL" >&2; exit 1; }

grep -E '^(=== RUN|--- (PASS|FAIL|SKIP)|ok|FAIL|PASS)' "$out" | grep -v '=== RUN' || true
if grep -q -- '--- SKIP' "$out"; then
	grep -A2 -- '--- SKIP' "$out"
	skip "a keychain test skipped inside the Secret Service session"
fi
if ! grep -q -- '--- PASS: TestKeychain' "$out"; then
	cat "$out"
	echo "keychain suite: FAIL: no TestKeychain* test ran" >&2
	exit 1
fi
echo "keychain suite: PASS ($(grep -c -- '--- PASS: TestKeychain' "$out") tests against gnome-keyring)"
