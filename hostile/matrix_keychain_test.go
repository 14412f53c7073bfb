package hostile

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zalando/go-keyring"
	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/client"
	"github.com/tokenward/tokenward/internal/fakekeychain"
	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/refresh"
	"github.com/tokenward/tokenward/store"
)

// storeTimeout is the deadline of each keychain call in these rows.
const storeTimeout = 300 * time.Millisecond

// useKeychain replaces the world's store by the keychain mode on fk, with
// lock files in a temporary directory and a short call deadline.
func (w *world) useKeychain(fk *fakekeychain.Fake) {
	w.t.Helper()
	dir := w.t.TempDir()
	st, err := store.Open(w.t.Context(), func(o *store.Options) {
		o.Mode, o.Backend, o.LockDir, o.Dir, o.Timeout = store.ModeKeychain, fk, dir, dir, storeTimeout
	})
	if err != nil {
		w.t.Fatalf("store.Open: %v", err)
	}
	w.st = st
}

// awaitKeychain waits until the keychain answers again: after a hung call
// is released, the store refuses to start another until it has returned.
func (w *world) awaitKeychain() {
	w.t.Helper()
	if !eventually(5*time.Second, func() bool {
		_, err := w.st.Load(w.t.Context(), w.key())
		return !errors.Is(err, store.ErrTimeout)
	}) {
		w.t.Fatal("the keychain never answered again after the hung call was released")
	}
}

// failNext makes the next n calls of op on fk fail with err (the hook stays
// installed but becomes a no-op).
func failNext(fk *fakekeychain.Fake, op fakekeychain.Op, n int, err error) {
	var mu sync.Mutex
	fk.SetHook(func(c fakekeychain.Call) error {
		mu.Lock()
		defer mu.Unlock()
		if c.Op == op && n > 0 {
			n--
			return err
		}
		return nil
	})
}

// forceRefresh makes the API reject the current access token once, so that
// the transport invalidates it and the client refreshes (the public way a
// token dies early, a revocation), and returns the API's status for the
// resent request. The token is used once first, as a real client would:
// a token issued in answer to a rejection that is rejected again before it
// ever worked is not replaced at once (the rate limit of an API that
// rejects every token), and this helper is about revocations.
func (w *world) forceRefresh(c *client.Client) (int, error) {
	w.t.Helper()
	hc, err := c.HTTPClient(w.t.Context())
	if err != nil {
		w.t.Fatal(err)
	}
	if resp, err := hc.Get(w.api.URL() + "/before-revocation"); err == nil {
		resp.Body.Close()
	}
	w.api.RejectNext(1)
	resp, err := hc.Get(w.api.URL() + "/force-refresh")
	if err != nil {
		return 0, w.rec.err(err)
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// persistFailed returns the single EventPersistFailed recorded, failing the
// test unless there is exactly one and it matches want.
func (w *world) persistFailed(want error) {
	w.t.Helper()
	evs := w.rec.eventsOf(client.EventPersistFailed)
	if len(evs) != 1 {
		w.t.Fatalf("%d EventPersistFailed, want exactly 1 (reported once)", len(evs))
	}
	if !errors.Is(evs[0].Err, refresh.ErrPersistFailed) || !errors.Is(evs[0].Err, want) {
		w.t.Fatalf("EventPersistFailed error %v does not match ErrPersistFailed and %v", evs[0].Err, want)
	}
}

// TestFaultyKeychain runs the keychain rows of the matrix: the OS keychain
// (a fake Secret Service or generic keychain) is locked, hung, unavailable,
// full, or fails once, at startup or while a rotated refresh token is being
// saved (RELIABILITY.md, "Keychain").
func TestFaultyKeychain(t *testing.T) {
	t.Parallel()

	// At startup the stored token must be read before anything is sent: a
	// keychain that cannot be read fails the call typed, sends nothing, and
	// the token set is intact once the keychain is back.
	startup := []struct {
		name   string
		break_ func(fk *fakekeychain.Fake) (restore func())
		want   []error
		limit  time.Duration
	}{
		{"locked/at-startup", func(fk *fakekeychain.Fake) func() {
			fk.SetLocked(true)
			return func() { fk.SetLocked(false) }
		}, []error{store.ErrLocked}, time.Second},
		{"hung/at-startup", func(fk *fakekeychain.Fake) func() { return fk.Block() },
			[]error{store.ErrTimeout}, storeTimeout + 700*time.Millisecond},
		{"unavailable/at-startup", func(fk *fakekeychain.Fake) func() {
			fk.SetHook(func(fakekeychain.Call) error {
				return fakekeychain.DBusError("org.freedesktop.DBus.Error.ServiceUnknown")
			})
			return func() { fk.SetHook(nil) }
		}, []error{store.ErrUnavailable, client.ErrStoreUnavailable}, time.Second},
	}
	for _, tc := range startup {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, oauthtest.Config{})
			fk := fakekeychain.NewSecretService()
			w.useKeychain(fk)
			rt0 := w.seed()
			c := w.newClient(w.config())
			restore := tc.break_(fk)
			start := time.Now()
			_, err := c.Token(t.Context())
			within(t, "Token", time.Since(start), tc.limit)
			if !isAll(w.rec.err(err), tc.want...) {
				t.Fatalf("Token = %v, want %v", err, tc.want)
			}
			if n := refreshPosts(w.as); n != 0 {
				t.Fatalf("%d refresh requests although the stored token could not be read", n)
			}
			restore()
			w.awaitKeychain()
			if e, ok := w.stored(); !ok || e.RefreshToken != rt0 {
				t.Fatal("the stored token set changed while the keychain failed")
			}
			if err := tokenEventually(t, c, 5*time.Second); err != nil {
				t.Fatalf("no recovery once the keychain is back: %v", err)
			}
			w.assertStoredActive()
			w.assertNoReplay(false)
		})
	}

	// During a refresh the server rotates the refresh token and the save
	// fails: the new token is used in memory (the old one is spent), the
	// failure is reported once as ErrPersistFailed, nothing older is ever
	// presented again, and the save is retried until the keychain takes it.
	rotation := []struct {
		name   string
		server oauthtest.Config
		// break_ runs after the client holds a refreshed token; restore
		// makes the keychain work again.
		break_ func(w *world, fk *fakekeychain.Fake) (restore func())
		want   error // what the persist failure matches
		// refresh: after restore, the live token still cannot be stored as
		// it is (it is too large); a refresh with normal-size tokens must
		// then reach the store.
		refresh bool
	}{
		{"hung/save-after-rotation", oauthtest.Config{}, func(w *world, fk *fakekeychain.Fake) func() {
			release := make(chan struct{})
			fk.SetHook(func(c fakekeychain.Call) error {
				if c.Op == fakekeychain.OpSet {
					<-release
				}
				return nil
			})
			return func() { fk.SetHook(nil); close(release) }
		}, store.ErrTimeout, false},
		{"unavailable/save-after-rotation", oauthtest.Config{}, func(w *world, fk *fakekeychain.Fake) func() {
			fk.SetHook(func(c fakekeychain.Call) error {
				if c.Op == fakekeychain.OpSet {
					return fakekeychain.DBusError("org.freedesktop.DBus.Error.ServiceUnknown")
				}
				return nil
			})
			return func() { fk.SetHook(nil) }
		}, store.ErrUnavailable, false},
		{"failing-once-after-rotation", oauthtest.Config{}, func(w *world, fk *fakekeychain.Fake) func() {
			failNext(fk, fakekeychain.OpSet, 1, fakekeychain.DBusError("org.freedesktop.DBus.Error.Disconnected"))
			return func() {}
		}, store.ErrUnavailable, false},
		{"full/keychain-refuses-write", oauthtest.Config{}, func(w *world, fk *fakekeychain.Fake) func() {
			fk.SetHook(func(c fakekeychain.Call) error {
				if c.Op == fakekeychain.OpSet {
					return keyring.ErrSetDataTooBig
				}
				return nil
			})
			return func() { fk.SetHook(nil) }
		}, store.ErrTooLarge, false},
		{"full/entry-over-256KiB", oauthtest.Config{}, func(w *world, fk *fakekeychain.Fake) func() {
			// The server starts issuing 300 KiB access tokens: the entry is
			// over store.MaxEntrySize and can never be stored as it is.
			update(func(c *oauthtest.Config) { c.AccessTokenSize = 300 << 10 })(w)
			return func() { update(func(c *oauthtest.Config) { c.AccessTokenSize = 0 })(w) }
		}, store.ErrTooLarge, true},
	}
	// The keychain locks before a refresh: the reload under the lock fails,
	// so the refresh is not sent at all (the refresh token in memory may be
	// one another process has rotated since; presenting it could revoke
	// the family). The 401 that asked for the refresh reaches the caller,
	// the failure is typed ErrLocked, nothing is sent to the token
	// endpoint, and everything recovers once the keychain is unlocked.
	t.Run("locked/during-refresh", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, oauthtest.Config{})
		fk := fakekeychain.NewSecretService()
		w.useKeychain(fk)
		w.seed()
		c := w.newClient(w.config())
		if _, err := c.Token(t.Context()); err != nil {
			t.Fatalf("first refresh: %v", err)
		}
		posts := refreshPosts(w.as)
		fk.SetLocked(true)
		start := time.Now()
		status, err := w.forceRefresh(c)
		within(t, "the API call that needed a refresh", time.Since(start), 3*time.Second)
		if err == nil && status == http.StatusOK {
			t.Fatal("a refresh went ahead although the store could not be read under the lock")
		}
		if n := refreshPosts(w.as); n != posts {
			t.Fatalf("%d refresh requests sent while the store was unreadable, want 0", n-posts)
		}
		if !eventually(3*time.Second, func() bool {
			for _, e := range w.rec.eventsOf(client.EventRefreshFailed) {
				if errors.Is(e.Err, store.ErrLocked) {
					return true
				}
			}
			return false
		}) {
			t.Fatal("no EventRefreshFailed matching store.ErrLocked")
		}
		fk.SetLocked(false)
		if err := tokenEventually(t, c, 5*time.Second); err != nil {
			t.Fatalf("no recovery once the keychain is unlocked: %v", err)
		}
		if status, err := w.forceRefresh(c); err != nil || status != http.StatusOK {
			t.Fatalf("API call with a refresh after unlock: %d, %v", status, err)
		}
		w.assertStoredActive()
		w.assertNoReplay(false)
	})
	for _, tc := range rotation {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, tc.server)
			fk := fakekeychain.NewSecretService()
			w.useKeychain(fk)
			w.seed()
			c := w.newClient(w.config())
			if _, err := c.Token(t.Context()); err != nil {
				t.Fatalf("first refresh: %v", err)
			}
			before, _ := w.stored()
			restore := tc.break_(w, fk)

			start := time.Now()
			status, err := w.forceRefresh(c)
			within(t, "the API call that refreshed", time.Since(start), 3*time.Second)
			if err != nil || status != http.StatusOK {
				t.Fatalf("API call during the keychain failure: %d, %v; the new token must be used from memory", status, err)
			}
			w.persistFailed(tc.want)
			if n := refreshPosts(w.as); n != 2 {
				t.Fatalf("%d refresh requests, want 2", n)
			}
			// A second refresh while the keychain still fails must use the
			// token in memory, never the older stored one.
			if status, err := w.forceRefresh(c); err != nil || status != http.StatusOK {
				t.Fatalf("second API call during the keychain failure: %d, %v", status, err)
			}
			w.assertNoReplay(false)

			restore()
			w.awaitKeychain()
			// The stored set is the old one or a complete new one, never a
			// mix or a truncation.
			if e, ok := w.stored(); !ok {
				t.Fatal("the stored token set was lost")
			} else if e.RefreshToken != before.RefreshToken {
				if _, known := w.as.Introspect(e.RefreshToken); !known {
					t.Fatal("the store holds a refresh token the server never issued")
				}
			}
			if tc.refresh {
				// ErrTooLarge is permanent for that token set: the save
				// retries cannot succeed until a refresh brings tokens that
				// fit (see TestExitWithUnsavedToken for what that costs).
				if status, err := w.forceRefresh(c); err != nil || status != http.StatusOK {
					t.Fatalf("refresh after the server issues normal tokens again: %d, %v", status, err)
				}
			}
			// The next access retries the save.
			if !eventually(5*time.Second, func() bool {
				if _, err := c.Token(t.Context()); err != nil {
					return false
				}
				e, ok := w.stored()
				info, known := w.as.Introspect(e.RefreshToken)
				return ok && known && info.Active
			}) {
				t.Fatal("the live refresh token never reached the keychain")
			}
			w.assertStoredActive()
			w.assertNoReplay(false)
		})
	}
}

// TestStoreReadFailsAfterAnotherProcessRotated is the cross-process row of
// the keychain matrix: another process sharing the keychain refreshed (the
// server rotated the refresh token and that process stored the successor);
// then this process refreshes, and the keychain fails the reload it does
// under the lock. Presenting the refresh token it still holds in memory
// replays a token the server already rotated: reuse detection then revokes
// the whole family and every process must log in again. So the
// refresh must not be sent at all: the failure is reported typed
// (store.ErrTimeout, what the keychain's NoReply means) within the row's
// deadline, the API's 401 reaches the caller, and once the keychain answers
// again the client adopts the other process's token set without a refresh
// of its own.
func TestStoreReadFailsAfterAnotherProcessRotated(t *testing.T) {
	t.Parallel()
	const limit = time.Second
	w := newWorld(t, oauthtest.Config{})
	fk := fakekeychain.New(fakekeychain.Generic)
	w.useKeychain(fk)
	w.seed()
	c := w.newClient(w.config())
	if _, err := c.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	mine, _ := w.stored()

	// The other process: under the lock, refresh with the stored refresh
	// token and store the answer.
	unlock, err := w.st.Lock(t.Context(), w.key())
	if err != nil {
		t.Fatal(err)
	}
	next := rawRefresh(t, w, mine.RefreshToken)
	e := store.EntryFromToken(next)
	if err := w.st.Save(t.Context(), w.key(), e); err != nil {
		t.Fatal(err)
	}
	unlock()
	posts := refreshPosts(w.as)

	// This process's next refresh cannot read the keychain once.
	failNext(fk, fakekeychain.OpGet, 1, fakekeychain.DBusError("org.freedesktop.DBus.Error.NoReply"))
	start := time.Now()
	status, err := w.forceRefresh(c)
	within(t, "the API call that needed a refresh", time.Since(start), limit)
	if err != nil || status != http.StatusUnauthorized {
		t.Fatalf("API call after the failed reload: status %d, err %v; want the API's 401 (no refresh can go ahead)", status, err)
	}
	if n := refreshPosts(w.as); n != posts {
		t.Fatalf("%d refresh requests sent although the store could not be read under the lock; presentations %s", n-posts, describePresentations(w.as))
	}
	var failed *client.Event
	if !eventually(limit, func() bool {
		for _, ev := range w.rec.eventsOf(client.EventRefreshFailed) {
			if errors.Is(ev.Err, store.ErrTimeout) {
				failed = &ev
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no EventRefreshFailed matching store.ErrTimeout; refresh failures %v", w.rec.eventsOf(client.EventRefreshFailed))
	}
	within(t, "the typed refresh failure", failed.Time.Sub(start), limit)
	// Until the backoff ends, Token reports the same typed failure; after
	// it, the reload works and the other process's token set is adopted.
	if _, err := c.Token(t.Context()); err != nil && !errors.Is(w.rec.err(err), store.ErrTimeout) {
		t.Fatalf("Token after the failed reload = %v, want success or an error matching store.ErrTimeout", err)
	}
	w.assertNoReplay(false)

	if err := tokenEventually(t, c, 5*time.Second); err != nil {
		t.Fatalf("no recovery: %v", err)
	}
	if n := refreshPosts(w.as); n != posts {
		t.Fatalf("%d refresh requests after recovery; the other process's stored token set should have been adopted", n-posts)
	}
	if got := w.assertStoredActive(); got.RefreshToken != next.RefreshToken {
		t.Fatal("the store no longer holds the other process's refresh token, and no refresh was sent")
	}
	if status, err := w.forceRefresh(c); err != nil || status != http.StatusOK {
		t.Fatalf("API call after recovery: %d, %v", status, err)
	}
	w.assertNoReplay(false)
	w.assertStoredActive()
}

// rawRefresh refreshes at the token endpoint like another process would,
// and returns the new token set.
func rawRefresh(t *testing.T, w *world, rt string) *oauth2.Token {
	t.Helper()
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {oauthtest.DefaultClientID}, "resource": {w.api.Resource()}}
	resp, err := w.as.HTTPClient().PostForm(w.as.TokenURL(), form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken  string `json:"access_token"`
		TokenType    string `json:"token_type"`
		RefreshToken string `json:"refresh_token"`
		ExpiresIn    int64  `json:"expires_in"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK || !strings.EqualFold(body.TokenType, "bearer") {
		t.Fatalf("the other process's refresh failed: %d %v", resp.StatusCode, err)
	}
	w.remember(body.AccessToken, body.RefreshToken)
	return &oauth2.Token{AccessToken: body.AccessToken, TokenType: body.TokenType, RefreshToken: body.RefreshToken,
		Expiry: time.Now().Add(time.Duration(body.ExpiresIn) * time.Second)}
}

// TestExitWithUnsavedToken is the "process exits" row of the keychain
// matrix: the keychain fails the save of a rotated token set once, the
// program finishes its work and closes the client (a CLI command does so at
// once), and the next process starts. The rotated refresh token exists only
// in the first process's memory unless Close saves it; otherwise the next
// process presents the spent one and the server revokes the family: the
// rotated token must be saved before the process ends.
func TestExitWithUnsavedToken(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		break_ func(w *world, fk *fakekeychain.Fake)
		want   error
		bug    string
	}{
		{"keychain-failed-once", func(w *world, fk *fakekeychain.Fake) {
			failNext(fk, fakekeychain.OpSet, 1, fakekeychain.DBusError("org.freedesktop.DBus.Error.Disconnected"))
		}, store.ErrUnavailable, "Close does not retry the save of a token set whose save failed (still unsaved in memory; " +
			"refresh/cache.go shutdown() only waits for a flight in progress), so the rotated refresh token dies with the process"},
		{"entry-too-large", func(w *world, fk *fakekeychain.Fake) {
			update(func(c *oauthtest.Config) { c.AccessTokenSize = 300 << 10 })(w)
		}, store.ErrTooLarge, "a token set over store.MaxEntrySize is never stored, not even its refresh token (the save is " +
			"retried unchanged and fails the same way), so the rotated refresh token dies with the process"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, oauthtest.Config{})
			fk := fakekeychain.NewSecretService()
			w.useKeychain(fk)
			w.seed()
			cfg := w.config()
			// Production timing: the idle timer would retry the save after
			// about a second; the program closes before that.
			cfg.RefreshOptions = append(cfg.RefreshOptions, func(o *refresh.Options) {
				o.DisableIdleRefresh = false
				o.RetryBackoffMin, o.RetryBackoffMax = refresh.DefaultRetryBackoffMin, refresh.DefaultRetryBackoffMax
			})
			c, err := client.New(t.Context(), func(opts *client.Options) { *opts = cfg })
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() }) // Close is idempotent; closed below on purpose
			if _, err := c.Token(t.Context()); err != nil {
				t.Fatal(err)
			}
			tc.break_(w, fk)
			if status, err := w.forceRefresh(c); err != nil || status != http.StatusOK {
				t.Fatalf("API call: %d, %v", status, err)
			}
			w.persistFailed(tc.want)
			update(func(c *oauthtest.Config) { c.AccessTokenSize = 0 })(w)
			c.Close()

			// The next process.
			c2 := w.newClient(w.config())
			status, err := w.forceRefresh(c2)
			if err != nil || status != http.StatusOK {
				t.Fatalf("API call in the next process: %d, %v", status, err)
			}
			w.assertNoReplay(false)
			w.assertStoredActive()
		})
	}
}
