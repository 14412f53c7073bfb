package refresh

// Regression tests for the hostile-world bugs 2-4 (hostile/
// TestExitWithUnsavedToken, TestStoreReadFailsAfterAnotherProcessRotated,
// TestSaveFailsThenAnotherProcessRefreshes): a token whose save failed is
// saved by Close, or in a reduced set at once; a failed reload under the
// lock never presents the refresh token in memory; the store never keeps a
// consumed refresh token after the lock is released while a smaller set
// could hold the new one.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/canary"
	"github.com/tokenward/tokenward/internal/tokenx"
)

var (
	errStoreRead = errors.New("faultstore: keychain did not reply")
	errTooLarge  = errors.New("faultstore: entry too large")
)

// faultStore is a memStore that can also fail loads, refuse large token
// sets (like store.MaxEntrySize or a keychain's item limit), and hang saves
// until their context ends.
type faultStore struct {
	*memStore

	fmu       sync.Mutex
	failLoads int  // the next failLoads Loads fail
	maxSize   int  // Save refuses sets whose access token + ID token exceed this (0: no limit)
	hang      bool // Save blocks until its context ends
	tooLarge  int  // saves refused as too large
}

func newFaultStore() *faultStore { return &faultStore{memStore: newMemStore()} }

func (f *faultStore) Load(ctx context.Context, key string) (*oauth2.Token, error) {
	f.fmu.Lock()
	if f.failLoads > 0 {
		f.failLoads--
		f.fmu.Unlock()
		return nil, errStoreRead
	}
	f.fmu.Unlock()
	return f.memStore.Load(ctx, key)
}

func (f *faultStore) Save(ctx context.Context, key string, tok *oauth2.Token) error {
	f.fmu.Lock()
	hang, max := f.hang, f.maxSize
	if max > 0 && len(tok.AccessToken)+len(tokenx.IDToken(tok)) > max {
		f.tooLarge++
		f.fmu.Unlock()
		return errTooLarge
	}
	f.fmu.Unlock()
	if hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return f.memStore.Save(ctx, key, tok)
}

func (f *faultStore) set(fn func(f *faultStore)) {
	f.fmu.Lock()
	defer f.fmu.Unlock()
	fn(f)
}

func (s *memStore) setFailSaves(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failSaves = n
}

// otherProcess returns a cache for key that does not share this process's
// registry: a second process with the same store (whose lock is the
// cross-process lock).
func otherProcess(t testing.TB, key string, up Upstream, optFns ...func(*Options)) *Cache {
	t.Helper()
	var o Options
	for _, fn := range optFns {
		fn(&o)
	}
	c := newCore(key, up, o.resolve())
	registry.mu.Lock()
	c.refs = 1 // Close stops it; it is not in the registry
	registry.mu.Unlock()
	return &Cache{c: c}
}

// Bug 2: Close of the last handle makes one last save attempt of a token
// whose save failed, so that a program that exits right away does not take
// the only live refresh token with it.
func TestCloseSavesUnsavedToken(t *testing.T) {
	t.Parallel()
	t.Run("saved", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			as := newRotatingAS(time.Hour)
			st := newMemStore()
			key := testKey(t)
			st.put(key, as.initial(time.Now().Add(-time.Second)))
			var evs eventLog
			opts := func(o *Options) {
				o.Persister, o.OnEvent = st, evs.add
				o.RetryBackoffMin, o.RetryBackoffMax = time.Second, 30*time.Second // production timing
			}
			c := mustNewKey(t, key, as, opts)
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
			c2 := mustNewKey(t, key, as, func(o *Options) { o.Persister = st })
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
			as := newRotatingAS(time.Hour)
			st := newFaultStore()
			key := testKey(t)
			st.put(key, as.initial(time.Now().Add(-time.Second)))
			c := mustNewKey(t, key, as, func(o *Options) { o.Persister = st; o.RefreshTimeout = 2 * time.Second })
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
			as := newRotatingAS(time.Hour)
			st := newMemStore()
			key := testKey(t)
			st.put(key, as.initial(time.Now().Add(-time.Second)))
			c := mustNewKey(t, key, as, func(o *Options) { o.Persister = st; o.DisableIdleRefresh = true })
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

// Bug 2, second half: a token set the store can never take (an access
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
			as := newRotatingAS(time.Hour)
			big := true
			as.mkAT = func(g int, _ time.Time) string {
				if g == 1 && big {
					return "at-1-" + strings.Repeat("A", 300)
				}
				return "at-" + string(rune('0'+g))
			}
			st := newFaultStore()
			st.set(func(f *faultStore) { f.maxSize = 200 })
			key := testKey(t)
			st.put(key, as.initial(time.Now().Add(-time.Second)))
			var evs eventLog
			up := withExtras(as, 10)
			c := mustNewKey(t, key, up, func(o *Options) { o.Persister = st; o.OnEvent = evs.add; o.DisableIdleRefresh = true })
			defer c.Close()
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
			as := newRotatingAS(time.Hour)
			st := newFaultStore()
			st.set(func(f *faultStore) { f.maxSize = 200 })
			key := testKey(t)
			st.put(key, as.initial(time.Now().Add(-time.Second)))
			var evs eventLog
			c := mustNewKey(t, key, withExtras(as, 500), func(o *Options) { o.Persister = st; o.OnEvent = evs.add; o.DisableIdleRefresh = true })
			defer c.Close()
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
				as := newRotatingAS(time.Hour)
				st := newMemStore()
				key := testKey(t)
				as.initial(time.Now().Add(time.Hour))
				var e time.Time
				if exp != 0 {
					e = time.Now().Add(exp)
				}
				st.put(key, &oauth2.Token{RefreshToken: "rt-0", Expiry: e})
				c := mustNewKey(t, key, as, func(o *Options) { o.Persister = st })
				defer c.Close()
				if tok, err := c.Token(t.Context()); err != nil || tok.AccessToken != "at-1" {
					t.Fatalf("Token = %v, %v; want at-1 refreshed with the stored rt-0", tok, err)
				}
			})
		}
	})
}

// Bug 3: the reload under the lock fails after another process rotated;
// the refresh token in memory (spent) must not be presented. The refresh
// fails, and the next one adopts the other process's token.
func TestReloadFailureNeverPresentsMemoryRT(t *testing.T) {
	t.Parallel()
	t.Run("saved token", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			as := newRotatingAS(time.Hour)
			st := newFaultStore()
			key := testKey(t)
			st.put(key, as.initial(time.Now().Add(-time.Second)))
			var evs eventLog
			c := mustNewKey(t, key, as, func(o *Options) { o.Persister = st; o.OnEvent = evs.add })
			defer c.Close()
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
			as := newRotatingAS(time.Hour)
			st := newFaultStore()
			key := testKey(t)
			st.put(key, as.initial(time.Now().Add(time.Minute)))
			c := mustNewKey(t, key, as, func(o *Options) { o.Persister = st; o.DisableIdleRefresh = true })
			defer c.Close()
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
			as := newRotatingAS(time.Hour)
			st := newFaultStore()
			key := testKey(t)
			st.put(key, as.initial(time.Now().Add(-time.Second)))
			c := mustNewKey(t, key, as, func(o *Options) { o.Persister = st; o.DisableIdleRefresh = true })
			defer c.Close()
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

// Bug 4: this process's save fails after the server rotated; another
// process that refreshes before this one's retry must find the new refresh
// token in the store, never the consumed one.
func TestSaveFailureLeavesNoConsumedRTStored(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		as := newRotatingAS(time.Hour)
		st := newMemStore()
		key := testKey(t)
		st.put(key, as.initial(time.Now().Add(-time.Second)))
		var evs eventLog
		a := mustNewKey(t, key, as, func(o *Options) { o.Persister = st; o.OnEvent = evs.add; o.DisableIdleRefresh = true })
		defer a.Close()
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

// A process in the re-authentication state (another process removed the
// stored token) adopts the entry when one appears again (another process
// logged in, or saved a token after a failure), instead of staying logged
// out.
func TestReauthStateAdoptsReappearingEntry(t *testing.T) {
	t.Parallel()
	for _, fresh := range []bool{true, false} {
		synctest.Test(t, func(t *testing.T) {
			as := newRotatingAS(time.Hour)
			st := newMemStore()
			key := testKey(t)
			st.put(key, as.initial(time.Now().Add(time.Hour)))
			c := mustNewKey(t, key, as, func(o *Options) { o.Persister = st; o.DisableIdleRefresh = true })
			defer c.Close()
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

// echoStore fails every Save with an error that echoes the token it was
// given, as a careless keychain backend might.
type echoStore struct{ *memStore }

func (e echoStore) Save(ctx context.Context, key string, tok *oauth2.Token) error {
	return fmt.Errorf("keychain rejected item %q/%q", tok.AccessToken, tok.RefreshToken)
}

// The reduced-set fallback, the final save of Close and the failed reload
// under the lock log and report nothing secret, even when the store echoes
// the tokens in its errors.
func TestPersistPathsRedacted(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var secrets []string
		as := newRotatingAS(time.Hour)
		as.mkAT = func(g int, exp time.Time) string { return canary.JWT("at", exp.Unix()) }
		as.mkRT = func(g int) string { return canary.New("rt") }
		var logs syncBuffer
		logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		var evs eventLog
		st := newFaultStore()
		key := testKey(t)
		t0 := as.initial(time.Now().Add(-time.Second))
		secrets = append(secrets, t0.AccessToken, t0.RefreshToken)
		st.put(key, t0)
		c, err := New(key, UpstreamFunc(func(ctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
			tok, err := as.Token(ctx, cur)
			if tok != nil {
				secrets = append(secrets, tok.AccessToken, tok.RefreshToken)
			}
			return tok, err
		}), func(o *Options) { o.Persister = echoStore{st.memStore}; o.Logger = logger; o.OnEvent = evs.add })
		if err != nil {
			t.Fatal(err)
		}
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

// holdStore is a memStore whose Saves, once armed, announce that they have
// started (entered) and then wait for release before storing: a slow
// keychain, to look at the cache while a save is under way.
type holdStore struct {
	*memStore
	entered chan struct{} // closed when the first held Save starts
	release chan struct{} // held Saves return after this is closed

	hmu   sync.Mutex
	armed bool
	held  int
	once  sync.Once
}

func newHoldStore() *holdStore {
	return &holdStore{memStore: newMemStore(), entered: make(chan struct{}), release: make(chan struct{})}
}

func (s *holdStore) arm() {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	s.armed = true
}

func (s *holdStore) unblock() { s.once.Do(func() { close(s.release) }) }

// Save ignores ctx while held, as a hung keychain call does; the tests
// release it before anything could time out.
func (s *holdStore) Save(ctx context.Context, key string, tok *oauth2.Token) error {
	s.hmu.Lock()
	armed := s.armed
	if armed {
		s.held++
		if s.held == 1 {
			close(s.entered)
		}
	}
	s.hmu.Unlock()
	if armed {
		<-s.release
	}
	return s.memStore.Save(ctx, key, tok)
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
				as := newRotatingAS(time.Hour)
				st := newHoldStore()
				c := mustNew(t, as, func(o *Options) { o.Persister = st; o.DisableIdleRefresh = true })
				defer c.Close()
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

// accessToken returns tok's access token, or "" for nil.
func accessToken(tok *oauth2.Token) string {
	if tok == nil {
		return ""
	}
	return tok.AccessToken
}
