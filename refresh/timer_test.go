package refresh

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/tokenx"
)

// The timer: idle refresh and the refresh token's expiry warning.

// The idle timer refreshes a process that makes no calls; it can be turned
// off.
func TestIdleRefresh(t *testing.T) {
	t.Parallel()
	for _, disable := range []bool{false, true} {
		t.Run(fmt.Sprintf("disabled=%v", disable), func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				f := scene{first: 10 * time.Minute, options: func(o *Options) { o.DisableIdleRefresh = disable }}.start(t)
				as, c := f.as, f.c
				if _, err := c.Token(t.Context()); err != nil {
					t.Fatal(err)
				}
				time.Sleep(9*time.Minute + 50*time.Second) // past the advisory point, inside the validity
				calls, _, _ := as.stats()
				if want := map[bool]int{false: 1, true: 0}[disable]; calls != want {
					t.Fatalf("upstream calls while idle = %d, want %d", calls, want)
				}
				waits := c.c.waits.Load()
				tok, err := c.Token(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				if !disable && (tok.AccessToken != "at-1" || c.c.waits.Load() != waits) {
					t.Fatalf("after the idle refresh: %q, waited %v", tok.AccessToken, c.c.waits.Load() != waits)
				}
			})
		})
	}
}

func TestRefreshTokenExpiringEvent(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rtExp := time.Now().Add(25 * time.Hour)
		var evs eventLog
		c := mustNew(t, UpstreamFunc(func(context.Context, *oauth2.Token) (*oauth2.Token, error) {
			tok := &oauth2.Token{AccessToken: "a", RefreshToken: "r", Expiry: time.Now().Add(time.Hour)}
			return tok.WithExtra(map[string]any{tokenx.KeyRefreshTokenExpiry: rtExp}), nil
		}), func(o *Options) { o.OnEvent = evs.add })
		defer c.Close()
		if _, err := c.Token(t.Context()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(59 * time.Minute)
		if n := evs.count(EventRefreshTokenExpiring); n != 0 {
			t.Fatalf("early event")
		}
		time.Sleep(2 * time.Minute)
		if n := evs.count(EventRefreshTokenExpiring); n != 1 {
			t.Fatalf("refresh-token-expiring events = %d, want 1", n)
		}
		time.Sleep(3 * time.Hour) // more refreshes, same refresh token: no repeat
		if n := evs.count(EventRefreshTokenExpiring); n != 1 {
			t.Fatalf("refresh-token-expiring events = %d, want still 1", n)
		}
		for _, e := range evs.all() {
			if e.Kind == EventRefreshTokenExpiring && !e.RefreshTokenExpiry.Equal(rtExp) {
				t.Fatalf("event expiry %v, want %v", e.RefreshTokenExpiry, rtExp)
			}
		}
	})
}

// The fast path reads no clock: the timer must clear the "fresh" flag at
// the advisory point even while a long operation is in flight (here an
// Exchange whose function takes 29 s), or the fast path would hand out a
// token past its expiry.
func TestNoExpiredTokenDuringLongOperation(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		up := UpstreamFunc(func(ctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
			return &oauth2.Token{AccessToken: "at-up", RefreshToken: "rt-up", Expiry: time.Now().Add(30 * time.Second)}, nil
		})
		c := mustNew(t, up)
		defer c.Close()
		if err := c.Set(t.Context(), &oauth2.Token{AccessToken: "at-0", RefreshToken: "rt-0", Expiry: time.Now().Add(30 * time.Second)}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		done := make(chan error)
		go func() {
			done <- c.Exchange(context.Background(), func(ctx context.Context, full *oauth2.Token) (*oauth2.Token, error) {
				time.Sleep(29 * time.Second)
				return nil, nil
			})
		}()
		time.Sleep(26 * time.Second) // 31 s: at-0 expired at 30 s
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		if tok, err := c.Token(ctx); err == nil && !time.Now().Before(tok.Expiry) {
			t.Fatalf("Token returned %s, expired at %v, at %v", tok.AccessToken, tok.Expiry, time.Now())
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}
