package refresh

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/oauth2"
)

// mintWith returns an Exchange function that presents the full token's
// refresh token to as (as the client does to mint a token for another
// resource) and hands the cache back the rotated refresh token alone, or,
// if full is set, the whole new token set.
func mintWith(as *rotatingAS, full bool, called *atomic.Int32) func(context.Context, *oauth2.Token) (*oauth2.Token, error) {
	return func(ctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
		if called != nil {
			called.Add(1)
		}
		nt, err := as.Token(ctx, cur)
		if err != nil {
			return nil, err
		}
		if full {
			return nt, nil
		}
		return &oauth2.Token{RefreshToken: nt.RefreshToken}, nil
	}
}

// Two concurrent Exchange calls and concurrent refreshes never present the
// same refresh token twice to a rotating server with reuse detection.
func TestExchangeConcurrentNeverReusesRT(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var refreshes atomic.Int32 // the Upstream's calls: refreshes, not Exchanges
		f := scene{first: time.Hour, upstream: func(as *rotatingAS) Upstream {
			return UpstreamFunc(func(ctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
				refreshes.Add(1)
				return as.Token(ctx, cur)
			})
		}}.start(t)
		as, key, c, st := f.as, f.key, f.c, f.st
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		for i := range 2 {
			wg.Go(func() {
				for range 10 {
					if err := c.Exchange(t.Context(), mintWith(as, i == 0, nil)); err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Go(func() {
			for range 10 {
				// One refresh forced by a rejection. An Exchange that
				// publishes a new token between the read and the refresh
				// makes the rejection moot (there is nothing to refresh);
				// then reject the new token.
				for before := refreshes.Load(); refreshes.Load() == before; {
					tok, err := c.Token(t.Context())
					if err != nil {
						errs <- err
						return
					}
					invalidateOrdinary(c, tok)
					if _, err := c.Token(t.Context()); err != nil {
						errs <- err
						return
					}
				}
			}
		})
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("error: %v", err)
		}
		calls, reuses, presented := as.stats()
		if reuses != 0 || calls != 30 {
			t.Fatalf("calls %d, reuses %d; presented %v", calls, reuses, presented)
		}
		seen := map[string]bool{}
		for _, rt := range presented {
			if seen[rt] {
				t.Fatalf("%s presented twice: %v", rt, presented)
			}
			seen[rt] = true
		}
		as.mu.Lock()
		live := as.rt
		as.mu.Unlock()
		if got := st.get(key); got.RefreshToken != live {
			t.Fatalf("stored %q, want the live %q", got.RefreshToken, live)
		}
	})
}

// A failing save inside Exchange keeps the rotated refresh token: Exchange
// reports ErrPersistFailed once per token, the next Exchange and the next
// refresh present the rotated refresh token, and the save is retried.
func TestExchangeSaveFailureKeepsRotatedRT(t *testing.T) {
	t.Parallel()
	for _, full := range []bool{false, true} {
		t.Run(fmt.Sprintf("full=%v", full), func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				f := scene{first: time.Hour, options: idleOff}.start(t)
				as, key, c, evs, st := f.as, f.key, f.c, f.ev, f.st
				if _, err := c.Token(t.Context()); err != nil {
					t.Fatal(err)
				}
				st.setFailSaves(1000)
				if err := c.Exchange(t.Context(), mintWith(as, full, nil)); !errors.Is(err, ErrPersistFailed) {
					t.Fatalf("Exchange = %v, want ErrPersistFailed", err)
				}
				if n := evs.count(EventPersistFailed); n != 1 {
					t.Fatalf("%d persist-failed events, want 1", n)
				}
				if got := st.get(key); got.RefreshToken != "rt-0" {
					t.Fatalf("stored %q, want rt-0 (every save fails)", got.RefreshToken)
				}
				tok, err := c.Token(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				if want := map[bool]string{false: "at-0", true: "at-1"}[full]; tok.AccessToken != want {
					t.Fatalf("Token = %q, want %q", tok.AccessToken, want)
				}
				// The next Exchange presents rt-1 (memory), not the stored rt-0.
				if err := c.Exchange(t.Context(), mintWith(as, full, nil)); !errors.Is(err, ErrPersistFailed) {
					t.Fatalf("second Exchange = %v, want ErrPersistFailed", err)
				}
				// And so does the next refresh (rt-2).
				if tok, err = c.Token(t.Context()); err != nil {
					t.Fatal(err)
				}
				c.Invalidate(tok)
				if tok, err = c.Token(t.Context()); err != nil || tok.AccessToken != "at-3" {
					t.Fatalf("Token after Invalidate = %v, %v; want at-3", tok, err)
				}
				if _, reuses, presented := as.stats(); reuses != 0 || !slices.Equal(presented, []string{"rt-0", "rt-1", "rt-2"}) {
					t.Fatalf("presented %v (reuses %d), want [rt-0 rt-1 rt-2]", presented, reuses)
				}
				st.setFailSaves(0)
				time.Sleep(time.Minute) // past the save backoff
				c.Token(t.Context())
				evs.wait(t, EventPersisted, 1)
				if got := st.get(key); got.RefreshToken != "rt-3" || got.AccessToken != "at-3" {
					t.Fatalf("stored %q/%q, want at-3/rt-3", got.AccessToken, got.RefreshToken)
				}
			})
		})
	}
}

// A dead refresh token reported by the Exchange function is handled like a
// refresh's invalid_grant: the stored token is deleted, the cache moves to
// re-authentication, and later Exchanges fail without calling fn.
func TestExchangeReauth(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := scene{first: time.Hour}.start(t)
		as, key, c, evs, st := f.as, f.key, f.c, f.ev, f.st
		t0, err := c.Token(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		as.revoke()
		var called atomic.Int32
		err = c.Exchange(t.Context(), mintWith(as, false, &called))
		var e *Error
		if !errors.Is(err, ErrReauthRequired) || !errors.As(err, &e) || e.Code != "invalid_grant" {
			t.Fatalf("Exchange = %v, want ErrReauthRequired (invalid_grant)", err)
		}
		if st.get(key) != nil {
			t.Fatal("the dead token is still stored")
		}
		if n := evs.count(EventReauthRequired); n != 1 {
			t.Fatalf("%d reauth events, want 1", n)
		}
		if err := c.Exchange(t.Context(), mintWith(as, false, &called)); !errors.Is(err, ErrReauthRequired) || called.Load() != 1 {
			t.Fatalf("second Exchange = %v (fn called %d times); want ErrReauthRequired without calling fn", err, called.Load())
		}
		// The access token is served until its mandatory window, then not.
		if tok, err := c.Token(t.Context()); err != nil || tok != t0 {
			t.Fatalf("Token = %v, %v; want the still valid at-0", tok, err)
		}
		time.Sleep(time.Hour)
		if _, err := c.Token(t.Context()); !errors.Is(err, ErrReauthRequired) {
			t.Fatalf("Token after expiry = %v, want ErrReauthRequired", err)
		}
		// (The Upstream may be asked without a refresh token; rt-0 is never
		// presented again.)
		if _, _, presented := as.stats(); presented[0] != "rt-0" || slices.ContainsFunc(presented[1:], func(rt string) bool { return rt != "" }) {
			t.Fatalf("presented %q, want rt-0 and then no refresh token", presented)
		}
	})
	t.Run("sentinel from fn", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := scene{first: time.Hour}.start(t)
			st, key, c := f.st, f.key, f.c
			err := c.Exchange(t.Context(), func(context.Context, *oauth2.Token) (*oauth2.Token, error) {
				return nil, fmt.Errorf("mint: %w", ErrReauthRequired)
			})
			if !errors.Is(err, ErrReauthRequired) || st.get(key) != nil {
				t.Fatalf("Exchange = %v, stored %v; want ErrReauthRequired and the token deleted", err, st.get(key))
			}
		})
	})
}

// Exchange without a token (never logged in, or after Clear) fails with
// ErrReauthRequired and never calls fn.
func TestExchangeNoToken(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var called atomic.Int32
		fn := func(context.Context, *oauth2.Token) (*oauth2.Token, error) {
			called.Add(1)
			return nil, nil
		}
		c := scene{empty: true}.start(t).c
		if err := c.Exchange(t.Context(), fn); !errors.Is(err, ErrReauthRequired) {
			t.Fatalf("Exchange before login = %v, want ErrReauthRequired", err)
		}
		if err := c.Set(t.Context(), &oauth2.Token{AccessToken: "a", RefreshToken: "r", Expiry: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if err := c.Exchange(t.Context(), fn); err != nil || called.Load() != 1 {
			t.Fatalf("Exchange after login = %v (called %d)", err, called.Load())
		}
		if err := c.Clear(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := c.Exchange(t.Context(), fn); !errors.Is(err, ErrReauthRequired) || called.Load() != 1 {
			t.Fatalf("Exchange after Clear = %v (called %d), want ErrReauthRequired without calling fn", err, called.Load())
		}
		if err := c.Exchange(t.Context(), nil); err == nil {
			t.Fatal("Exchange(nil) succeeded")
		}
		c.Close()
		if err := c.Exchange(t.Context(), fn); !errors.Is(err, ErrClosed) {
			t.Fatalf("Exchange after Close = %v, want ErrClosed", err)
		}
	})
}

// Exchange presents the freshest refresh token: the stored one when another
// process rotated, never the spent one in memory; and not the one in memory
// when the store cannot be read (another process may have rotated it).
func TestExchangeUsesFreshestToken(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var st *faultStore
		f := scene{first: time.Hour, persister: func(m *memStore) Persister { st = newFaultStore(m); return st }, options: idleOff}.start(t)
		as, key, c, evs := f.as, f.key, f.c, f.ev
		if _, err := c.Token(t.Context()); err != nil {
			t.Fatal(err)
		}
		// Another process rotates rt-0 and stores at-1/rt-1.
		newer, err := as.Token(t.Context(), st.get(key))
		if err != nil {
			t.Fatal(err)
		}
		st.put(key, newer)
		var called atomic.Int32
		st.set(func(f *faultStore) { f.failLoads = 1 })
		if err := c.Exchange(t.Context(), mintWith(as, false, &called)); !errors.Is(err, errStoreRead) || called.Load() != 0 {
			t.Fatalf("Exchange with an unreadable store = %v (fn called %d); want the read error, fn not called", err, called.Load())
		}
		if err := c.Exchange(t.Context(), mintWith(as, false, &called)); err != nil {
			t.Fatal(err)
		}
		if tok, err := c.Token(t.Context()); err != nil || tok.AccessToken != "at-1" {
			t.Fatalf("Token = %v, %v; want the adopted at-1", tok, err)
		}
		if n := evs.count(EventAdopted); n != 1 {
			t.Fatalf("%d adopted events, want 1", n)
		}
		if got := st.get(key); got.RefreshToken != "rt-2" || got.AccessToken != "at-1" {
			t.Fatalf("stored %q/%q, want at-1/rt-2", got.AccessToken, got.RefreshToken)
		}
		if _, reuses, presented := as.stats(); reuses != 0 || !slices.Equal(presented, []string{"rt-0", "rt-1"}) {
			t.Fatalf("presented %v (reuses %d), want [rt-0 rt-1]", presented, reuses)
		}
		// fn returning nil changes nothing and saves nothing.
		st.mu.Lock()
		saves := st.saves
		st.mu.Unlock()
		if err := c.Exchange(t.Context(), func(context.Context, *oauth2.Token) (*oauth2.Token, error) { return nil, nil }); err != nil {
			t.Fatal(err)
		}
		st.mu.Lock()
		defer st.mu.Unlock()
		if st.saves != saves {
			t.Fatal("a nil result was saved")
		}
	})
}

// fn runs to its end even when the caller gives up, so a refresh token it
// rotated is kept.
func TestExchangeCallerCancelKeepsRotatedRT(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := scene{first: time.Hour}.start(t)
		as, st, key, c := f.as, f.st, f.key, f.c
		ctx, cancel := context.WithCancel(t.Context())
		err := c.Exchange(ctx, func(fctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
			cancel() // the caller gives up while the request is at the server
			if fctx.Err() != nil {
				return nil, fctx.Err()
			}
			return mintWith(as, false, nil)(fctx, cur)
		})
		if err != nil {
			t.Fatalf("Exchange = %v", err)
		}
		if got := st.get(key); got.RefreshToken != "rt-1" {
			t.Fatalf("stored %q, want rt-1", got.RefreshToken)
		}
	})
}

// A token an Exchange function returns already expired is never served,
// and Exchange says so; its refresh token, possibly a rotated one, is
// saved and presented next all the same.
func TestExchangeExpiredOnArrival(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := scene{first: time.Hour, options: idleOff}.start(t)
		as, st, key, c := f.as, f.st, f.key, f.c
		if _, err := c.Token(t.Context()); err != nil {
			t.Fatal(err)
		}
		err := c.Exchange(t.Context(), func(ctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
			nt, err := as.Token(ctx, cur) // rotates: at-1, rt-1
			if err != nil {
				return nil, err
			}
			nt.Expiry = time.Now().Add(-time.Second)
			return nt, nil
		})
		if !errors.Is(err, ErrTemporarilyUnavailable) {
			t.Fatalf("Exchange = %v, want ErrTemporarilyUnavailable for a token that arrived expired", err)
		}
		if got := st.get(key); got.RefreshToken != "rt-1" {
			t.Fatalf("stored %q, want the rotated rt-1", got.RefreshToken)
		}
		tok, err := c.Token(t.Context())
		if err != nil || tok.AccessToken != "at-2" {
			t.Fatalf("Token = %v, %v; want at-2 refreshed with rt-1, never the expired at-1", tok, err)
		}
		if _, reuses, presented := as.stats(); reuses != 0 || !slices.Equal(presented, []string{"rt-0", "rt-1"}) {
			t.Fatalf("presented %v (reuses %d), want [rt-0 rt-1]", presented, reuses)
		}
	})
}
