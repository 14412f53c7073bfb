package refresh

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/canary"
)

// AC 1 (C-01): 100 goroutines start with an expired token against a
// rotating server with reuse detection: exactly 1 token request, all 100
// succeed.
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
				as := newRotatingAS(time.Hour)
				as.latency = 100 * time.Millisecond // everyone piles up on the one refresh
				st := newMemStore()
				key := testKey(t)
				c := mustNewKey(t, key, as, func(o *Options) { o.Persister = st; o.DisableIdleRefresh = true })
				defer c.Close()
				if tc.stored {
					st.put(key, as.initial(time.Now().Add(-time.Minute)))
				} else {
					st.put(key, as.initial(time.Now().Add(time.Minute)))
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
				calls, reuses, presented := as.stats()
				if calls != 1 || reuses != 0 {
					t.Fatalf("upstream calls = %d, reuses = %d (presented %v), want 1 and 0", calls, reuses, presented)
				}
				if got := st.get(key); got == nil || got.RefreshToken != "rt-1" {
					t.Fatalf("store holds %+v, want rt-1", got)
				}
			})
		})
	}
}

// AC 3: a 200 ms token endpoint and 12 s tokens, continuous requests over
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
				as := newRotatingAS(12 * time.Second)
				as.latency = 200 * time.Millisecond
				st := newMemStore()
				key := testKey(t)
				st.put(key, as.initial(time.Now().Add(-time.Second)))
				c := mustNewKey(t, key, as, func(o *Options) { o.Persister = st; o.DisableIdleRefresh = idle.disable })
				defer c.Close()
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
				upCalls, reuses, _ := as.stats()
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

// AC 4 (O-01): the cache is restarted three times between rotations against
// a rotating server: never a re-login.
func TestRestartBetweenRotations(t *testing.T) {
	t.Parallel()
	run := func(t *testing.T, st *memStore) (reauth bool, as *rotatingAS) {
		as = newRotatingAS(time.Minute)
		key := testKey(t)
		st.put(key, as.initial(time.Now().Add(-time.Second)))
		for i := range 4 { // the first start plus three restarts
			c, err := New(key, as, func(o *Options) { o.Persister = st })
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Token(t.Context())
			c.Close()
			if errors.Is(err, ErrReauthRequired) {
				return true, as
			}
			if err != nil {
				t.Fatalf("start %d: %v", i, err)
			}
			time.Sleep(2 * time.Minute) // the token expires while the process is down
		}
		return false, as
	}
	t.Run("persisted", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			st := newMemStore()
			reauth, as := run(t, st)
			calls, reuses, presented := as.stats()
			if reauth || calls != 4 || reuses != 0 {
				t.Fatalf("reauth = %v, calls = %d, reuses = %d, presented %v; want no reauth, 4 calls, 0 reuses", reauth, calls, reuses, presented)
			}
		})
	})
	// The same scenario when rotated tokens are not persisted (x/oauth2's
	// behaviour) must hit reuse detection: proves the test can fail.
	t.Run("control: rotation lost", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			st := newMemStore()
			st.ignore = true
			reauth, as := run(t, st)
			if _, reuses, _ := as.stats(); !reauth || reuses == 0 {
				t.Fatalf("reauth = %v, reuses = %d; the fake should have detected reuse", reauth, reuses)
			}
		})
	})
}

// AC 5 (C-04): Save fails once right after a rotation: the new refresh token
// reaches the store by the next access and the old one is never presented
// again.
func TestSaveFailsOnceAfterRotation(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		as := newRotatingAS(time.Minute)
		st := newMemStore()
		key := testKey(t)
		st.put(key, as.initial(time.Now().Add(-time.Second)))
		var evs eventLog
		c := mustNewKey(t, key, as, func(o *Options) { o.Persister = st; o.OnEvent = evs.add })
		defer c.Close()
		st.failSaves = 1
		tok, err := c.Token(t.Context())
		if err != nil || tok.AccessToken != "at-1" {
			t.Fatalf("Token = %v, %v; want at-1 despite the failed save", tok, err)
		}
		if n := evs.count(EventPersistFailed); n != 1 {
			t.Fatalf("persist-failed events = %d, want 1", n)
		}
		for _, e := range evs.all() {
			if e.Kind == EventPersistFailed && !errors.Is(e.Err, ErrPersistFailed) {
				t.Fatalf("event error %v does not match ErrPersistFailed", e.Err)
			}
		}
		// The full set's save failed, but the fallback stored a reduced set
		// with rt-1 under the same lock (no access token, expired), so the
		// store never keeps the spent rt-0 for another process to present.
		if got := st.get(key); got.RefreshToken != "rt-1" || got.AccessToken != "" || got.Expiry.After(time.Now()) {
			t.Fatalf("store = %q/%q/%v before the next access, want the reduced set rt-1 without an access token", got.RefreshToken, got.AccessToken, got.Expiry)
		}
		// The next access saves the full set, in the background: it gets
		// the token at once.
		tok2, err := c.Token(t.Context())
		if err != nil || tok2 != tok {
			t.Fatalf("second Token = %p, %v; want the same token %p", tok2, err, tok)
		}
		evs.wait(t, EventPersisted, 1)
		if got := st.get(key); got.RefreshToken != "rt-1" || got.AccessToken != "at-1" {
			t.Fatalf("store = %q/%q after the next access, want at-1/rt-1", got.AccessToken, got.RefreshToken)
		}
		if n := evs.count(EventPersistFailed); n != 1 {
			t.Fatalf("persist-failed events = %d, want exactly 1", n)
		}
		time.Sleep(time.Minute) // the idle timer refreshes at 75-85 %
		if tok, err := c.Token(t.Context()); err != nil || tok.AccessToken != "at-2" {
			t.Fatalf("a minute later: %v, %v; want at-2", tok, err)
		}
		_, reuses, presented := as.stats()
		if reuses != 0 || len(presented) != 2 || presented[0] != "rt-0" || presented[1] != "rt-1" {
			t.Fatalf("presented %v (reuses %d), want [rt-0 rt-1]", presented, reuses)
		}
	})
}

// C-04, harder: the store keeps failing through the next refresh. The older
// stored token must not be read over the newer one in memory.
func TestSaveKeepsFailingNeverPresentsOldRT(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		as := newRotatingAS(time.Minute)
		st := newMemStore()
		key := testKey(t)
		st.put(key, as.initial(time.Now().Add(-time.Second)))
		var evs eventLog
		c := mustNewKey(t, key, as, func(o *Options) { o.Persister = st; o.OnEvent = evs.add; o.DisableIdleRefresh = true })
		defer c.Close()
		st.failSaves = 1000
		for range 5 {
			if tok, err := c.Token(t.Context()); err != nil || tok.AccessToken != "at-1" {
				t.Fatalf("Token = %v, %v; want at-1", tok, err)
			}
		}
		if n := evs.count(EventPersistFailed); n != 1 {
			t.Fatalf("persist-failed events = %d, want 1 for one token", n)
		}
		time.Sleep(2 * time.Minute)
		if tok, err := c.Token(t.Context()); err != nil || tok.AccessToken != "at-2" {
			t.Fatalf("after expiry: %v, %v; want at-2", tok, err)
		}
		_, reuses, presented := as.stats()
		if reuses != 0 || len(presented) != 2 || presented[1] != "rt-1" {
			t.Fatalf("presented %v (reuses %d), want [rt-0 rt-1]", presented, reuses)
		}
		st.mu.Lock()
		st.failSaves = 0
		st.mu.Unlock()
		time.Sleep(30 * time.Second) // past the save backoff
		if _, err := c.Token(t.Context()); err != nil {
			t.Fatal(err)
		}
		evs.wait(t, EventPersisted, 1) // the access's background save retry
		if got := st.get(key); got.RefreshToken != "rt-2" {
			t.Fatalf("store = %q once saving works again, want rt-2", got.RefreshToken)
		}
	})
}

// AC 6 (O-03): a caller with a 200 ms deadline while the token endpoint
// hangs for 5 s returns within 250 ms; the refresh completes for the others.
func TestCallerDeadlineWhileUpstreamHangs(t *testing.T) {
	t.Parallel()
	t.Run("synctest", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			as := newRotatingAS(time.Hour)
			as.hang = 5 * time.Second // ignores ctx
			st := newMemStore()
			key := testKey(t)
			st.put(key, as.initial(time.Now().Add(-time.Second)))
			c, err := New(key, as, func(o *Options) { o.Persister = st })
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var wg sync.WaitGroup
			var other *oauth2.Token
			var otherErr error
			wg.Go(func() { other, otherErr = c.Token(context.Background()) })
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err = c.Token(ctx)
			if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took > 250*time.Millisecond {
				t.Fatalf("Token = %v after %v; want DeadlineExceeded within 250ms", err, took)
			}
			wg.Wait()
			if otherErr != nil || other.AccessToken != "at-1" {
				t.Fatalf("the other caller got %v, %v; want at-1", other, otherErr)
			}
			if calls, _, _ := as.stats(); calls != 1 {
				t.Fatalf("upstream calls = %d, want 1", calls)
			}
		})
	})
	// The refresh runs detached from the caller that started it: an
	// Upstream that honours ctx is not cancelled when that caller leaves.
	t.Run("refresh outlives its starter", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			as := newRotatingAS(time.Hour)
			as.latency = time.Second // honours ctx
			st := newMemStore()
			key := testKey(t)
			st.put(key, as.initial(time.Now().Add(-time.Second)))
			c := mustNewKey(t, key, as, func(o *Options) { o.Persister = st })
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			if _, err := c.Token(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("starter: %v, want DeadlineExceeded", err)
			}
			tok, err := c.Token(context.Background())
			if err != nil || tok.AccessToken != "at-1" {
				t.Fatalf("second caller: %v, %v; want at-1 from the same refresh", tok, err)
			}
			if calls, _, _ := as.stats(); calls != 1 {
				t.Fatalf("upstream calls = %d, want 1", calls)
			}
		})
	})
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
		start := time.Now()
		_, err := c.Token(ctx)
		took := time.Since(start)
		if !errors.Is(err, context.DeadlineExceeded) || took > 250*time.Millisecond {
			t.Fatalf("Token = %v after %v; want DeadlineExceeded within 250ms", err, took)
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

// AC 7 (O-06, O-07, cache side): whatever Expiry a token reaches the cache
// with, it is used (never thrown away) and gets a defined, finite expiry and
// schedule. These rows inject oauth2.Token values directly; the wire side
// (expires_in as int, string, float, null, absent, negative, 0, 2^40 in
// JSON and form bodies, through internal/oauthwire) is
// TestExpiresInThroughWireParser. Note that the parser maps expires_in 0,
// negative and absent to a zero Expiry (unknown), not to "now".
func TestExpiryEdgeCases(t *testing.T) {
	t.Parallel()
	const huge = 1 << 40 // seconds
	type mk func(now time.Time) *oauth2.Token
	for _, tc := range []struct {
		name string
		tok  mk
		want func(now time.Time) time.Time
	}{
		{"zero, opaque token: default lifetime",
			func(now time.Time) *oauth2.Token { return &oauth2.Token{AccessToken: "opaque"} },
			func(now time.Time) time.Time { return now.Add(DefaultLifetime) }},
		{"zero, JWT exp in 30 min",
			func(now time.Time) *oauth2.Token {
				return &oauth2.Token{AccessToken: canary.JWT("at", now.Add(30*time.Minute).Unix())}
			},
			func(now time.Time) time.Time { return time.Unix(now.Add(30*time.Minute).Unix(), 0) }},
		{"zero, JWT exp in the past: dead on arrival",
			func(now time.Time) *oauth2.Token {
				return &oauth2.Token{AccessToken: canary.JWT("at", now.Add(-time.Hour).Unix())}
			},
			nil},
		{"zero, JWT without exp",
			func(now time.Time) *oauth2.Token { return &oauth2.Token{AccessToken: canary.JWT("at", 0)} },
			func(now time.Time) time.Time { return now.Add(DefaultLifetime) }},
		{"zero, JWT with absurd exp",
			func(now time.Time) *oauth2.Token { return &oauth2.Token{AccessToken: canary.JWT("at", 1<<50)} },
			func(now time.Time) time.Time { return now.Add(DefaultLifetime) }},
		{"Expiry now: dead on arrival",
			func(now time.Time) *oauth2.Token { return &oauth2.Token{AccessToken: "a", Expiry: now} },
			nil},
		{"Expiry an hour ago (a wrong clock, or a non-oauthwire Upstream): dead on arrival",
			func(now time.Time) *oauth2.Token { return &oauth2.Token{AccessToken: "a", Expiry: now.Add(-time.Hour)} },
			nil},
		{"one second: used as the server said",
			func(now time.Time) *oauth2.Token {
				return &oauth2.Token{AccessToken: "a", Expiry: now.Add(time.Second)}
			},
			func(now time.Time) time.Time { return now.Add(time.Second) }},
		{"ordinary hour",
			func(now time.Time) *oauth2.Token { return &oauth2.Token{AccessToken: "a", Expiry: now.Add(time.Hour)} },
			func(now time.Time) time.Time { return now.Add(time.Hour) }},
		{"Expiry 2^40 s ahead",
			func(now time.Time) *oauth2.Token {
				return &oauth2.Token{AccessToken: "a", Expiry: time.Unix(now.Unix()+huge, 0)}
			},
			func(now time.Time) time.Time { return now.Add(DefaultMaxLifetime) }},
		{"Expiry 2^40 s ahead with a JWT exp (Expiry wins)",
			func(now time.Time) *oauth2.Token {
				return &oauth2.Token{AccessToken: canary.JWT("at", now.Add(time.Minute).Unix()), Expiry: time.Unix(now.Unix()+huge, 0)}
			},
			func(now time.Time) time.Time { return now.Add(DefaultMaxLifetime) }},
		{"year 9999",
			func(now time.Time) *oauth2.Token {
				return &oauth2.Token{AccessToken: "a", Expiry: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)}
			},
			func(now time.Time) time.Time { return now.Add(DefaultMaxLifetime) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				now := time.Now()
				in := tc.tok(now)
				c := mustNew(t, UpstreamFunc(func(context.Context, *oauth2.Token) (*oauth2.Token, error) {
					cp := *in
					return &cp, nil
				}))
				defer c.Close()
				tok, err := c.Token(t.Context())
				if tc.want == nil {
					if !errors.Is(err, ErrTemporarilyUnavailable) {
						t.Fatalf("Token of a token that arrived expired = %v, %v; want ErrTemporarilyUnavailable", tok, err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if tok.AccessToken != in.AccessToken {
					t.Fatalf("access token was replaced")
				}
				if want := tc.want(now); !tok.Expiry.Equal(want) {
					t.Fatalf("Expiry = %v, want %v", tok.Expiry, want)
				}
				s := c.c.cur.Load()
				if !(now.Before(s.advisoryAt) && !s.mandatoryAt.Before(s.advisoryAt) && s.mandatoryAt.Before(s.expiry)) {
					t.Fatalf("schedule now=%v advisory=%v mandatory=%v expiry=%v is not ordered", now, s.advisoryAt, s.mandatoryAt, s.expiry)
				}
			})
		})
	}
}

// A server that always issues the same token must not cause a refresh
// loop; its token is still used while it is valid, and an expired token is
// never handed out. (Tokens that arrive expired: TestExpiredOnArrivalNeverServed.)
func TestNoRefreshLoop(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		mk   func(n int, t0 time.Time) *oauth2.Token
		max  int
		// failAfter: from this offset on, Token may fail with
		// ErrTemporarilyUnavailable (the only token there is has expired);
		// zero: it must never fail.
		failAfter time.Duration
	}{
		// The token expires at t0+10s and the server keeps returning it:
		// exponential backoff after that, never the expired token.
		{"same token and expiry", func(n int, t0 time.Time) *oauth2.Token {
			return &oauth2.Token{AccessToken: "same", Expiry: t0.Add(10 * time.Second)}
		}, 15, 10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				t0 := time.Now()
				var mu sync.Mutex
				calls := 0
				c := mustNew(t, UpstreamFunc(func(context.Context, *oauth2.Token) (*oauth2.Token, error) {
					mu.Lock()
					defer mu.Unlock()
					calls++
					return tc.mk(calls, t0), nil
				}))
				defer c.Close()
				for time.Since(t0) < 2*time.Minute {
					tok, err := c.Token(t.Context())
					switch {
					case err != nil && (tc.failAfter == 0 || time.Since(t0) < tc.failAfter || !errors.Is(err, ErrTemporarilyUnavailable)):
						t.Fatalf("Token error %v at %v", err, time.Since(t0))
					case err == nil && (tok == nil || tok.AccessToken == ""):
						t.Fatalf("Token = %v at %v", tok, time.Since(t0))
					case err == nil && !time.Now().Before(tok.Expiry):
						t.Fatalf("Token returned a token that expired at %v, at %v", tok.Expiry.Sub(t0), time.Since(t0))
					}
					time.Sleep(10 * time.Millisecond)
				}
				mu.Lock()
				defer mu.Unlock()
				t.Logf("%d upstream calls in 2 minutes", calls)
				if calls > tc.max {
					t.Fatalf("upstream calls = %d in 2 minutes, want at most %d", calls, tc.max)
				}
			})
		})
	}
}
