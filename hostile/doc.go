// Package hostile is tokenward's hostile-world test suite: it tries hard to
// break the SDK's promises from the outside (no stored token lost, no
// refresh token replayed, no request stalled by a refresh, no secret in a
// log or an error), through the public API only (client.New with
// client.Options, and a store from store.Open), against the fake
// authorization server and API of package oauthtest and the fake keychains
// of internal/fakekeychain. The package has no code of its own; everything
// is in its tests, and RELIABILITY.md at the repository root reports their
// results.
//
// # The fault matrix
//
// Each row of the matrix is a (sub)test that injects one failure and then
// checks the three things every row promises:
//
//   - a typed error, matched with errors.Is against the client, refresh and
//     store sentinels, within the row's deadline (or, where the SDK is meant
//     to recover by itself, no error at all);
//   - no stored token lost or corrupted: afterwards the store holds a token
//     set the server still honours, or the documented re-authentication
//     state (entry removed, [client.ErrReauthRequired]);
//   - no refresh token replayed: the server's record of refresh-token
//     presentations (oauthtest's Server.RefreshPresentations and
//     Server.Stats) shows no token presented again after the server
//     consumed it, and no blind retry of a request that may have reached
//     the server.
//
// The rows are grouped by where the failure happens: the token endpoint
// during a refresh (matrix_endpoint_test.go), the login grants, client
// credentials and discovery (matrix_grants_test.go), the keychain
// (matrix_keychain_test.go) and the process itself, killed with SIGKILL at
// each step of refresh-and-save, or sharing the store with another process
// (matrix_kill_test.go). A row that found a bug in the SDK keeps its test,
// which fails (never skips) if the bug comes back. The kill rows
// re-execute the test binary as a child (see TestMain and child_test.go)
// that refreshes through a file-mode store in a temporary directory; a
// store wrapper in the child announces each step on its standard output
// and, for the deterministic kill points, waits there until the parent
// kills it.
//
// # The soak
//
// TestSoak (soak_test.go; its children in soak_child_test.go) runs several
// child processes with many goroutines each, sharing one encrypted-file
// store, against a server issuing short-lived tokens while faults are
// injected at random into the token endpoint and into each child's store. It then counts forced re-logins, lost tokens, reused refresh
// tokens, leaked secrets and leaked goroutines. It runs for about 15 s by
// default; TOKENWARD_SOAK (a Go duration, e.g. 2m) sets another duration,
// TOKENWARD_SOAK_PROCS and TOKENWARD_SOAK_GOROUTINES the load, and
// TOKENWARD_SOAK_GRACE a refresh-token reuse grace (none by default, so that
// any presentation of a consumed refresh token fails the soak; a window,
// e.g. 10s, also turns on the lost-response faults only a window survives).
// TOKENWARD_KILL_SAMPLES sets how many kills TestKillDuringSave samples.
//
// # Secrets
//
// Every token the fake server issues carries a canary core, and the client
// secrets here are canaries too. TestCanaryScan and the soak search every
// captured log line (all levels), every error string (%v, %+v and %#v) and the
// documented output of every example for them (internal/leakscan,
// internal/canary), and every matrix row built on newWorld scans its
// client's log, its recorded errors and events and the fake server's log
// when it ends.
//
// # Fuzzing
//
// The parsers of untrusted input have their fuzz targets next to them;
// TestFuzzTargetsExist checks that each one is still there with a seed
// corpus under testdata/fuzz, and `make fuzz` runs them.
package hostile
