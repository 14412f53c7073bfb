package refresh

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/oauth2"
)

// Clear: a logout, whose token never comes back.

func TestClear(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	f := scene{empty: true, upstream: func(*rotatingAS) Upstream {
		return UpstreamFunc(func(_ context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
			calls.Add(1)
			if cur == nil || cur.RefreshToken == "" {
				return nil, fmt.Errorf("no refresh token: %w", ErrReauthRequired)
			}
			return &oauth2.Token{AccessToken: "refreshed", RefreshToken: "rt-new", Expiry: time.Now().Add(time.Hour)}, nil
		})
	}}.start(t)
	st, c := f.st, f.c
	if err := c.Set(t.Context(), &oauth2.Token{AccessToken: "login-at", RefreshToken: "login-rt", Expiry: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	old, err := c.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Clear(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st.get(c.Key()) != nil {
		t.Fatal("Clear left the stored token")
	}
	tok, err := c.Token(t.Context())
	if !errors.Is(err, ErrReauthRequired) || tok != nil {
		t.Fatalf("Token after Clear = %v, %v; want ErrReauthRequired", tok, err)
	}
	if c.Invalidate(old) {
		t.Fatal("the cleared token is still current")
	}
	// A new login brings the cache back at once, backoff or not.
	if err := c.Set(t.Context(), &oauth2.Token{AccessToken: "login2", RefreshToken: "rt2", Expiry: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if tok, err := c.Token(t.Context()); err != nil || tok.AccessToken != "login2" {
		t.Fatalf("Token after a new Set = %v, %v", tok, err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("upstream called %d times, want 1 (the call that found no refresh token)", n)
	}
}

// After a Clear whose delete failed, the logged-out token is never
// loaded again; the delete is retried; a later login elsewhere is adopted.
func TestClearFailedDeleteDoesNotResurrect(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var st *failDeleteStore
		f := scene{first: time.Hour, persister: func(m *memStore) Persister { st = newFailDeleteStore(m); return st }}.start(t)
		as, key, c := f.as, f.key, f.c
		if _, err := c.Token(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := c.Clear(t.Context()); err == nil {
			t.Fatal("Clear reported success although the delete failed")
		}
		tok, err := c.Token(t.Context())
		if tok != nil || !errors.Is(err, ErrReauthRequired) {
			t.Fatalf("Token after the failed Clear = %v, %v; want ErrReauthRequired, not the logged-out token", tok, err)
		}
		if _, _, presented := as.stats(); len(presented) != 1 || presented[0] != "" {
			t.Fatalf("presented %q: the logged-out refresh token was used", presented)
		}
		// The store works again: the next refresh deletes the leftover.
		st.setFail(false)
		time.Sleep(time.Minute) // past the backoff
		if _, err := c.Token(t.Context()); !errors.Is(err, ErrReauthRequired) {
			t.Fatalf("Token = %v, want ErrReauthRequired", err)
		}
		if st.get(key) != nil {
			t.Fatal("the logged-out token is still stored")
		}
		// A login in another process is picked up.
		st.put(key, &oauth2.Token{AccessToken: "other-at", RefreshToken: "other-rt", Expiry: time.Now().Add(time.Hour)})
		time.Sleep(time.Minute)
		if tok, err := c.Token(t.Context()); err != nil || tok.AccessToken != "other-at" {
			t.Fatalf("Token after another process's login = %v, %v; want other-at", tok, err)
		}
	})
}
