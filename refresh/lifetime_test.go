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

// Short-lived tokens (issued for 1, 2 or 4 s, behind a token endpoint that
// takes 300 ms) are served only while the server still honours them, never
// past the expiry it gave; a short lifetime is not a failure, so nothing
// backs off, no caller ever gets an error, and the refresh rate follows the
// lifetime (about one refresh per 80 % of it). 8 goroutines call for 25 s.
func TestShortLifetimesServedWithinServerExpiry(t *testing.T) {
	t.Parallel()
	for _, life := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		t.Run(life.String(), func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				as := newRotatingAS(life)
				as.latency = 300 * time.Millisecond
				if life == time.Second {
					as.latency = 100 * time.Millisecond
				}
				var mu sync.Mutex
				serverExp := map[string]time.Time{} // access token -> the expiry the server gave
				as.mkAT = func(g int, exp time.Time) string {
					at := fmt.Sprintf("at-%d", g)
					mu.Lock()
					serverExp[at] = exp
					mu.Unlock()
					return at
				}
				var ev eventLog
				c := mustNew(t, as, func(o *Options) { o.OnEvent = ev.add })
				defer c.Close()
				if err := c.Set(t.Context(), as.initial(time.Now().Add(life))); err != nil {
					t.Fatal(err)
				}
				t0 := time.Now()
				var wg sync.WaitGroup
				var fails, late, calls int
				for range 8 {
					wg.Go(func() {
						for time.Since(t0) < 25*time.Second {
							tok, err := c.Token(t.Context())
							now := time.Now()
							mu.Lock()
							calls++
							switch {
							case err != nil:
								fails++
								if fails == 1 {
									t.Errorf("Token at %v: %v", now.Sub(t0), err)
								}
							case !now.Before(serverExp[tok.AccessToken]):
								late++
								if late == 1 {
									t.Errorf("Token at %v returned %s, which the server expired at %v", now.Sub(t0), tok.AccessToken, serverExp[tok.AccessToken].Sub(t0))
								}
							case tok.Expiry.After(serverExp[tok.AccessToken]):
								late++
								if late == 1 {
									t.Errorf("%s: Expiry %v is later than the server's %v", tok.AccessToken, tok.Expiry.Sub(t0), serverExp[tok.AccessToken].Sub(t0))
								}
							}
							mu.Unlock()
							time.Sleep(10 * time.Millisecond)
						}
					})
				}
				wg.Wait()
				refreshes, _, _ := as.stats()
				t.Logf("%d Token calls, %d failed, %d past the server's expiry; %d refreshes", calls, fails, late, refreshes)
				if n := ev.count(EventRefreshFailed); n != 0 {
					t.Errorf("%d EventRefreshFailed for tokens that were merely short-lived", n)
				}
				// One refresh per 75-85 % of the lifetime (plus the latency):
				// neither a backoff that lets tokens run out, nor a loop.
				lo, hi := int(25*time.Second/life), int(25*time.Second/(life*7/10))+2
				if refreshes < lo || refreshes > hi {
					t.Errorf("%d refreshes in 25 s of %v tokens, want %d..%d", refreshes, life, lo, hi)
				}
			})
		})
	}
}

// A token that arrives already expired (a wrong clock, or an Upstream that
// computes Expiry badly) is never served: the server said it is dead. Its
// refresh counts as failed and backs off, so such a server costs a
// handful of calls, not a loop; callers get ErrTemporarilyUnavailable
// naming the cause. A rotated refresh token that comes with it is kept.
func TestExpiredOnArrivalNeverServed(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		var mu sync.Mutex
		n := 0
		up := UpstreamFunc(func(_ context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
			mu.Lock()
			defer mu.Unlock()
			n++
			return &oauth2.Token{AccessToken: fmt.Sprintf("at-%d", n), RefreshToken: fmt.Sprintf("rt-%d", n), Expiry: time.Now().Add(-time.Second)}, nil
		})
		key := testKey(t)
		st.put(key, &oauth2.Token{AccessToken: "old", RefreshToken: "rt-0", Expiry: time.Now().Add(-time.Minute)})
		c := mustNewKey(t, key, up, func(o *Options) { o.Persister = st })
		defer c.Close()
		t0 := time.Now()
		for time.Since(t0) < 2*time.Minute {
			tok, err := c.Token(t.Context())
			if err == nil {
				t.Fatalf("Token at %v returned %s, which arrived expired", time.Since(t0), tok.AccessToken)
			}
			if !errors.Is(err, ErrTemporarilyUnavailable) {
				t.Fatalf("Token at %v: %v, want ErrTemporarilyUnavailable", time.Since(t0), err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		mu.Lock()
		calls := n
		mu.Unlock()
		// Backoff 1 s, 2 s, ... 30 s: a dozen calls in two minutes at most.
		if calls > 12 {
			t.Fatalf("%d upstream calls in 2 minutes for tokens that arrive expired, want at most 12", calls)
		}
		if got := st.get(key); got == nil || got.RefreshToken != fmt.Sprintf("rt-%d", calls) {
			t.Fatalf("stored refresh token = %v, want the last rotated one (rt-%d)", got, calls)
		}
	})
}
