package refresh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/canary"
	"github.com/tokenward/tokenward/internal/tokenx"
)

// Persistence before use: a new token is saved before it is used, a
// failed save falls back to reduced sets and is retried, and the store
// never keeps a spent refresh token while it could hold the new one.

// Save fails once right after a rotation: the new refresh token
// reaches the store by the next access and the old one is never presented
// again.
func TestSaveFailsOnceAfterRotation(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := scene{life: time.Minute, first: -time.Second}.start(t)
		as, key, c, evs, st := f.as, f.key, f.c, f.ev, f.st
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

// Harder: the store keeps failing through the next refresh. The older
// stored token, whose refresh token is spent, must not be read over the
// newer one in memory.
func TestSaveKeepsFailingNeverPresentsOldRT(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := scene{life: time.Minute, first: -time.Second, options: idleOff}.start(t)
		as, key, c, evs, st := f.as, f.key, f.c, f.ev, f.st
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

// While the token is valid, the save retry runs in the background;
// no caller waits for the store.
func TestSaveRetryDoesNotStall(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var st *gatedSaveStore
		f := scene{first: -time.Second, persister: func(m *memStore) Persister {
			st = &gatedSaveStore{memStore: m, gate: make(chan struct{})}
			return st
		}}.start(t)
		key, c, evs := f.key, f.c, f.ev
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

// A save retry does not undo another process's logout.
func TestSaveRetryDoesNotResurrectLogout(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := scene{first: -time.Second}.start(t)
		as, key, c, evs, st := f.as, f.key, f.c, f.ev, f.st
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
		f := scene{first: -time.Second, options: idleOff}.start(t)
		as, key, c, evs, st := f.as, f.key, f.c, f.ev, f.st
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

// Close of the last handle makes one last save attempt of a token
// whose save failed, so that a program that exits right away does not take
// the only live refresh token with it.
func TestCloseSavesUnsavedToken(t *testing.T) {
	t.Parallel()
	t.Run("saved", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			f := scene{first: -time.Second, options: func(o *Options) {
				o.RetryBackoffMin, o.RetryBackoffMax = time.Second, 30*time.Second // production timing
			}}.start(t)
			as, st, key, c, evs := f.as, f.st, f.key, f.c, f.ev
			st.setFailSaves(2) // the full set and the reduced set
			if tok, err := c.Token(t.Context()); err != nil || tok.AccessToken != "at-1" {
				t.Fatalf("Token = %v, %v; want at-1 (unsaved)", tok, err)
			}
			if got := st.get(key); got.RefreshToken != "rt-0" {
				t.Fatalf("stored %q, want rt-0 (every save failed)", got.RefreshToken)
			}
			// The program is done and exits before any retry.
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if got := st.get(key); got.AccessToken != "at-1" || got.RefreshToken != "rt-1" {
				t.Fatalf("stored %q/%q after Close, want at-1/rt-1", got.AccessToken, got.RefreshToken)
			}
			if n := evs.count(EventPersisted); n != 1 {
				t.Fatalf("%d persisted events before Close returned, want 1", n)
			}
			// The next process uses it; nothing spent is presented.
			c2, err := New(key, as, func(o *Options) { o.Persister = st })
			if err != nil {
				t.Fatal(err)
			}
			defer c2.Close()
			tok, err := c2.Token(t.Context())
			if err != nil || tok.AccessToken != "at-1" {
				t.Fatalf("next process: %v, %v; want at-1 from the store", tok, err)
			}
			c2.Invalidate(tok)
			if tok, err := c2.Token(t.Context()); err != nil || tok.AccessToken != "at-2" {
				t.Fatalf("next process's refresh: %v, %v; want at-2", tok, err)
			}
			if _, reuses, presented := as.stats(); reuses != 0 || strings.Join(presented, ",") != "rt-0,rt-1" {
				t.Fatalf("presented %v (reuses %d), want [rt-0 rt-1]", presented, reuses)
			}
		})
	})
	t.Run("bounded", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			var st *faultStore
			f := scene{first: -time.Second, options: func(o *Options) { o.RefreshTimeout = 2 * time.Second },
				persister: func(m *memStore) Persister { st = newFaultStore(m); return st }}.start(t)
			c := f.c
			st.set(func(f *faultStore) { f.hang = true }) // a keychain call that never returns
			if tok, err := c.Token(t.Context()); err != nil || tok.AccessToken != "at-1" {
				t.Fatalf("Token = %v, %v; want at-1 (unsaved)", tok, err)
			}
			start := time.Now()
			c.Close()
			if d := time.Since(start); d != 2*time.Second {
				t.Fatalf("Close took %v, want the save bound RefreshTimeout (2s)", d)
			}
		})
	})
	t.Run("not resurrecting a logout", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			f := scene{first: -time.Second, options: idleOff}.start(t)
			st, key, c := f.st, f.key, f.c
			st.setFailSaves(2)
			if _, err := c.Token(t.Context()); err != nil {
				t.Fatal(err)
			}
			st.Delete(t.Context(), key) // logout in another process
			c.Close()
			if got := st.get(key); got != nil {
				t.Fatalf("Close saved %q over a logout", got.RefreshToken)
			}
		})
	})
}

// A token set the store can never take (an access
// token or ID token over the entry size limit) still gets its refresh
// token stored, in a reduced set, before the lock is released; a later
// load never serves the reduced set's empty access token but refreshes
// with its refresh token.
func TestReducedSetWhenTooLarge(t *testing.T) {
	t.Parallel()
	rtExp := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	withExtras := func(up Upstream, idTokenSize int) Upstream {
		return UpstreamFunc(func(ctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
			tok, err := up.Token(ctx, cur)
			if err != nil {
				return nil, err
			}
			return tok.WithExtra(map[string]any{"id_token": "id-" + strings.Repeat("I", idTokenSize), "scope": "read",
				tokenx.KeyRefreshTokenExpiry: rtExp}), nil
		})
	}
	t.Run("access token too large: the refresh token alone", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			big := true
			var st *faultStore
			var up Upstream
			f := scene{first: -time.Second, options: idleOff,
				server: func(as *rotatingAS) {
					as.mkAT = func(g int, _ time.Time) string {
						if g == 1 && big {
							return "at-1-" + strings.Repeat("A", 300)
						}
						return "at-" + string(rune('0'+g))
					}
				},
				persister: func(m *memStore) Persister {
					st = newFaultStore(m)
					st.set(func(f *faultStore) { f.maxSize = 200 })
					return st
				},
				upstream: func(as *rotatingAS) Upstream { up = withExtras(as, 10); return up },
			}.start(t)
			as, key, c, evs := f.as, f.key, f.c, f.ev
			tok, err := c.Token(t.Context())
			if err != nil || !strings.HasPrefix(tok.AccessToken, "at-1-") {
				t.Fatalf("Token = %v; want the large at-1 from memory", err)
			}
			got := st.get(key)
			if got == nil || got.RefreshToken != "rt-1" || got.AccessToken != "" || !got.Expiry.Equal(reducedExpiry) ||
				!tokenx.RefreshTokenExpiry(got).Equal(rtExp) || tokenx.IDToken(got) != "" {
				t.Fatalf("stored %+v; want rt-1 alone with its expiry, no access token, expired", got)
			}
			if n := evs.count(EventPersistFailed); n != 1 {
				t.Fatalf("%d persist-failed events, want 1", n)
			}
			for _, e := range evs.all() {
				if e.Kind == EventPersistFailed && (!errors.Is(e.Err, ErrPersistFailed) || !errors.Is(e.Err, errTooLarge)) {
					t.Fatalf("persist-failed error %v, want ErrPersistFailed and the store's error", e.Err)
				}
			}
			// Another process loads the reduced set: it refreshes with rt-1
			// instead of serving an empty access token.
			big = false
			o := otherProcess(t, key, up, func(o *Options) { o.Persister = st; o.DisableIdleRefresh = true })
			defer o.Close()
			if tok, err := o.Token(t.Context()); err != nil || tok.AccessToken != "at-2" {
				t.Fatalf("other process: %v, %v; want at-2 refreshed with rt-1", tok, err)
			}
			// This process adopts what the other stored; it never presents rt-1 again.
			c.Invalidate(tok)
			if tok, err := c.Token(t.Context()); err != nil || tok.AccessToken != "at-2" {
				t.Fatalf("Token after Invalidate = %v, %v; want the adopted at-2", tok, err)
			}
			if _, reuses, presented := as.stats(); reuses != 0 || strings.Join(presented, ",") != "rt-0,rt-1" {
				t.Fatalf("presented %v (reuses %d), want [rt-0 rt-1]", presented, reuses)
			}
		})
	})
	t.Run("ID token too large: without extras", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			var st *faultStore
			f := scene{first: -time.Second, options: idleOff,
				persister: func(m *memStore) Persister {
					st = newFaultStore(m)
					st.set(func(f *faultStore) { f.maxSize = 200 })
					return st
				},
				upstream: func(as *rotatingAS) Upstream { return withExtras(as, 500) },
			}.start(t)
			key, c, evs := f.key, f.c, f.ev
			tok, err := c.Token(t.Context())
			if err != nil || tok.AccessToken != "at-1" {
				t.Fatalf("Token = %v, %v", tok, err)
			}
			got := st.get(key)
			if got == nil || got.AccessToken != "at-1" || got.RefreshToken != "rt-1" || tokenx.IDToken(got) != "" ||
				!tokenx.RefreshTokenExpiry(got).Equal(rtExp) || !got.Expiry.Equal(tok.Expiry) {
				t.Fatalf("stored %+v; want at-1/rt-1 without the ID token, with the refresh token's expiry", got)
			}
			// The retries of the full set fail the same way: no new event,
			// the stored reduced set stays.
			for range 3 {
				time.Sleep(time.Minute)
				if _, err := c.Token(t.Context()); err != nil {
					t.Fatal(err)
				}
				synctest.Wait()
			}
			if n := evs.count(EventPersistFailed); n != 1 {
				t.Fatalf("%d persist-failed events, want 1", n)
			}
			if got := st.get(key); got.RefreshToken != "rt-1" || got.AccessToken != "at-1" {
				t.Fatalf("stored %q/%q, want at-1/rt-1", got.AccessToken, got.RefreshToken)
			}
			// Once the store takes it, the full set is saved.
			st.set(func(f *faultStore) { f.maxSize = 0 })
			time.Sleep(time.Minute)
			c.Token(t.Context())
			evs.wait(t, EventPersisted, 1)
			if got := st.get(key); tokenx.IDToken(got) == "" {
				t.Fatal("the full set with its ID token was never saved")
			}
		})
	})
	t.Run("a stored set without an access token is never served", func(t *testing.T) {
		t.Parallel()
		for _, exp := range []time.Duration{0, time.Hour} {
			synctest.Test(t, func(t *testing.T) {
				f := scene{first: time.Hour}.start(t)
				var e time.Time
				if exp != 0 {
					e = time.Now().Add(exp)
				}
				f.st.put(f.key, &oauth2.Token{RefreshToken: "rt-0", Expiry: e}) // a reduced set of rt-0
				c := f.c
				if tok, err := c.Token(t.Context()); err != nil || tok.AccessToken != "at-1" {
					t.Fatalf("Token = %v, %v; want at-1 refreshed with the stored rt-0", tok, err)
				}
			})
		}
	})
}

// This process's save fails after the server rotated; another
// process that refreshes before this one's retry must find the new refresh
// token in the store, never the consumed one.
func TestSaveFailureLeavesNoConsumedRTStored(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := scene{first: -time.Second, options: idleOff}.start(t)
		as, key, a, evs, st := f.as, f.key, f.c, f.ev, f.st
		st.setFailSaves(1)
		t1, err := a.Token(t.Context())
		if err != nil || t1.AccessToken != "at-1" {
			t.Fatalf("Token = %v, %v", t1, err)
		}
		if got := st.get(key); got.RefreshToken != "rt-1" {
			t.Fatalf("stored %q once the lock is released, want rt-1 (rt-0 is consumed)", got.RefreshToken)
		}
		b := otherProcess(t, key, as, func(o *Options) { o.Persister = st; o.DisableIdleRefresh = true })
		defer b.Close()
		if tok, err := b.Token(t.Context()); err != nil || tok.AccessToken != "at-2" {
			t.Fatalf("other process: %v, %v; want at-2", tok, err)
		}
		// a's retry of its full set must not overwrite b's newer token.
		if tok, err := a.Token(t.Context()); err != nil || tok != t1 {
			t.Fatalf("Token = %v, %v; want at-1 while valid", tok, err)
		}
		synctest.Wait()
		if got := st.get(key); got.RefreshToken != "rt-2" {
			t.Fatalf("stored %q, want rt-2: the retry overwrote the other process's token", got.RefreshToken)
		}
		a.Invalidate(t1)
		if tok, err := a.Token(t.Context()); err != nil || tok.AccessToken != "at-2" {
			t.Fatalf("Token = %v, %v; want the adopted at-2", tok, err)
		}
		if _, reuses, presented := as.stats(); reuses != 0 || strings.Join(presented, ",") != "rt-0,rt-1" {
			t.Fatalf("presented %v (reuses %d), want [rt-0 rt-1]", presented, reuses)
		}
		if n := evs.count(EventPersistFailed); n != 1 {
			t.Fatalf("%d persist-failed events, want 1", n)
		}
	})
}

// The reduced-set fallback, the final save of Close and the failed reload
// under the lock log and report nothing secret, even when the store echoes
// the tokens in its errors.
func TestPersistPathsRedacted(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var secrets []string
		var logs syncBuffer
		logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		f := scene{first: -time.Second,
			server: func(as *rotatingAS) {
				as.mkAT = func(g int, exp time.Time) string { return canary.JWT("at", exp.Unix()) }
				as.mkRT = func(g int) string { return canary.New("rt") }
			},
			persister: func(m *memStore) Persister { return echoStore{m} },
			upstream: func(as *rotatingAS) Upstream {
				return UpstreamFunc(func(ctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
					tok, err := as.Token(ctx, cur)
					if tok != nil {
						secrets = append(secrets, tok.AccessToken, tok.RefreshToken)
					}
					return tok, err
				})
			},
			options: func(o *Options) { o.Logger = logger },
		}.start(t)
		c, evs := f.c, f.ev
		t0 := f.st.get(f.key)
		secrets = append(secrets, t0.AccessToken, t0.RefreshToken)
		var out strings.Builder
		tok, err := c.Token(t.Context()) // every save fails: unsaved
		fmt.Fprintf(&out, "%v %v\n", err, c)
		c.Invalidate(tok)
		_, err = c.Token(t.Context()) // the retry fails too; refreshes with the unsaved token
		fmt.Fprintf(&out, "%v\n", err)
		c.Close() // the final save fails
		for _, e := range evs.all() {
			fmt.Fprintf(&out, "%v %+v\n", e, e.Err)
		}
		all := out.String() + logs.String()
		if found := canary.Find(all, secrets...); len(found) != 0 {
			t.Fatalf("%d secret(s) leaked; output:\n%s", len(found), all)
		}
		for _, want := range []string{"saving a reduced token set failed too", "the last save failed", "persist_failed"} {
			if !strings.Contains(all, want) {
				t.Errorf("output lacks %q:\n%s", want, all)
			}
		}
	})
}

// Persistence before use: a new token is saved (Save returns, having read
// it back) before it is published in memory or returned. While Save is
// held, no Token caller gets the new access token: neither the caller
// whose Token call started the refresh nor any concurrent one, whether
// callers wait for the refresh (no usable token) or it runs in the
// background (the old token is still served). [Cache.Set] promises the
// same. Once Save returns, every caller gets the new token, and the store
// already holds it when they do.
func TestPersistBeforeUse(t *testing.T) {
	t.Parallel()
	type result struct {
		tok    *oauth2.Token
		err    error
		stored *oauth2.Token // what the store held when Token returned
	}
	for _, tc := range []struct {
		name string
		// prepare puts the cache in its starting state, arms st and starts
		// the operation that saves newAT, reporting (on done) how it ended.
		prepare func(t *testing.T, c *Cache, st *holdStore, as *rotatingAS) (done <-chan error)
		// oldAT is what callers may get while the save is held ("": no
		// token may be served, they wait).
		oldAT        string
		newAT, newRT string
		// opWaits: the operation itself (the starting Token call, Set)
		// must not return before its Save does.
		opWaits bool
	}{
		{
			name: "refresh callers wait for (expired token)",
			prepare: func(t *testing.T, c *Cache, st *holdStore, as *rotatingAS) <-chan error {
				st.put(c.Key(), as.initial(time.Now().Add(-time.Second)))
				st.arm()
				done := make(chan error, 1)
				go func() { // the caller that starts the refresh
					tok, err := c.Token(context.Background())
					if err == nil && tok.AccessToken != "at-1" {
						err = fmt.Errorf("the starting caller got %q, want at-1", tok.AccessToken)
					}
					done <- err
				}()
				synctest.Wait() // it started the refresh and waits for it
				return done
			},
			newAT: "at-1", newRT: "rt-1", opWaits: true,
		},
		{
			name: "background refresh (old token still served)",
			prepare: func(t *testing.T, c *Cache, st *holdStore, as *rotatingAS) <-chan error {
				st.put(c.Key(), as.initial(time.Now().Add(time.Hour)))
				if tok, err := c.Token(t.Context()); err != nil || tok.AccessToken != "at-0" {
					t.Fatalf("first Token = %v, %v", tok, err)
				}
				time.Sleep(59 * time.Minute) // past the advisory point, before the mandatory window
				st.arm()
				done := make(chan error, 1)
				// The caller that starts the refresh is served the old
				// token at once; the refresh goes on in the background.
				go func() {
					start := time.Now()
					tok, err := c.Token(context.Background())
					switch {
					case err != nil:
					case tok.AccessToken != "at-0":
						err = fmt.Errorf("the starting caller got %q, want at-0", tok.AccessToken)
					case time.Since(start) > 0:
						err = fmt.Errorf("the starting caller waited %v", time.Since(start))
					}
					done <- err
				}()
				synctest.Wait()
				return done
			},
			oldAT: "at-0", newAT: "at-1", newRT: "rt-1",
		},
		{
			name: "Set",
			prepare: func(t *testing.T, c *Cache, st *holdStore, as *rotatingAS) <-chan error {
				st.put(c.Key(), as.initial(time.Now().Add(time.Hour)))
				if tok, err := c.Token(t.Context()); err != nil || tok.AccessToken != "at-0" {
					t.Fatalf("first Token = %v, %v", tok, err)
				}
				st.arm()
				done := make(chan error, 1)
				go func() {
					done <- c.Set(context.Background(), &oauth2.Token{AccessToken: "login-at", RefreshToken: "login-rt", Expiry: time.Now().Add(time.Hour)})
				}()
				return done
			},
			oldAT: "at-0", newAT: "login-at", newRT: "login-rt", opWaits: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				var st *holdStore
				f := scene{empty: true, options: idleOff, persister: func(m *memStore) Persister { st = newHoldStore(m); return st }}.start(t)
				as, c := f.as, f.c
				defer st.unblock() // before Close, which waits for the held save
				var (
					mu      sync.Mutex
					results []result
					wg      sync.WaitGroup
				)
				call := func() {
					wg.Go(func() {
						tok, err := c.Token(context.Background())
						stored := st.get(c.Key())
						mu.Lock()
						results = append(results, result{tok, err, stored})
						mu.Unlock()
					})
				}
				// probe is a caller that never waits: it reports what Token
				// hands out at this moment, if anything.
				probe := func() (*oauth2.Token, error) {
					ctx, cancel := context.WithCancel(context.Background())
					cancel()
					return c.Token(ctx)
				}
				done := tc.prepare(t, c, st, as)
				call() // concurrent callers, before the save starts ...
				synctest.Wait()
				select {
				case <-st.entered:
				default:
					t.Fatal("no Save started")
				}
				call() // ... and while it is held
				call()
				synctest.Wait()
				for i := range 3 {
					tok, err := probe()
					switch {
					case err == nil && tok.AccessToken == tc.newAT:
						t.Errorf("probe %d: Token returned the new token %q while its Save was still held", i, tc.newAT)
					case err == nil && tok.AccessToken != tc.oldAT:
						t.Errorf("probe %d: Token = %q, want %q (the old token) or no token", i, tok.AccessToken, tc.oldAT)
					case err != nil && (tc.oldAT != "" || !errors.Is(err, context.Canceled)):
						t.Errorf("probe %d: Token error %v while the save is held (old token %q)", i, err, tc.oldAT)
					}
				}
				mu.Lock()
				for _, r := range results {
					if r.err != nil || r.tok.AccessToken != tc.oldAT {
						t.Errorf("a concurrent caller returned %q, %v while the Save of %q was held; want the old token %q or no return", accessToken(r.tok), r.err, tc.newAT, tc.oldAT)
					}
				}
				mu.Unlock()
				opDone := false
				select {
				case err := <-done:
					opDone = true
					switch {
					case tc.opWaits:
						t.Errorf("the operation that saves %q returned (%v) while its Save was held", tc.newAT, err)
					case err != nil:
						t.Error(err)
					}
				default:
					if !tc.opWaits {
						t.Error("the caller that started the background refresh waits for it")
					}
				}
				if t.Failed() {
					return
				}

				st.unblock()
				if !opDone {
					if err := <-done; err != nil {
						t.Fatalf("operation: %v", err)
					}
				}
				wg.Wait()
				synctest.Wait() // a background refresh publishes after the save
				call()
				wg.Wait()
				if got := st.get(c.Key()); got == nil || got.AccessToken != tc.newAT || got.RefreshToken != tc.newRT {
					t.Fatalf("store holds %+v after the save, want %s/%s", got, tc.newAT, tc.newRT)
				}
				sawNew := false
				for _, r := range results {
					if r.err != nil {
						t.Fatalf("caller: %v", r.err)
					}
					if r.tok.AccessToken != tc.newAT {
						if r.tok.AccessToken == tc.oldAT {
							continue // served before the save started
						}
						t.Fatalf("caller got %q, want %q or %q", r.tok.AccessToken, tc.newAT, tc.oldAT)
					}
					sawNew = true
					if r.stored == nil || r.stored.RefreshToken != tc.newRT {
						t.Fatalf("a caller got %q while the store held %+v: published before it was saved", tc.newAT, r.stored)
					}
				}
				if !sawNew {
					t.Fatal("no caller got the new token after the save")
				}
				if tok, err := c.Token(t.Context()); err != nil || tok.AccessToken != tc.newAT {
					t.Fatalf("Token after the save = %v, %v; want %q", tok, err, tc.newAT)
				}
			})
		})
	}
}
