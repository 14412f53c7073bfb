package refresh

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/oauth2"
)

// rejectAll plays a resource server that rejects every token (a token for
// the wrong audience): n requests, each fetching the current token and
// invalidating it, as the transport does on a 401 invalid_token, every
// gap apart. It returns the Upstream calls made meanwhile.
func rejectAll(t *testing.T, c *Cache, as *rotatingAS, n int, gap time.Duration) int {
	t.Helper()
	before, _, _ := as.stats()
	for i := range n {
		tok, err := c.Token(t.Context())
		if err != nil {
			t.Fatalf("request %d: Token: %v", i, err)
		}
		c.Invalidate(tok)
		time.Sleep(gap)
	}
	after, _, _ := as.stats()
	return after - before
}

// A resource server that rejects every token must not drive the token
// endpoint: the first rejection of a token refreshes at once, but a token
// that was issued moments ago in answer to a rejection and is rejected as
// well is not replaced at once; forced refreshes then back off (jittered,
// exponential) and need twice as many rejections each time, so refreshes
// grow with the logarithm of the requests, not with the requests.
func TestRejectedTokensDoNotDriveRefreshes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n   int
		gap time.Duration
	}{
		{30, 0},                       // a burst
		{30, 10 * time.Millisecond},   // a busy client
		{1000, 10 * time.Millisecond}, // 10 s of it
		{3000, 100 * time.Millisecond},
	} {
		t.Run(fmt.Sprintf("%d requests %v apart", tc.n, tc.gap), func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				f := scene{first: time.Hour, memory: true}.start(t)
				as, c, ev := f.as, f.c, f.ev
				calls := rejectAll(t, c, as, tc.n, tc.gap)
				bound := 2 + int(math.Log2(float64(tc.n)))
				t.Logf("%d requests: %d refreshes (bound %d), %d EventTokenRejected", tc.n, calls, bound, ev.count(EventTokenRejected))
				if calls > bound {
					t.Fatalf("%d requests rejected: %d refreshes, want at most %d", tc.n, calls, bound)
				}
				if calls < 1 {
					t.Fatalf("the first rejection did not refresh")
				}
				if ev.count(EventTokenRejected) == 0 {
					t.Fatal("no EventTokenRejected")
				}
				for _, e := range ev.all() {
					if e.Kind == EventTokenRejected && !errors.Is(e.Err, ErrTokenRejected) {
						t.Fatalf("EventTokenRejected carries %v, want an error matching ErrTokenRejected", e.Err)
					}
				}
			})
		})
	}
}

// A token rejected once (revoked, or the server's expiry differs) is
// replaced at once, and so is the next one after a normal, scheduled
// refresh: the rate limit applies only to tokens issued in answer to a
// rejection. A new login ends it too.
func TestFirstRejectionRefreshes(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := scene{life: time.Minute, first: time.Minute, memory: true, options: func(o *Options) { o.Jitter = -1 }}.start(t)
		as, c := f.as, f.c
		invalidate := func() bool {
			tok, err := c.Token(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			return c.Invalidate(tok)
		}
		if !invalidate() {
			t.Fatal("the first rejection of a token did not invalidate it")
		}
		if invalidate() {
			t.Fatal("the token issued in answer to a rejection was replaced at once when rejected too")
		}
		// A scheduled refresh (the token reaches its advisory point) brings a
		// token nobody rejected: its first rejection counts again.
		time.Sleep(55 * time.Second)
		c.Token(t.Context())
		synctest.Wait()
		if !invalidate() {
			t.Fatal("the first rejection of a token from a scheduled refresh did not invalidate it")
		}
		if invalidate() {
			t.Fatal("rate limit lost after a scheduled refresh")
		}
		// A login ends the rate limit.
		if err := c.Set(t.Context(), as.initial(time.Now().Add(time.Minute))); err != nil {
			t.Fatal(err)
		}
		if !invalidate() {
			t.Fatal("the first rejection after a login did not invalidate the token")
		}
	})
}

// Many goroutines hit by the same 401s at once: one forced refresh, one
// event, however many of them report the rejection.
func TestConcurrentRejections(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := scene{first: time.Hour, memory: true}.start(t)
		as, c, ev := f.as, f.c, f.ev
		for round := range 3 {
			tok, err := c.Token(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			for range 30 {
				wg.Go(func() { c.Invalidate(tok) })
			}
			wg.Wait()
			if _, err := c.Token(t.Context()); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		calls, _, _ := as.stats()
		if calls != 1 {
			t.Fatalf("90 concurrent rejections in 3 rounds: %d refreshes, want 1", calls)
		}
		if n := ev.count(EventTokenRejected); n != 1 {
			t.Fatalf("%d EventTokenRejected, want 1", n)
		}
	})
}

// A token issued after a rejection that then works (the resource server
// accepted it) is an ordinary token: when it is rejected later, a
// revocation, it is replaced at once.
func TestAcceptedTokenRejectedLaterRefreshes(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := scene{first: time.Hour, memory: true}.start(t)
		as, c, ev := f.as, f.c, f.ev
		for round := range 5 {
			tok, err := c.Token(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			c.Accepted("", tok) // it worked for a while
			time.Sleep(time.Minute)
			if !c.Invalidate(tok) {
				t.Fatalf("round %d: a token that had worked was not replaced when rejected", round)
			}
		}
		if _, err := c.Token(t.Context()); err != nil {
			t.Fatal(err)
		}
		if calls, _, _ := as.stats(); calls != 5 {
			t.Fatalf("%d refreshes for 5 revocations, want 5", calls)
		}
		if n := ev.count(EventTokenRejected); n != 0 {
			t.Fatalf("%d EventTokenRejected for tokens that had worked", n)
		}
		// Accepted of another token than the current one changes nothing.
		tok, _ := c.Token(t.Context())
		c.Accepted("", &oauth2.Token{AccessToken: tok.AccessToken})
		c.Invalidate(tok)
		tok2, _ := c.Token(t.Context())
		if c.Invalidate(tok2) {
			t.Fatal("a forced token that never worked was replaced at once")
		}
	})
}

// One token, two APIs: A accepts every token, B (another audience)
// rejects every token. A's acceptances must not let B's rejections drive
// the token endpoint: the limit is per origin.
func TestRejectionLimitIsPerOrigin(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		as := newRotatingAS(time.Hour)
		var ev eventLog
		c := mustNew(t, as, func(o *Options) { o.OnEvent = ev.add })
		defer c.Close()
		if err := c.Set(t.Context(), as.initial(time.Now().Add(time.Hour))); err != nil {
			t.Fatal(err)
		}
		const n = 1000
		for range n {
			tok, err := c.Token(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			c.Accepted("https://a.example:443", tok)
			tok, err = c.Token(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			c.Rejected("https://b.example:443", tok)
			time.Sleep(10 * time.Millisecond)
		}
		calls, _, _ := as.stats()
		bound := 2 + int(math.Log2(n))
		t.Logf("%d rejections by B between acceptances by A: %d refreshes (bound %d)", n, calls, bound)
		if calls > bound {
			t.Fatalf("%d refreshes, want at most %d: A's acceptances reset B's limit", calls, bound)
		}
		// A token that B had accepted and then rejects (revoked) is
		// replaced at once, even in the middle of A's episode.
		tok, _ := c.Token(t.Context())
		c.Accepted("https://b.example:443", tok)
		if !c.Rejected("https://b.example:443", tok) {
			t.Fatal("a token B had accepted was not replaced when B rejected it")
		}
	})
}
