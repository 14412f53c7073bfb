package hostile

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/store"
)

// killPoint is one row of the kill matrix.
type killPoint struct {
	name  string
	point string // the child's store hook, or "" when the parent observes the point
	mode  store.Mode
	grace bool // the server has a reuse grace window
	// prepare arms the parent-side observation (fault, proxy) and returns a
	// function that waits until the child is at the point.
	prepare func(t *testing.T, w *world, p *holdProxy) (reached func())
	// stored says which token set the store must hold after the kill: "old"
	// (the seeded one), "new" (the one the killed child received) or "any".
	stored string
	// then is what a fresh process gets afterwards.
	then outcome
	// presentations the server saw in all (killed child and the next one).
	presentations int
}

// killPoints is the kill matrix: SIGKILL at each step of refresh-and-save.
func killPoints() []killPoint {
	return []killPoint{
		{name: "holding-lock-before-request", point: pointLocked, mode: store.ModePlaintextFile,
			stored: "old", then: recovers, presentations: 1},
		{name: "request-at-server-unprocessed", mode: store.ModePlaintextFile,
			prepare: func(t *testing.T, w *world, p *holdProxy) func() {
				w.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultHang, Endpoint: oauthtest.EndpointToken, Times: 1})
				return func() {
					if !eventually(20*time.Second, func() bool { return refreshPosts(w.as) == 1 }) {
						t.Fatal("the refresh request never reached the server")
					}
				}
			},
			stored: "old", then: recovers, presentations: 1},
		{name: "server-rotated-response-in-flight", mode: store.ModePlaintextFile,
			prepare: holdAnswer, stored: "old", then: reauth, presentations: 2},
		{name: "server-rotated-response-in-flight/grace", mode: store.ModePlaintextFile, grace: true,
			prepare: holdAnswer, stored: "old", then: graceRecovers, presentations: 2},
		{name: "response-received-before-save", point: pointBeforeSave, mode: store.ModePlaintextFile,
			stored: "old", then: reauth, presentations: 2},
		{name: "response-received-before-save/grace", point: pointBeforeSave, mode: store.ModePlaintextFile, grace: true,
			stored: "old", then: graceRecovers, presentations: 2},
		{name: "after-save-before-publish", point: pointAfterSave, mode: store.ModeEncryptedFile,
			stored: "new", then: recovers, presentations: 1},
		{name: "after-refresh-returned", point: pointDone, mode: store.ModePlaintextFile,
			stored: "new", then: recovers, presentations: 1},
	}
}

// holdAnswer arms the proxy: the server processes the refresh, the proxy
// holds the answer and reports it; the child is killed then.
func holdAnswer(t *testing.T, w *world, p *holdProxy) func() {
	p.arm.Store(true)
	return func() {
		select {
		case <-p.held:
		case <-time.After(20 * time.Second):
			t.Fatal("the server never answered the refresh")
		}
	}
}

// killWorld prepares a world whose store is a file store in a temporary
// directory, seeded with an expired token set, and a proxy in front of the
// token endpoint. It returns the world, the child environment, the proxy
// and the seeded refresh token.
func killWorld(t *testing.T, mode store.Mode, grace bool) (*world, childEnv, *holdProxy, string) {
	cfg := oauthtest.Config{}
	if grace {
		cfg.ReuseGrace = 30 * time.Second
	}
	w := newWorld(t, cfg)
	dir := t.TempDir()
	env := childEnv{Issuer: w.as.Issuer(), Resource: w.api.Resource(), Mode: mode,
		Dir: filepath.Join(dir, "data"), LockDir: filepath.Join(dir, "locks"), Passphrase: "hostile-passphrase"}
	st, err := env.openStore(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	w.st = st
	p := newHoldProxy(t, w.as.Issuer())
	env.TokenURL = p.url + oauthtest.PathToken
	return w, env, p, w.seed()
}

// TestKillDuringRefresh kills (SIGKILL) a process at each step of
// refresh-and-save and checks what the next process finds: the lock free,
// the stored token set intact (the old one or the complete new one), and
// either a working session or, when the server consumed the refresh token
// and no grace window exists, the re-authentication state. No refresh token
// is presented again after the server consumed it, except inside the
// server's grace window when it has one (RELIABILITY.md, "Process killed").
func TestKillDuringRefresh(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	t.Parallel()
	for _, kp := range killPoints() {
		t.Run(kp.name, func(t *testing.T) {
			t.Parallel()
			w, env, proxy, rt0 := killWorld(t, kp.mode, kp.grace)
			var reached func()
			if kp.prepare != nil {
				reached = kp.prepare(t, w, proxy)
			}
			env.Point = kp.point
			a := startChild(t, "kill", env)
			if kp.point != "" {
				a.await(t, "AT "+kp.point, 30*time.Second)
			} else {
				reached()
			}
			a.kill(t)
			if kp.name == "request-at-server-unprocessed" {
				abandoned(w)
				w.as.ClearFaults()
			}
			proxy.arm.Store(false)
			checkAfterKill(t, w, rt0, kp.stored)

			b := startChild(t, "kill", childEnv{Issuer: env.Issuer, TokenURL: env.TokenURL, Resource: env.Resource,
				Mode: env.Mode, Dir: env.Dir, LockDir: env.LockDir, Passphrase: env.Passphrase})
			r := b.result(t)
			switch kp.then {
			case recovers, graceRecovers:
				if !r.OK {
					t.Fatalf("the next process failed: %s; presentations %s", r.Err, describePresentations(w.as))
				}
				w.assertStoredActive()
				w.assertNoReplay(kp.grace)
			case reauth:
				if !r.Reauth {
					t.Fatalf("the next process got %+v, want ErrReauthRequired", r)
				}
				if _, ok := w.stored(); ok {
					t.Fatal("the dead token set is still stored")
				}
			}
			if n := len(w.as.RefreshPresentations()); n != kp.presentations {
				t.Fatalf("%d refresh token presentations in all, want %d: %s", n, kp.presentations, describePresentations(w.as))
			}
			if f := findSecrets(a.stdout.String() + a.stderr.String() + b.stdout.String() + b.stderr.String()); len(f) != 0 {
				t.Fatalf("secrets in the children's output: %v", f)
			}
		})
	}
}

// checkAfterKill checks the state a killed process left: the store lock is
// free at once, the entry decodes, and it holds the expected token set.
func checkAfterKill(t *testing.T, w *world, rt0, want string) (isNew bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	start := time.Now()
	unlock, err := w.st.Lock(ctx, w.key())
	if err != nil {
		t.Fatalf("the killed process's store lock was not released within 1 s: %v", err)
	}
	unlock()
	within(t, "taking the dead process's lock", time.Since(start), time.Second)
	e, err := w.st.Load(t.Context(), w.key())
	if err != nil {
		t.Fatalf("the stored entry is unreadable after the kill (corrupt or lost): %v", err)
	}
	isNew = e.RefreshToken != rt0
	if isNew {
		if _, known := w.as.Introspect(e.RefreshToken); !known {
			t.Fatal("the store holds a refresh token the server never issued")
		}
	}
	switch {
	case want == "old" && isNew:
		t.Fatal("the store holds a new token set; the kill point was passed")
	case want == "new" && !isNew:
		t.Fatal("the store still holds the old token set after a completed save")
	}
	return isNew
}

// killSamples is how many times TestKillDuringSave kills a child inside
// Save (TOKENWARD_KILL_SAMPLES overrides the default of 4).
func killSamples() int {
	if n, err := strconv.Atoi(os.Getenv("TOKENWARD_KILL_SAMPLES")); err == nil && n > 0 {
		return n
	}
	return 4
}

// TestKillDuringSave kills a child while it saves the rotated token set:
// the child announces that Save starts and the parent kills it after a
// random delay of 0-3 ms, so the kill lands somewhere in the store's
// temp-file, fsync, rename, read-back sequence (or just after it; where
// exactly is not observable from outside, so the point is sampled and the
// outcomes are counted). After each kill the store must hold the old or
// the complete new token set, never a mix or an unreadable file, and a
// leftover temporary file must not disturb the next process. The server has
// a reuse grace window, so that the next process recovers either way.
func TestKillDuringSave(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	t.Parallel()
	var old, fresh, temps atomic.Int32
	t.Run("samples", func(t *testing.T) {
		for i := range killSamples() {
			mode := store.ModePlaintextFile
			if i%4 == 0 {
				mode = store.ModeEncryptedFile
			}
			t.Run(fmt.Sprintf("%d-%s", i, mode), func(t *testing.T) {
				t.Parallel()
				w, env, _, rt0 := killWorld(t, mode, true)
				env.Point = pointDuringSave
				a := startChild(t, "kill", env)
				a.await(t, "AT "+pointDuringSave, 30*time.Second)
				delay := time.NewTimer(time.Duration(rand.Int64N(int64(3 * time.Millisecond)))) // sampling, not synchronisation
				<-delay.C
				a.kill(t)
				if checkAfterKill(t, w, rt0, "any") {
					fresh.Add(1)
				} else {
					old.Add(1)
				}
				if ents, _ := os.ReadDir(env.Dir); hasTemp(ents) {
					temps.Add(1)
				}
				b := startChild(t, "kill", childEnv{Issuer: env.Issuer, TokenURL: env.TokenURL, Resource: env.Resource,
					Mode: env.Mode, Dir: env.Dir, LockDir: env.LockDir, Passphrase: env.Passphrase})
				if r := b.result(t); !r.OK {
					t.Fatalf("the next process failed: %s", r.Err)
				}
				w.assertStoredActive()
				w.assertNoReplay(true)
			})
		}
	})
	t.Logf("kills inside Save: %d left the old token set, %d the new one, %d a temporary file", old.Load(), fresh.Load(), temps.Load())
}

// hasTemp reports whether a temporary file of the store is among ents.
func hasTemp(ents []os.DirEntry) bool {
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") {
			return true
		}
	}
	return false
}

// failingSave fails the next Save when armed, as a keychain or disk hiccup
// would.
type failingSave struct {
	store.Store
	armed atomic.Bool
}

// Save fails once when armed, else saves.
func (f *failingSave) Save(ctx context.Context, name string, e *store.Entry) error {
	if f.armed.CompareAndSwap(true, false) {
		return fmt.Errorf("hostile: injected save failure: %w", store.ErrUnavailable)
	}
	return f.Store.Save(ctx, name, e)
}

// TestSaveFailsThenAnotherProcessRefreshes is a cross-process row: this
// process refreshes, the server rotates, and saving the new token set fails
// once (the new refresh token is then kept in memory and the save retried
// on the next access, so that a failing keychain does not lose it). Before that retry, another process sharing the store
// refreshes: under the lock it reloads the store, which still holds the
// refresh token the server has just consumed. Presenting it is a reuse the
// server punishes by revoking the family, logging every process out.
func TestSaveFailsThenAnotherProcessRefreshes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	t.Parallel()
	w, env, _, _ := killWorld(t, store.ModePlaintextFile, false)
	fs := &failingSave{Store: w.st}
	cfg := w.config()
	cfg.Store = fs
	c := w.newClient(cfg)
	if _, err := c.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	fs.armed.Store(true)
	if status, err := w.forceRefresh(c); err != nil || status != http.StatusOK {
		t.Fatalf("API call: %d, %v", status, err)
	}
	w.persistFailed(store.ErrUnavailable)

	// The other process: its token is still valid, until the API rejects it.
	w.api.RejectNext(1)
	env.TokenURL = "" // straight to the server
	env.CallAPI = true
	r := startChild(t, "kill", env).result(t)
	t.Logf("other process: %+v; presentations %s", r, describePresentations(w.as))
	w.assertNoReplay(false)
	if r.APIStatus != http.StatusOK {
		t.Fatalf("the other process's API call: %d %s", r.APIStatus, r.APIErr)
	}
}
