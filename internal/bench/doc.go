// Package bench measures tokenward side by side with golang.org/x/oauth2, in
// the same process, against the same kind of fake authorization server
// (oauthtest), so that every figure is a ratio taken in one run on one
// machine rather than an absolute time. BENCHMARKS.md at the repository root
// lists the figures, the commands that produced them and the machine.
//
// # Micro-benchmarks
//
// The two micro-benchmarks live next to the code they measure, because they
// need its test helpers:
//
//   - BenchmarkToken/{tokenward,x-oauth2} in refresh/bench_test.go: a read of
//     a fresh token, refresh.Cache.Token against oauth2.ReuseTokenSource
//     (a mutex around every read), b.RunParallel with SetParallelism(16).
//   - BenchmarkTransport/{floor,tokenward,x-oauth2} in
//     transport/bench_test.go: one RoundTrip of a GET carrying an 800-byte
//     token to an in-memory base that answers at once. "floor" is the work
//     every correct injecting transport must do (copy the request and its
//     header map, set one precomputed Authorization value).
//
// Run them with
//
//	go test -run '^$' -bench 'Token|Transport' -count 6 ./refresh/ ./transport/
//
// # Stall
//
// [RunStall] (go run ./bench/stall) sends requests without pause from 8
// goroutines through an *http.Client to a protected API for a fixed time,
// while the token endpoint answers after a delay (default 200 ms) and access
// tokens live 12 s. It records the latency of every request and reports the
// number of requests, of token-endpoint calls, p50, p99, the maximum and how
// many requests took longer than 100 ms. The very first request, which has to
// wait for the first token on both sides, is reported on its own and left
// out of the latency figures. tokenward refreshes in the background while
// requests keep using the current token, so none of them should wait;
// x/oauth2's ReuseTokenSource holds a mutex across the token request, so
// every request in flight waits for each refresh.
//
// On a shared machine requests are also slowed by the host. A bystander
// goroutine that wakes up every 5 ms records the machine's pauses (gaps over
// 20 ms in which the process did not run), and the slow requests are split:
// those in flight while a token request was (recorded by the base
// transport) and still over 100 ms once the pauses they overlap are taken
// out are the ones a refresh can have caused; the others are the machine's.
// The raw count is printed too. The tests run the
// tokenward side under testing/synctest on the fake clock as well, where a
// request's latency is exactly the time it waited for the token endpoint.
//
// # Stampede
//
// [RunGoroutineStampede] and [RunProcessStampede] (go run ./bench/stampede)
// start from a stored token that has just expired and count the token-endpoint
// calls made when N goroutines of one process (default 100), or P processes
// (default 5, re-executions of the running binary) sharing one store, all
// make a request at the same moment. tokenward's processes share a
// store.Store (encrypted-file by default) and its cross-process lock;
// x/oauth2's processes are modelled on the usual hand-written code: load the
// token from a JSON file, let the TokenSource refresh it when it has
// expired, write it back if it changed, with no lock.
package bench
