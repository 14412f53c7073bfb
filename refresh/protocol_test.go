package refresh

import (
	"context"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/oauth2"
)

// The cross-process protocol: lock, reload, adopt or refresh, persist,
// publish, unlock. (Real processes: multiproc_test.go.)

// The cache is restarted three times between rotations against a rotating
// server: each rotated refresh token was stored before it was used, so it
// is never a re-login.
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

// Another process refreshed already: the stored token is adopted without
// calling the Upstream.
func TestAdoptsTokenFromAnotherProcess(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := scene{first: time.Minute, options: idleOff}.start(t)
		as, key, c, evs, st := f.as, f.key, f.c, f.ev, f.st
		if _, err := c.Token(t.Context()); err != nil {
			t.Fatal(err)
		}
		// "Another process" refreshes through the same server and store.
		newer, err := as.Token(t.Context(), st.get(key))
		if err != nil {
			t.Fatal(err)
		}
		st.put(key, newer)
		time.Sleep(time.Minute)
		tok, err := c.Token(t.Context())
		if err != nil || tok.AccessToken != "at-1" {
			t.Fatalf("Token = %v, %v; want the adopted at-1", tok, err)
		}
		if calls, reuses, _ := as.stats(); calls != 1 || reuses != 0 {
			t.Fatalf("upstream calls = %d (reuses %d), want only the other process's", calls, reuses)
		}
		if evs.count(EventAdopted) != 1 {
			t.Fatalf("events %v, want one adopted", evs.all())
		}
	})
}

// The reload under the lock fails after another process rotated: the
// refresh token in memory (spent) must not be presented. The refresh
// fails, and the next one adopts the other process's token.
func TestReloadFailureNeverPresentsMemoryRT(t *testing.T) {
	t.Parallel()
	t.Run("saved token", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			var st *faultStore
			f := scene{first: -time.Second, persister: func(m *memStore) Persister { st = newFaultStore(m); return st }}.start(t)
			as, key, c, evs := f.as, f.key, f.c, f.ev
			t1, err := c.Token(t.Context())
			if err != nil || t1.AccessToken != "at-1" {
				t.Fatalf("Token = %v, %v", t1, err)
			}
			// Another process refreshes (rt-1 is spent) and stores at-2.
			newer, err := as.Token(t.Context(), st.get(key))
			if err != nil {
				t.Fatal(err)
			}
			st.put(key, newer)
			st.set(func(f *faultStore) { f.failLoads = 1 })
			c.Invalidate(t1) // a 401
			if _, err := c.Token(t.Context()); !errors.Is(err, errStoreRead) {
				t.Fatalf("Token = %v, want the store's read error", err)
			}
			if _, reuses, presented := as.stats(); reuses != 0 || len(presented) != 2 {
				t.Fatalf("presented %v (reuses %d): the spent rt-1 was presented again", presented, reuses)
			}
			time.Sleep(2 * time.Second) // past the backoff
			if tok, err := c.Token(t.Context()); err != nil || tok.AccessToken != "at-2" {
				t.Fatalf("Token = %v, %v; want the adopted at-2", tok, err)
			}
			if n := evs.count(EventAdopted); n != 1 {
				t.Fatalf("%d adopted events, want 1", n)
			}
			if calls, reuses, _ := as.stats(); calls != 2 || reuses != 0 {
				t.Fatalf("upstream calls %d (reuses %d), want 2", calls, reuses)
			}
		})
	})
	t.Run("while valid: keeps serving", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			var st *faultStore
			f := scene{first: time.Minute, persister: func(m *memStore) Persister { st = newFaultStore(m); return st }, options: idleOff}.start(t)
			as, c := f.as, f.c
			t0, err := c.Token(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			st.set(func(f *faultStore) { f.failLoads = 1 })
			time.Sleep(52 * time.Second) // past the advisory point
			if tok, err := c.Token(t.Context()); err != nil || tok != t0 {
				t.Fatalf("Token = %v, %v; want the valid at-0 while the background refresh fails", tok, err)
			}
			synctest.Wait()
			if calls, _, _ := as.stats(); calls != 0 {
				t.Fatalf("upstream called %d times after a failed reload", calls)
			}
		})
	})
	t.Run("unsaved token: memory is newest", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			var st *faultStore
			f := scene{first: -time.Second, persister: func(m *memStore) Persister { st = newFaultStore(m); return st }, options: idleOff}.start(t)
			as, c := f.as, f.c
			st.setFailSaves(1000)
			t1, err := c.Token(t.Context())
			if err != nil || t1.AccessToken != "at-1" {
				t.Fatalf("Token = %v, %v", t1, err)
			}
			st.set(func(f *faultStore) { f.failLoads = 1000 })
			c.Invalidate(t1)
			if tok, err := c.Token(t.Context()); err != nil || tok.AccessToken != "at-2" {
				t.Fatalf("Token = %v, %v; want at-2 refreshed with the unsaved rt-1", tok, err)
			}
			if _, reuses, presented := as.stats(); reuses != 0 || strings.Join(presented, ",") != "rt-0,rt-1" {
				t.Fatalf("presented %v (reuses %d)", presented, reuses)
			}
		})
	})
}

// A process in the re-authentication state (another process removed the
// stored token) adopts the entry when one appears again (another process
// logged in, or saved a token after a failure), instead of staying logged
// out.
func TestReauthStateAdoptsReappearingEntry(t *testing.T) {
	t.Parallel()
	for _, fresh := range []bool{true, false} {
		synctest.Test(t, func(t *testing.T) {
			f := scene{first: time.Hour, options: idleOff}.start(t)
			as, key, c, st := f.as, f.key, f.c, f.st
			t0, err := c.Token(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			st.Delete(t.Context(), key) // another process logs out
			c.Invalidate(t0)
			if _, err := c.Token(t.Context()); !errors.Is(err, ErrReauthRequired) {
				t.Fatalf("Token = %v, want ErrReauthRequired", err)
			}
			// The entry reappears: rt-0, now held by another process that
			// stored it back (fresh or not).
			exp := time.Now().Add(time.Hour)
			if !fresh {
				exp = time.Now().Add(-time.Minute)
			}
			st.put(key, &oauth2.Token{AccessToken: "at-back", RefreshToken: "rt-0", Expiry: exp})
			time.Sleep(2 * time.Second) // past the backoff
			tok, err := c.Token(t.Context())
			want := "at-back"
			if !fresh {
				want = "at-1" // refreshed with the stored rt-0
			}
			if err != nil || tok.AccessToken != want {
				t.Fatalf("fresh=%v: Token = %v, %v; want %s", fresh, tok, err, want)
			}
			if _, reuses, _ := as.stats(); reuses != 0 {
				t.Fatal("reuse")
			}
		})
	}
}

// The wait for the store lock is bounded by LockTimeout, not charged to
// RefreshTimeout (another process may hold the lock for a whole refresh);
// it is still bounded.
func TestLockWaitHasItsOwnBound(t *testing.T) {
	t.Parallel()
	setup := func(t *testing.T) (*memStore, *Cache) {
		f := scene{first: -time.Second, options: func(o *Options) { o.RefreshTimeout = time.Second; o.LockTimeout = 20 * time.Second }}.start(t)
		f.st.lock <- struct{}{} // another process holds the lock
		return f.st, f.c
	}
	t.Run("longer than RefreshTimeout", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			st, c := setup(t)
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
			defer func() { <-st.lock }() // before the cache is closed
			start := time.Now()
			_, err := c.Token(t.Context())
			if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 20*time.Second {
				t.Fatalf("Token = %v after %v; want the lock wait to end after LockTimeout (20 s)", err, time.Since(start))
			}
		})
	})
}

// A refresh whose answer is lost after the server rotated: the refresh
// token may be spent, so it is presented again only within the rotation
// grace, and a later invalid_grant says the rotation was probably lost.
func TestRotationLoss(t *testing.T) {
	t.Parallel()
	setup := func(t *testing.T, grace time.Duration) (*rotatingAS, *memStore, *Cache) {
		f := scene{first: -time.Second, options: func(o *Options) { o.RotationGrace = grace }, server: func(as *rotatingAS) {
			as.grace = 20 * time.Second
			as.lost = func(n int) bool { return n == 1 }
		}}.start(t)
		return f.as, f.st, f.c
	}
	t.Run("no grace: no blind retry, then possible rotation loss", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			as, _, c := setup(t, 0)
			_, err := c.Token(t.Context())
			if !errors.Is(err, ErrNetwork) {
				t.Fatalf("err = %v, want ErrNetwork", err)
			}
			if calls, _, _ := as.stats(); calls != 1 {
				t.Fatalf("calls = %d, want 1 (no blind retry without a grace)", calls)
			}
			time.Sleep(time.Minute) // past the backoff and the server's grace
			_, err = c.Token(t.Context())
			if !errors.Is(err, ErrReauthRequired) || !errors.Is(err, ErrPossibleRotationLoss) || !strings.Contains(err.Error(), "possible rotation loss") {
				t.Fatalf("err = %v, want ErrReauthRequired saying possible rotation loss", err)
			}
		})
	})
	t.Run("within the grace: one retry", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			as, st, c := setup(t, 10*time.Second)
			tok, err := c.Token(t.Context())
			if err != nil || tok.AccessToken != "at-1" {
				t.Fatalf("Token = %v, %v; want at-1 after one retry", tok, err)
			}
			calls, reuses, presented := as.stats()
			if calls != 2 || reuses != 0 || presented[1] != "rt-0" {
				t.Fatalf("calls %d reuses %d presented %v", calls, reuses, presented)
			}
			if st.get(c.Key()).RefreshToken != "rt-1" {
				t.Fatal("rt-1 not stored")
			}
		})
	})
	t.Run("the store is reloaded first", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			as, st, c := setup(t, 0)
			// Another process that shares the store (without our lock)
			// saved a fresh token while our answer was lost.
			as.lost = func(n int) bool {
				st.put(c.Key(), &oauth2.Token{AccessToken: "other-at", RefreshToken: "other-rt", Expiry: time.Now().Add(time.Hour)})
				return true
			}
			tok, err := c.Token(t.Context())
			if err != nil || tok.AccessToken != "other-at" {
				t.Fatalf("Token = %v, %v; want the stored token adopted", tok, err)
			}
			if calls, _, _ := as.stats(); calls != 1 {
				t.Fatalf("calls = %d, want 1", calls)
			}
		})
	})
	t.Run("dial errors are not suspect", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			as, _, c := setup(t, 0)
			as.lost = nil
			as.fail = func(n int) error {
				switch n {
				case 1:
					return &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
				case 2:
					return retrieveErr(400, "invalid_grant", "")
				}
				return nil
			}
			if _, err := c.Token(t.Context()); !errors.Is(err, ErrNetwork) {
				t.Fatalf("err = %v, want ErrNetwork", err)
			}
			time.Sleep(time.Minute)
			_, err := c.Token(t.Context())
			if !errors.Is(err, ErrReauthRequired) || errors.Is(err, ErrPossibleRotationLoss) {
				t.Fatalf("err = %v, want ErrReauthRequired without rotation loss", err)
			}
		})
	})
}

// A failed save followed by a refresh whose answer is lost in transit must
// not fall back to the older, already spent refresh token still in the
// store.
func TestLostAnswerNeverFallsBackToStoredRT(t *testing.T) {
	t.Parallel()
	t.Run("unsaved token", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			f := scene{life: time.Minute, first: -time.Second, options: idleOff, server: func(as *rotatingAS) {
				as.lost = func(n int) bool { return n == 2 } // the server rotates rt-1, the answer is lost
			}}.start(t)
			as, c, st := f.as, f.c, f.st
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
			f := scene{first: -time.Second}.start(t)
			as, key, c, st := f.as, f.key, f.c, f.st
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

// A 401 that arrives while a refresh waits for the store lock (another
// process is logging out) invalidates the token; when the refresh then
// finds the stored token removed, the token it marks dead must stay
// invalidated: a revoked token is never served again.
func TestInvalidateSurvivesRemovedStore(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		key := testKey(t)
		up := UpstreamFunc(func(ctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
			return &oauth2.Token{AccessToken: "at-up", RefreshToken: "rt-up", Expiry: time.Now().Add(time.Hour)}, nil
		})
		c, err := New(key, up, func(o *Options) { o.Persister = st; o.DisableIdleRefresh = true })
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Set(t.Context(), &oauth2.Token{AccessToken: "at-0", RefreshToken: "rt-0", Expiry: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(58 * time.Minute)           // past the advisory point
		unlock, _ := st.Lock(t.Context(), key) // another process holds the lock: its logout
		tok, err := c.Token(t.Context())       // served; a background refresh waits for the lock
		if err != nil || tok.AccessToken != "at-0" {
			t.Fatal(tok, err)
		}
		synctest.Wait()
		if !c.Invalidate(tok) { // the API rejected it
			t.Fatal("not invalidated")
		}
		st.Delete(t.Context(), key) // the other process logged out
		unlock()
		synctest.Wait()
		if got, err := c.Token(t.Context()); err == nil && got.AccessToken == "at-0" {
			t.Fatal("the invalidated token is served again after the refresh found the store empty")
		}
	})
}
