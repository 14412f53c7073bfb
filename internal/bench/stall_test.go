package bench

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tokenward/tokenward/internal/leakscan"
)

// TestStallTokenwardNeverWaits checks that no request waits for a
// refresh, on the fake clock: over 40 s of 12 s tokens from a 200 ms token
// endpoint, no tokenward request waits at all. Inside the bubble a
// request's latency is exactly the time it spent waiting for a timer (the
// token endpoint's delay), so "over 100 ms" is exact, not noisy.
func TestStallTokenwardNeverWaits(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		cfg := StallConfig{Duration: 40 * time.Second, Pace: 100 * time.Millisecond, InMemory: true}
		r, err := RunStall(t.Context(), cfg, Tokenward)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%+v", r)
		if r.Errors != 0 {
			t.Fatalf("%d requests failed: %s", r.Errors, r.FirstError)
		}
		if r.FirstRequest < DefaultTokenLatency {
			t.Fatalf("first request took %v, want >= the token latency (the fault did not apply)", r.FirstRequest)
		}
		// First token plus a refresh every 9-10.2 s: 4 or 5 calls.
		if r.TokenCalls < 4 {
			t.Fatalf("%d token calls in 40 s of 12 s tokens, want several refreshes", r.TokenCalls)
		}
		if r.Over != 0 || r.Max >= DefaultStallThreshold {
			t.Fatalf("%d requests waited over %v (max %v), want none", r.Over, DefaultStallThreshold, r.Max)
		}
		if r.Requests < 8*int(cfg.Duration/cfg.Pace)*9/10 {
			t.Fatalf("only %d requests", r.Requests)
		}
	})
}

// The control: a token endpoint slower than tokenward's early margin (4 s
// against 1.8-3 s before expiry for 12 s tokens) makes callers wait, and the
// measurement sees it. Without this the test above could pass by measuring
// nothing.
func TestStallControlSlowEndpointIsSeen(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		cfg := StallConfig{Duration: 20 * time.Second, TokenLatency: 4 * time.Second, Pace: 50 * time.Millisecond, InMemory: true}
		r, err := RunStall(t.Context(), cfg, Tokenward)
		if err != nil {
			t.Fatal(err)
		}
		if r.Over == 0 || r.OverAtRefresh != r.Over {
			t.Fatalf("over %d (at a refresh %d), want > 0, all at a refresh: %+v", r.Over, r.OverAtRefresh, r)
		}
	})
}

// x/oauth2 cannot run in a synctest bubble here: its callers queue on a
// sync.Mutex while the holder waits for the token endpoint's timer, and a
// goroutine blocked on a mutex is not durably blocked, so the fake clock
// would never advance. It runs on the real clock instead, briefly: an 11 s
// token is refreshed after 1 s (x/oauth2 expires tokens 10 s early), and
// every worker waits for that refresh.
func TestStallXOAuth2WaitsAtRefresh(t *testing.T) {
	t.Parallel()
	cfg := StallConfig{Duration: 1500 * time.Millisecond, TokenLifetime: 11 * time.Second, Pace: time.Millisecond, InMemory: true}
	r, err := RunStall(t.Context(), cfg, XOAuth2)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", r)
	if r.Errors != 0 {
		t.Fatalf("%d requests failed: %s", r.Errors, r.FirstError)
	}
	if r.TokenCalls < 2 {
		t.Fatalf("%d token calls, want the first and at least one refresh", r.TokenCalls)
	}
	// Every worker's next request queues behind the refresh. (Raw count:
	// machine pauses only make requests slower, while OverAtRefresh may
	// discount a wait that a pause happened to overlap.)
	if r.Over < DefaultStallWorkers {
		t.Fatalf("%d requests over %v, want at least one per worker", r.Over, DefaultStallThreshold)
	}
}

// The real thing, very short: loopback sockets, both clients, the table,
// and no token in it. One-minute tokens: no refresh is due even if the host
// stalls the test for seconds.
func TestStallTableOverSockets(t *testing.T) {
	t.Parallel()
	cfg := StallConfig{Duration: 300 * time.Millisecond, TokenLifetime: time.Minute}
	var results []StallResult
	for _, c := range []string{Tokenward, XOAuth2} {
		r, err := RunStall(t.Context(), cfg, c)
		if err != nil {
			t.Fatal(err)
		}
		if r.Errors != 0 || r.Requests == 0 || r.TokenCalls != 1 {
			t.Fatalf("%s: %d requests, %d errors (%s), %d token calls; want some, none, 1", c, r.Requests, r.Errors, r.FirstError, r.TokenCalls)
		}
		results = append(results, r)
	}
	var out strings.Builder
	if err := WriteStallTable(&out, cfg, results); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	for _, want := range []string{"\n  tokenward", "\n   x-oauth2", "over 100ms"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if found := leakscan.Find(out.String()); len(found) > 0 {
		t.Fatalf("secret-shaped strings in the output: %v", found)
	}
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	var s []time.Duration
	for i := 1; i <= 200; i++ {
		s = append(s, ms(i))
	}
	for _, tc := range []struct {
		in   []time.Duration
		p    int
		want time.Duration
	}{
		{nil, 50, 0},
		{[]time.Duration{ms(7)}, 99, ms(7)},
		{s, 50, ms(100)},
		{s, 99, ms(198)},
		{s, 100, ms(200)},
		{s[:10], 99, ms(10)},
	} {
		if got := percentile(tc.in, tc.p); got != tc.want {
			t.Errorf("percentile(%d values, %d) = %v, want %v", len(tc.in), tc.p, got, tc.want)
		}
	}
}

func TestOverlap(t *testing.T) {
	t.Parallel()
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	spans := []span{{at(10), at(20)}, {at(50), at(80)}, {at(100), at(300)}}
	for _, tc := range []struct {
		from, to int
		want     time.Duration
	}{
		{0, 10, 0},
		{0, 15, 5 * time.Millisecond},
		{15, 60, 15 * time.Millisecond},
		{0, 400, 240 * time.Millisecond},
		{85, 95, 0},
		{150, 160, 10 * time.Millisecond},
	} {
		if got := overlap(span{at(tc.from), at(tc.to)}, spans); got != tc.want {
			t.Errorf("overlap(%d..%d) = %v, want %v", tc.from, tc.to, got, tc.want)
		}
	}
}
