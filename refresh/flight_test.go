package refresh

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/oauth2"
)

// 100 goroutines start with an expired token against a rotating server
// with reuse detection: exactly 1 token request, all 100 succeed.
func TestStampedeSingleRefresh(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		stored bool // the expired token is in the store (startup) vs. in memory
	}{
		{"expired token in the store at startup", true},
		{"in-memory token reaching expiry", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				first := -time.Minute
				if !tc.stored {
					first = time.Minute
				}
				f := scene{first: first, options: idleOff, server: func(as *rotatingAS) {
					as.latency = 100 * time.Millisecond // everyone piles up on the one refresh
				}}.start(t)
				c := f.c
				if !tc.stored {
					if _, err := c.Token(t.Context()); err != nil {
						t.Fatal(err)
					}
					time.Sleep(time.Minute) // now exactly at expiry
				}
				var wg sync.WaitGroup
				toks := make([]*oauth2.Token, 100)
				errs := make([]error, 100)
				for i := range 100 {
					wg.Go(func() { toks[i], errs[i] = c.Token(context.Background()) })
				}
				wg.Wait()
				for i := range 100 {
					if errs[i] != nil {
						t.Fatalf("goroutine %d: %v", i, errs[i])
					}
					if toks[i].AccessToken != "at-1" || toks[i] != toks[0] {
						t.Fatalf("goroutine %d got %q (%p), want at-1 (%p)", i, toks[i].AccessToken, toks[i], toks[0])
					}
				}
				calls, reuses, presented := f.as.stats()
				if calls != 1 || reuses != 0 {
					t.Fatalf("upstream calls = %d, reuses = %d (presented %v), want 1 and 0", calls, reuses, presented)
				}
				if got := f.st.get(f.key); got == nil || got.RefreshToken != "rt-1" {
					t.Fatalf("store holds %+v, want rt-1", got)
				}
			})
		})
	}
}

// A 200 ms token endpoint and 12 s tokens, continuous requests over
// several refresh cycles: no Token call waits on a refresh after the first
// token, and no caller ever gets an expired token. It runs with the idle
// timer on (the timer starts each refresh) and off (a Token call past the
// advisory point starts it, and must not wait for it).
//
// A wait is any Token call that takes time: in a synctest bubble time only
// moves when every goroutine is blocked, so a call whose elapsed time is
// above zero blocked on something (a refresh, a save, the store lock),
// whichever path it took.
func TestNoStallAcrossRefreshCycles(t *testing.T) {
	t.Parallel()
	for _, idle := range []struct {
		name    string
		disable bool
	}{
		{"idle timer on", false},
		{"idle timer off", true},
	} {
		t.Run(idle.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				f := scene{life: 12 * time.Second, first: -time.Second,
					server:  func(as *rotatingAS) { as.latency = 200 * time.Millisecond },
					options: func(o *Options) { o.DisableIdleRefresh = idle.disable }}.start(t)
				c := f.c
				if _, err := c.Token(t.Context()); err != nil { // the first token: this one may wait
					t.Fatal(err)
				}
				slowPath := c.c.waits.Load()
				const workers, dur = 8, 60 * time.Second
				var (
					mu               sync.Mutex
					calls, waits     int
					longest          time.Duration
					expired, errored int
				)
				end := time.Now().Add(dur)
				var wg sync.WaitGroup
				for w := range workers {
					wg.Go(func() {
						time.Sleep(time.Duration(w) * 7 * time.Millisecond)
						for time.Now().Before(end) {
							start := time.Now()
							tok, err := c.Token(context.Background())
							took := time.Since(start)
							mu.Lock()
							calls++
							switch {
							case err != nil:
								errored++
							case !time.Now().Before(tok.Expiry):
								expired++
							}
							if took > 0 {
								waits++
								longest = max(longest, took)
							}
							mu.Unlock()
							time.Sleep(50 * time.Millisecond)
						}
					})
				}
				wg.Wait()
				upCalls, reuses, _ := f.as.stats()
				t.Logf("%d Token calls over %v, %d upstream refreshes", calls, dur, upCalls)
				if waits != 0 || errored != 0 || expired != 0 {
					t.Fatalf("Token calls that waited = %d (longest %v), errors = %d, expired tokens = %d; want all 0",
						waits, longest, errored, expired)
				}
				if n := c.c.waits.Load() - slowPath; n != 0 {
					t.Fatalf("callers that joined a refresh = %d, want 0", n)
				}
				// 12 s tokens refreshed at 75-85 %: one refresh every 9-10.2 s.
				if upCalls < 5 || upCalls > 8 || reuses != 0 {
					t.Fatalf("upstream calls = %d (reuses %d), want 5..8 and no reuse", upCalls, reuses)
				}
			})
		})
	}
}

// A caller with a 200 ms deadline while the token endpoint hangs for 5 s
// returns within 250 ms; the refresh completes for the others.
func TestCallerDeadlineWhileUpstreamHangs(t *testing.T) {
	t.Parallel()
	t.Run("synctest", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			f := scene{first: -time.Second, server: func(as *rotatingAS) {
				as.hang = 5 * time.Second // ignores ctx
			}}.start(t)
			c := f.c
			var wg sync.WaitGroup
			var other *oauth2.Token
			var otherErr error
			wg.Go(func() { other, otherErr = c.Token(context.Background()) })
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := c.Token(ctx)
			if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took > 250*time.Millisecond {
				t.Fatalf("Token = %v after %v; want DeadlineExceeded within 250ms", err, took)
			}
			wg.Wait()
			if otherErr != nil || other.AccessToken != "at-1" {
				t.Fatalf("the other caller got %v, %v; want at-1", other, otherErr)
			}
			if calls, _, _ := f.as.stats(); calls != 1 {
				t.Fatalf("upstream calls = %d, want 1", calls)
			}
		})
	})
	// The refresh runs detached from the caller that started it: an
	// Upstream that honours ctx is not cancelled when that caller leaves.
	t.Run("refresh outlives its starter", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			f := scene{first: -time.Second, server: func(as *rotatingAS) {
				as.latency = time.Second // honours ctx
			}}.start(t)
			c := f.c
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			if _, err := c.Token(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("starter: %v, want DeadlineExceeded", err)
			}
			tok, err := c.Token(context.Background())
			if err != nil || tok.AccessToken != "at-1" {
				t.Fatalf("second caller: %v, %v; want at-1 from the same refresh", tok, err)
			}
			if calls, _, _ := f.as.stats(); calls != 1 {
				t.Fatalf("upstream calls = %d, want 1", calls)
			}
		})
	})
	// The same on the real clock: the caller's own deadline ends its wait.
	// The Upstream cannot return before unblock, so a Token call that
	// returns at all before it did not wait for the refresh; no bound on
	// the wall clock is needed.
	t.Run("wall clock", func(t *testing.T) {
		t.Parallel()
		release := make(chan struct{})
		var calls int
		var mu sync.Mutex
		up := UpstreamFunc(func(ctx context.Context, _ *oauth2.Token) (*oauth2.Token, error) {
			mu.Lock()
			calls++
			mu.Unlock()
			<-release // hangs, ignoring ctx
			return &oauth2.Token{AccessToken: "at-1", Expiry: time.Now().Add(time.Hour)}, nil
		})
		var once sync.Once
		unblock := func() { once.Do(func() { close(release) }) }
		c := mustNew(t, up)
		defer c.Close()
		defer unblock() // before Close (which waits for the refresh), even if the test fails early
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if _, err := c.Token(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Token = %v while the Upstream hangs; want DeadlineExceeded", err)
		}
		unblock()
		tok, err := c.Token(context.Background())
		if err != nil || tok.AccessToken != "at-1" {
			t.Fatalf("after release: %v, %v", tok, err)
		}
		mu.Lock()
		defer mu.Unlock()
		if calls != 1 {
			t.Fatalf("upstream calls = %d, want 1 (the refresh outlived the caller)", calls)
		}
	})
}

// While the old token is valid, failed background refreshes change nothing
// for callers and are retried with jittered backoff.
func TestBackgroundFailureKeepsServingWithBackoff(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var attempts []time.Time
		f := scene{first: 10 * time.Minute, server: func(as *rotatingAS) {
			as.fail = func(n int) error {
				attempts = append(attempts, time.Now())
				if n <= 4 {
					return retrieveErr(503, "", "down")
				}
				return nil
			}
		}}.start(t)
		c, evs := f.c, f.ev
		first, err := c.Token(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(9*time.Minute + 30*time.Second)
		var last *oauth2.Token
		for time.Now().Before(deadline) {
			tok, err := c.Token(t.Context())
			if err != nil {
				t.Fatalf("Token failed while the old token was valid: %v", err)
			}
			last = tok
			time.Sleep(100 * time.Millisecond)
		}
		if last == first || last.AccessToken != "at-1" {
			t.Fatalf("token after recovery = %q, want at-1", last.AccessToken)
		}
		if len(attempts) != 5 {
			t.Fatalf("attempts = %d, want 5 (4 failures, then success)", len(attempts))
		}
		for i := 1; i < len(attempts); i++ {
			gap := attempts[i].Sub(attempts[i-1])
			lo := DefaultRetryBackoffMin << (i - 1) / 2
			if gap < lo {
				t.Fatalf("attempt %d came %v after the previous, want >= %v (backoff)", i+1, gap, lo)
			}
		}
		if n := evs.count(EventRefreshFailed); n != 4 {
			t.Fatalf("refresh-failed events = %d, want 4", n)
		}
		for _, e := range evs.all() {
			if e.Kind == EventRefreshFailed && (!errors.Is(e.Err, ErrTemporarilyUnavailable) || !e.Background) {
				t.Fatalf("failure event %+v: want a background ErrTemporarilyUnavailable", e)
			}
		}
	})
}

// During a backoff, an invalidated token is never handed out again.
func TestInvalidatedTokenNotServedDuringBackoff(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		n := 0
		c := mustNew(t, UpstreamFunc(func(context.Context, *oauth2.Token) (*oauth2.Token, error) {
			mu.Lock()
			defer mu.Unlock()
			n++
			return &oauth2.Token{AccessToken: fmt.Sprintf("at-%d", n), Expiry: time.Now().Add(3 * time.Second)}, nil
		}), idleOff)
		defer c.Close()
		tok, err := c.Token(t.Context()) // short-lived: the next refresh backs off
		if err != nil {
			t.Fatal(err)
		}
		if !c.Invalidate(tok) {
			t.Fatal("not invalidated")
		}
		tok2, err := c.Token(t.Context())
		if tok2 == tok || (err == nil) == (tok2 == nil) {
			t.Fatalf("after Invalidate: Token = %v, %v; want a new token or an error, never the invalidated one", tok2, err)
		}
		if err != nil && !errors.Is(err, ErrTemporarilyUnavailable) {
			t.Fatalf("after Invalidate: %v, want ErrTemporarilyUnavailable during the backoff", err)
		}
		time.Sleep(2 * time.Second) // past the backoff
		if tok3, err := c.Token(t.Context()); err != nil || tok3 == tok || tok3.AccessToken != "at-2" {
			t.Fatalf("after the backoff: %v, %v; want at-2", tok3, err)
		}
	})
}
