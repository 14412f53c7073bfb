package refresh

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/canary"
	"github.com/tokenward/tokenward/internal/oauthwire"
)

// The schedule follows the documented model for a range of lifetimes.
func TestSchedule(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		life            time.Duration
		margin, window  time.Duration // expected without jitter (rand 0.5)
		lowFrac, hiFrac float64       // advisory point as a fraction of life for rand 0 / ~1
	}{
		// rand 0 gives the smallest margin (latest refresh), rand ~1 the largest.
		{12 * time.Second, 2400 * time.Millisecond, 1200 * time.Millisecond, 0.85, 0.75},
		{time.Minute, 12 * time.Second, 6 * time.Second, 0.85, 0.75},
		{10 * time.Minute, 2 * time.Minute, 10 * time.Second, 0.85, 0.75},
		{time.Hour, 5 * time.Minute, 10 * time.Second, 1 - 3.75/60, 1 - 6.25/60},
		{24 * time.Hour, 5 * time.Minute, 10 * time.Second, 1 - 3.75/1440, 1 - 6.25/1440},
	} {
		t.Run(tc.life.String(), func(t *testing.T) {
			for _, r := range []struct {
				v    float64
				frac float64
			}{{0.5, -1}, {0, tc.lowFrac}, {0.9999999, tc.hiFrac}} {
				c := newCore("k", nil, Options{rand: func() float64 { return r.v }}.resolve())
				s := c.newState(fromOAuth2(&oauth2.Token{AccessToken: "a", Expiry: now.Add(tc.life)}), now, fromUpstream)
				if got := s.expiry.Sub(s.mandatoryAt); got != tc.window {
					t.Errorf("window = %v, want %v", got, tc.window)
				}
				margin := s.expiry.Sub(s.advisoryAt)
				if r.frac < 0 && margin != tc.margin {
					t.Errorf("margin = %v, want %v", margin, tc.margin)
				}
				if r.frac >= 0 {
					frac := float64(s.advisoryAt.Sub(now)) / float64(tc.life)
					if frac < r.frac-0.001 || frac > r.frac+0.001 {
						t.Errorf("rand %v: advisory at %.4f of the lifetime, want %.4f", r.v, frac, r.frac)
					}
				}
				if !s.fresh {
					t.Errorf("a new token is not fresh")
				}
			}
		})
	}
}

// Whatever Expiry a token reaches the cache with, it gets a defined,
// finite expiry and schedule, and it is used unless it arrived already
// expired. These rows inject oauth2.Token values directly; the wire side
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

// A server whose tokens live 3 s: no expired token is ever handed out,
// and refreshes stay at about one per 80 % of that lifetime.
func TestShortLivedTokensNeverServedExpired(t *testing.T) {
	t.Parallel()
	for _, idle := range []bool{true, false} {
		t.Run(fmt.Sprintf("idle refresh=%v", idle), func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				var mu sync.Mutex
				n := 0
				c := mustNew(t, UpstreamFunc(func(context.Context, *oauth2.Token) (*oauth2.Token, error) {
					mu.Lock()
					defer mu.Unlock()
					n++
					return &oauth2.Token{AccessToken: fmt.Sprintf("at-%d", n), Expiry: time.Now().Add(3 * time.Second)}, nil
				}), func(o *Options) { o.DisableIdleRefresh = !idle })
				defer c.Close()
				t0 := time.Now()
				for time.Since(t0) < 3*time.Minute {
					tok, err := c.Token(t.Context())
					if err != nil {
						t.Fatalf("Token at %v: %v", time.Since(t0), err)
					}
					if !time.Now().Before(tok.Expiry) {
						t.Fatalf("Token at %v returned %s, expired %v ago", time.Since(t0), tok.AccessToken, time.Since(tok.Expiry))
					}
					time.Sleep(100 * time.Millisecond)
				}
				mu.Lock()
				defer mu.Unlock()
				if max := int(3*time.Minute/(3*time.Second*7/10)) + 5; n > max {
					t.Fatalf("%d upstream calls in 3 minutes, want at most %d", n, max)
				}
			})
		})
	}
}

// End to end: real token response bodies go through the token parser
// (internal/oauthwire) into the cache. Every expires_in form
// gives a defined, finite expiry, the access token is kept and the refresh
// token persisted.
func TestExpiresInThroughWireParser(t *testing.T) {
	t.Parallel()
	const hour = 3600
	type want int // expected lifetime in seconds
	jsonCases := []struct {
		name, field string
		life        want
	}{
		{"int", `,"expires_in":3600`, hour},
		{"string", `,"expires_in":"3600"`, hour},
		{"float", `,"expires_in":3599.5`, 3599},
		{"null", `,"expires_in":null`, hour}, // unknown: the 1 h default
		{"absent", ``, hour},
		{"negative", `,"expires_in":-3600`, hour},
		{"zero", `,"expires_in":0`, hour},
		{"2^40", `,"expires_in":1099511627776`, 24 * hour}, // cut to MaxLifetime
	}
	formCases := []struct {
		name, field string
		life        want
	}{
		{"int", `&expires_in=3600`, hour},
		{"string", `&expires_in=%203600%20`, hour},
		{"float", `&expires_in=3599.5`, 3599},
		{"null", `&expires_in=`, hour},
		{"absent", ``, hour},
		{"negative", `&expires_in=-3600`, hour},
		{"zero", `&expires_in=0`, hour},
		{"2^40", `&expires_in=1099511627776`, 24 * hour},
	}
	type tcase struct {
		name, ctype, body string
		life              want
	}
	var cases []tcase
	for _, c := range jsonCases {
		cases = append(cases, tcase{"json/" + c.name, "application/json",
			`{"access_token":"opaque-at","token_type":"Bearer","refresh_token":"rt-new"` + c.field + `}`, c.life})
	}
	for _, c := range formCases {
		cases = append(cases, tcase{"form/" + c.name, "application/x-www-form-urlencoded",
			`access_token=opaque-at&token_type=bearer&refresh_token=rt-new` + c.field, c.life})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				now := time.Now()
				f := scene{empty: true, upstream: func(*rotatingAS) Upstream {
					return UpstreamFunc(func(ctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
						return oauthwire.ParseTokenResponse(200, http.Header{"Content-Type": {tc.ctype}}, []byte(tc.body), now)
					})
				}}.start(t)
				c, st := f.c, f.st
				tok, err := c.Token(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				if tok.AccessToken != "opaque-at" {
					t.Fatalf("access token %q, want it kept", tok.AccessToken)
				}
				if want := now.Add(time.Duration(tc.life) * time.Second); !tok.Expiry.Equal(want) {
					t.Fatalf("Expiry = now+%v, want now+%v", tok.Expiry.Sub(now), want.Sub(now))
				}
				s := c.c.cur.Load()
				if !(now.Before(s.advisoryAt) && !s.mandatoryAt.Before(s.advisoryAt) && s.mandatoryAt.Before(s.expiry)) {
					t.Fatalf("schedule now=%v advisory=%v mandatory=%v expiry=%v is not ordered", now, s.advisoryAt, s.mandatoryAt, s.expiry)
				}
				if got := st.get(c.Key()); got == nil || got.RefreshToken != "rt-new" || !got.Expiry.Equal(tok.Expiry) {
					t.Fatalf("stored %+v, want rt-new with the same expiry", got)
				}
			})
		})
	}
}

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
				var mu sync.Mutex
				serverExp := map[string]time.Time{} // access token -> the expiry the server gave
				f := scene{life: life, first: life, memory: true, server: func(as *rotatingAS) {
					as.latency = 300 * time.Millisecond
					if life == time.Second {
						as.latency = 100 * time.Millisecond
					}
					as.mkAT = func(g int, exp time.Time) string {
						at := fmt.Sprintf("at-%d", g)
						mu.Lock()
						serverExp[at] = exp
						mu.Unlock()
						return at
					}
				}}.start(t)
				as, c, ev := f.as, f.c, f.ev
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
		var mu sync.Mutex
		n := 0
		f := scene{first: -time.Minute, upstream: func(*rotatingAS) Upstream {
			return UpstreamFunc(func(_ context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
				mu.Lock()
				defer mu.Unlock()
				n++
				return &oauth2.Token{AccessToken: fmt.Sprintf("at-%d", n), RefreshToken: fmt.Sprintf("rt-%d", n), Expiry: time.Now().Add(-time.Second)}, nil
			})
		}}.start(t)
		c, st, key := f.c, f.st, f.key
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
