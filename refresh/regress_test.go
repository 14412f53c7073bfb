package refresh

// Regression tests for the findings of the refresh package review: each
// failed before its fix.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/oauthwire"
)

// C1: a failed save (C-04) followed by a refresh whose answer is lost in
// transit (C-03) must not fall back to the older, already spent refresh
// token still in the store.
func TestLostAnswerNeverFallsBackToStoredRT(t *testing.T) {
	t.Parallel()
	t.Run("unsaved token", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			as := newRotatingAS(time.Minute)
			as.lost = func(n int) bool { return n == 2 } // the server rotates rt-1, the answer is lost
			st := newMemStore()
			key := testKey(t)
			st.put(key, as.initial(time.Now().Add(-time.Second)))
			c := mustNewKey(t, key, as, func(o *Options) { o.Persister = st; o.DisableIdleRefresh = true })
			defer c.Close()
			st.mu.Lock()
			st.failSaves = 1000 // the keychain is locked for a while
			st.mu.Unlock()
			if tok, err := c.Token(t.Context()); err != nil || tok.AccessToken != "at-1" {
				t.Fatalf("first Token = %v, %v; want at-1 (unsaved)", tok, err)
			}
			time.Sleep(2 * time.Minute) // at-1 expires
			if _, err := c.Token(t.Context()); !errors.Is(err, ErrNetwork) {
				t.Fatalf("second Token: %v, want ErrNetwork (answer lost, no grace)", err)
			}
			time.Sleep(time.Minute) // past the backoff: the next attempt
			c.Token(t.Context())
			_, _, presented := as.stats()
			for i, rt := range presented[1:] {
				if rt != "rt-1" {
					t.Fatalf("attempt %d presented %q, want rt-1 (all: %v): the spent rt-0 came back", i+2, rt, presented)
				}
			}
			if len(presented) < 2 {
				t.Fatalf("presented %v", presented)
			}
		})
	})
	t.Run("stored token not fresh", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			as := newRotatingAS(time.Hour)
			st := newMemStore()
			key := testKey(t)
			st.put(key, as.initial(time.Now().Add(-time.Second)))
			c := mustNewKey(t, key, as, func(o *Options) { o.Persister = st })
			defer c.Close()
			// While the answer is in transit, something (a process without
			// the lock, a restored backup) stores an older, expired token.
			as.lost = func(n int) bool {
				st.put(key, &oauth2.Token{AccessToken: "at-old", RefreshToken: "rt-old", Expiry: time.Now().Add(-time.Hour)})
				return true
			}
			if _, err := c.Token(t.Context()); !errors.Is(err, ErrNetwork) {
				t.Fatalf("Token: %v, want ErrNetwork", err)
			}
			if _, _, presented := as.stats(); len(presented) != 1 || presented[0] != "rt-0" {
				t.Fatalf("presented %v, want only [rt-0]: a stale stored refresh token must not be tried after a lost answer", presented)
			}
		})
	})
}

// gatedSaveStore fails its first Save; later Saves wait for gate (a slow
// keychain).
type gatedSaveStore struct {
	*memStore
	gate chan struct{}

	mu sync.Mutex
	n  int
}

func (s *gatedSaveStore) Save(ctx context.Context, key string, tok *oauth2.Token) error {
	s.mu.Lock()
	s.n++
	n := s.n
	s.mu.Unlock()
	if n == 1 {
		return errDiskFull
	}
	select {
	case <-s.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.memStore.Save(ctx, key, tok)
}

// M1: while the token is valid, the save retry runs in the background;
// no caller waits for the store.
func TestSaveRetryDoesNotStall(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		as := newRotatingAS(time.Hour)
		st := &gatedSaveStore{memStore: newMemStore(), gate: make(chan struct{})}
		key := testKey(t)
		st.put(key, as.initial(time.Now().Add(-time.Second)))
		var evs eventLog
		c := mustNewKey(t, key, as, func(o *Options) { o.Persister = st; o.OnEvent = evs.add })
		defer c.Close()
		tok, err := c.Token(t.Context()) // refresh; the save fails
		if err != nil || evs.count(EventPersistFailed) != 1 {
			t.Fatalf("Token = %v, %v; events %v", tok, err, evs.all())
		}
		// The save retry now blocks on the gate: these calls must not.
		start := time.Now()
		for range 10 {
			if tok2, err := c.Token(t.Context()); err != nil || tok2 != tok {
				t.Fatalf("Token during the save retry = %v, %v; want the same token", tok2, err)
			}
		}
		if d := time.Since(start); d != 0 {
			t.Fatalf("Token waited %v for a save retry", d)
		}
		synctest.Wait()
		if got := st.get(key); got.RefreshToken != "rt-0" {
			t.Fatalf("store = %q while the save is held, want rt-0", got.RefreshToken)
		}
		close(st.gate)
		evs.wait(t, EventPersisted, 1)
		if got := st.get(key); got.RefreshToken != "rt-1" {
			t.Fatalf("store = %q after the retry, want rt-1", got.RefreshToken)
		}
	})
}

// M2: the public token carries no refresh token, not even in the raw
// response x/oauth2 keeps as extras; other extras are kept.
func TestPublicTokenExtrasHaveNoRefreshToken(t *testing.T) {
	t.Parallel()
	const rt = "RT-SECRET-ROTATED-0123456789"
	const ds = "DEVICE-SECRET-0123456789"
	for _, tc := range []struct {
		name, ctype, body string
	}{
		{"json", "application/json", `{"access_token":"AT-NEW","token_type":"Bearer","expires_in":3600,"refresh_token":"` + rt + `","id_token":"IDT","device_secret":"` + ds + `","instance_url":"https://x.example"}`},
		{"form", "application/x-www-form-urlencoded", "access_token=AT-NEW&token_type=bearer&expires_in=3600&refresh_token=" + rt + "&id_token=IDT&device_secret=" + ds + "&instance_url=https%3A%2F%2Fx.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.ctype)
				fmt.Fprint(w, tc.body)
			}))
			defer srv.Close()
			cfg := &oauth2.Config{ClientID: "c", Endpoint: oauth2.Endpoint{TokenURL: srv.URL, AuthStyle: oauth2.AuthStyleInParams}}
			ts := cfg.TokenSource(context.Background(), &oauth2.Token{RefreshToken: "RT-OLD", Expiry: time.Now().Add(-time.Hour)})
			st := newMemStore()
			c := mustNew(t, FromTokenSource(ts), func(o *Options) { o.Persister = st })
			defer c.Close()
			tok, err := c.Token(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if tok.AccessToken != "AT-NEW" || tok.RefreshToken != "" {
				t.Fatalf("token %q / %q", tok.AccessToken, tok.RefreshToken)
			}
			// (Extra of a form response answers "" for an absent key.)
			if v := tok.Extra("refresh_token"); v != nil && v != "" {
				t.Fatalf("Extra(refresh_token) = %v, want nothing", v)
			}
			if v := tok.Extra("device_secret"); v != nil && v != "" {
				t.Fatalf("Extra(device_secret) = %v, want nothing", v)
			}
			if v := tok.Extra("id_token"); v != "IDT" {
				t.Fatalf("Extra(id_token) = %v, want IDT (kept)", v)
			}
			if v := tok.Extra("instance_url"); v != "https://x.example" {
				t.Fatalf("Extra(instance_url) = %v, want it kept", v)
			}
			for _, format := range []string{"%v", "%+v", "%#v"} {
				if s := fmt.Sprintf(format, tok); strings.Contains(s, rt) || strings.Contains(s, ds) {
					t.Fatalf("%s of the public token shows a secret: %s", format, s)
				}
			}
			// The cache itself still has it: the store gets the refresh token.
			if got := st.get(c.Key()); got == nil || got.RefreshToken != rt {
				t.Fatalf("stored %+v, want the refresh token saved", got)
			}
		})
	}
}

// M3: an answer the cache refuses (token_type N_A, DPoP) that carries a
// rotated refresh token: the new refresh token is kept and saved, and the
// retry presents it, never the spent one.
func TestRefusedAnswerKeepsRotatedRT(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		typ      string
		expiry   time.Duration // of the initial token, from now
		oldValid bool
	}{
		{"N_A", -time.Second, false},
		{"DPoP", 50 * time.Second, true}, // refreshed in the background while valid
	} {
		t.Run(tc.typ, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				as := newRotatingAS(time.Hour)
				st := newMemStore()
				key := testKey(t)
				st.put(key, as.initial(time.Now().Add(tc.expiry)))
				n := 0
				up := UpstreamFunc(func(ctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
					tok, err := as.Token(ctx, cur)
					n++
					if err == nil && n == 1 {
						cp := *tok
						cp.TokenType = tc.typ
						return &cp, nil
					}
					return tok, err
				})
				var evs eventLog
				c := mustNewKey(t, key, up, func(o *Options) { o.Persister = st; o.OnEvent = evs.add; o.DisableIdleRefresh = true })
				defer c.Close()
				if tc.oldValid {
					if _, err := c.Token(t.Context()); err != nil {
						t.Fatal(err)
					}
					time.Sleep(44 * time.Second) // past the advisory point, before the mandatory window
				}
				tok, err := c.Token(t.Context())
				if tc.oldValid {
					// The refresh starts in the background; the old token is served.
					if err != nil || tok.AccessToken != "at-0" {
						t.Fatalf("Token = %v, %v; want at-0", tok, err)
					}
					evs.wait(t, EventRefreshFailed, 1)
					if tok2, err := c.Token(t.Context()); err != nil || tok2 != tok {
						t.Fatalf("after the refused answer: %v, %v; want the same at-0 token", tok2, err)
					}
				} else if !errors.Is(err, ErrUnsupportedTokenType) {
					t.Fatalf("Token error = %v, want ErrUnsupportedTokenType", err)
				}
				if got := st.get(key); got.RefreshToken != "rt-1" || got.AccessToken != "at-0" {
					t.Fatalf("stored %q/%q after the refused answer, want at-0/rt-1 (the rotated refresh token kept)", got.AccessToken, got.RefreshToken)
				}
				time.Sleep(5 * time.Second) // past the backoff
				tok, err = c.Token(t.Context())
				if err != nil || tok.AccessToken != "at-2" {
					t.Fatalf("retry: %v, %v; want at-2", tok, err)
				}
				_, reuses, presented := as.stats()
				if reuses != 0 || len(presented) != 2 || presented[1] != "rt-1" {
					t.Fatalf("presented %v (reuses %d), want [rt-0 rt-1]", presented, reuses)
				}
				if got := st.get(key); got.RefreshToken != "rt-2" {
					t.Fatalf("stored %q, want rt-2", got.RefreshToken)
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

// M4: during a backoff, an invalidated token is never handed out again.
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
		}), func(o *Options) { o.DisableIdleRefresh = true })
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

// ctxStore is a memStore whose Lock fails at once for an ended context.
type ctxStore struct{ *memStore }

func (s ctxStore) Lock(ctx context.Context, key string) (func() error, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.memStore.Lock(ctx, key)
}

// MINOR 1: a failed Set is its caller's error only: no backoff, no
// lastErr, no refresh-failed event for Token's callers.
func TestFailedSetLeavesRefreshAlone(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		as := newRotatingAS(time.Hour)
		st := ctxStore{newMemStore()}
		key := testKey(t)
		st.put(key, as.initial(time.Now().Add(-time.Second)))
		var evs eventLog
		c := mustNewKey(t, key, as, func(o *Options) { o.Persister = st; o.OnEvent = evs.add })
		defer c.Close()
		ctx, cancel := context.WithCancel(t.Context())
		cancel() // the login's context ended just as it finished
		if err := c.Set(ctx, &oauth2.Token{AccessToken: "login-at", RefreshToken: "login-rt", Expiry: time.Now().Add(time.Hour)}); !errors.Is(err, context.Canceled) {
			t.Fatalf("Set with a cancelled ctx = %v, want context.Canceled", err)
		}
		tok, err := c.Token(t.Context())
		if err != nil || tok.AccessToken != "at-1" {
			t.Fatalf("Token after the failed Set = %v, %v; want a refresh to at-1", tok, err)
		}
		if n := evs.count(EventRefreshFailed); n != 0 {
			t.Fatalf("events %v: a failed Set reported a refresh failure", evs.all())
		}
	})
}

// failDeleteStore fails every Delete while fail is set.
type failDeleteStore struct {
	*memStore
	fail chan bool // buffered 1: the current setting
}

func newFailDeleteStore() *failDeleteStore {
	s := &failDeleteStore{memStore: newMemStore(), fail: make(chan bool, 1)}
	s.fail <- true
	return s
}

func (s *failDeleteStore) setFail(v bool) { <-s.fail; s.fail <- v }

func (s *failDeleteStore) Delete(ctx context.Context, key string) error {
	v := <-s.fail
	s.fail <- v
	if v {
		return errors.New("keychain locked")
	}
	return s.memStore.Delete(ctx, key)
}

// MINOR 3: after a Clear whose delete failed, the logged-out token is never
// loaded again; the delete is retried; a later login elsewhere is adopted.
func TestClearFailedDeleteDoesNotResurrect(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		as := newRotatingAS(time.Hour)
		st := newFailDeleteStore()
		key := testKey(t)
		st.put(key, as.initial(time.Now().Add(time.Hour)))
		c := mustNewKey(t, key, as, func(o *Options) { o.Persister = st })
		defer c.Close()
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

// MINOR 3: a save retry does not undo another process's logout.
func TestSaveRetryDoesNotResurrectLogout(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		as := newRotatingAS(time.Hour)
		st := newMemStore()
		key := testKey(t)
		st.put(key, as.initial(time.Now().Add(-time.Second)))
		var evs eventLog
		c := mustNewKey(t, key, as, func(o *Options) { o.Persister = st; o.OnEvent = evs.add })
		defer c.Close()
		st.mu.Lock()
		st.failSaves = 1
		st.mu.Unlock()
		tok, err := c.Token(t.Context()) // at-1, unsaved
		if err != nil || tok.AccessToken != "at-1" {
			t.Fatalf("Token = %v, %v", tok, err)
		}
		st.Delete(t.Context(), key) // logout in another process
		if tok2, err := c.Token(t.Context()); err != nil || tok2 != tok {
			t.Fatalf("next Token = %v, %v; want at-1 at once", tok2, err)
		}
		evs.wait(t, EventReauthRequired, 1)
		if st.get(key) != nil {
			t.Fatal("the save retry brought back a logged-out token")
		}
		time.Sleep(time.Hour) // at-1 expires
		if _, err := c.Token(t.Context()); !errors.Is(err, ErrReauthRequired) {
			t.Fatalf("Token after expiry = %v, want ErrReauthRequired", err)
		}
		// (The Upstream may be asked without a refresh token; rt-1 is never
		// presented.)
		if _, _, presented := as.stats(); len(presented) < 1 || presented[0] != "rt-0" || slices.ContainsFunc(presented[1:], func(rt string) bool { return rt != "" }) {
			t.Fatalf("presented %q, want rt-0 and then no refresh token", presented)
		}
	})
}

// A save retry overwrites a different stored token and never adopts it: it
// may be this process's own earlier save landing late (a hung keychain call
// that completed after its timeout), whose refresh token is spent.
func TestSaveRetryOverwritesLateWrite(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		as := newRotatingAS(time.Hour)
		st := newMemStore()
		key := testKey(t)
		st.put(key, as.initial(time.Now().Add(-time.Second)))
		var evs eventLog
		c := mustNewKey(t, key, as, func(o *Options) { o.Persister = st; o.OnEvent = evs.add; o.DisableIdleRefresh = true })
		defer c.Close()
		st.mu.Lock()
		st.failSaves = 2 // at-1's save and its reduced-set fallback
		st.mu.Unlock()
		t1, err := c.Token(t.Context())
		if err != nil || t1.AccessToken != "at-1" {
			t.Fatalf("Token = %v, %v", t1, err)
		}
		// A 401: the refresh first retries at-1's save (fails, with its
		// fallback), then gets at-2, whose save fails too (with its
		// fallback).
		c.Invalidate(t1)
		st.mu.Lock()
		st.failSaves = 4
		st.mu.Unlock()
		t2, err := c.Token(t.Context())
		if err != nil || t2.AccessToken != "at-2" {
			t.Fatalf("Token after Invalidate = %v, %v; want at-2", t2, err)
		}
		// at-1's hung write lands now: the store holds a spent refresh token.
		st.put(key, &oauth2.Token{AccessToken: "at-1", RefreshToken: "rt-1", Expiry: time.Now().Add(time.Hour)})
		time.Sleep(time.Minute) // past the save backoff
		if tok, err := c.Token(t.Context()); err != nil || tok != t2 {
			t.Fatalf("Token = %v, %v; want at-2", tok, err)
		}
		evs.wait(t, EventPersisted, 1)
		if got := st.get(key); got.RefreshToken != "rt-2" {
			t.Fatalf("stored %q, want rt-2 saved over the late write", got.RefreshToken)
		}
		invalidateOrdinary(c, t2)
		if tok, err := c.Token(t.Context()); err != nil || tok.AccessToken != "at-3" {
			t.Fatalf("Token = %v, %v; want at-3", tok, err)
		}
		if _, reuses, presented := as.stats(); reuses != 0 {
			t.Fatalf("presented %v: a spent refresh token came back", presented)
		}
	})
}

// N5: the wait for the store lock is bounded by LockTimeout, not charged to
// RefreshTimeout; it is still bounded.
func TestLockWaitHasItsOwnBound(t *testing.T) {
	t.Parallel()
	setup := func(t *testing.T) (*memStore, *Cache) {
		as := newRotatingAS(time.Hour)
		st := newMemStore()
		key := testKey(t)
		st.put(key, as.initial(time.Now().Add(-time.Second)))
		c := mustNewKey(t, key, as, func(o *Options) { o.Persister = st; o.RefreshTimeout = time.Second; o.LockTimeout = 20 * time.Second })
		st.lock <- struct{}{} // another process holds the lock
		return st, c
	}
	t.Run("longer than RefreshTimeout", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			st, c := setup(t)
			defer c.Close()
			released := make(chan struct{})
			go func() {
				time.Sleep(5 * time.Second) // the other process's refresh
				<-st.lock
				close(released)
			}()
			defer func() { <-released }()
			if tok, err := c.Token(t.Context()); err != nil || tok.AccessToken != "at-1" {
				t.Fatalf("Token = %v, %v; want at-1 after waiting 5 s for the lock", tok, err)
			}
		})
	})
	t.Run("bounded", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			st, c := setup(t)
			defer func() { <-st.lock; c.Close() }()
			start := time.Now()
			_, err := c.Token(t.Context())
			if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 20*time.Second {
				t.Fatalf("Token = %v after %v; want the lock wait to end after LockTimeout (20 s)", err, time.Since(start))
			}
		})
	})
}

// AC 7 (O-06, O-07) end to end: real token response bodies go through the
// wire parser (internal/oauthwire) into the cache. Every expires_in form
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
				st := newMemStore()
				c := mustNew(t, UpstreamFunc(func(ctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
					return oauthwire.ParseTokenResponse(200, http.Header{"Content-Type": {tc.ctype}}, []byte(tc.body), now)
				}), func(o *Options) { o.Persister = st })
				defer c.Close()
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

// Close returns only after the operation in flight has delivered its
// events: no OnEvent call happens after Close (a finished flight used to
// clear the in-flight marker before its events were emitted, so Close did
// not wait for them).
func TestCloseWaitsForEventDelivery(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		inHook, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		c, err := New(testKey(t), UpstreamFunc(func(context.Context, *oauth2.Token) (*oauth2.Token, error) {
			return &oauth2.Token{AccessToken: "at", Expiry: time.Now().Add(time.Hour)}, nil
		}), func(o *Options) {
			o.OnEvent = func(e Event) {
				if e.Kind == EventRefreshed {
					once.Do(func() { close(inHook) })
					<-release
				}
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		go c.Token(context.Background())
		<-inHook
		closed := make(chan struct{})
		go func() { c.Close(); close(closed) }()
		synctest.Wait()
		select {
		case <-closed:
			t.Fatal("Close returned while an event was still being delivered")
		default:
		}
		close(release)
		synctest.Wait()
		select {
		case <-closed:
		default:
			t.Fatal("Close did not return after the event was delivered")
		}
	})
}
