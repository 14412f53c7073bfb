package hostile

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenward/tokenward/client"
	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/refresh"
	"github.com/tokenward/tokenward/store"
)

// Kill points announced by the child's store wrapper (killStore) or
// observed by the parent.
const (
	pointLocked     = "locked"      // the store lock is held, nothing sent yet
	pointBeforeSave = "before-save" // the token response arrived; Save not started
	pointDuringSave = "during-save" // Save starts now; the parent kills at once
	pointAfterSave  = "after-save"  // Save returned (written and read back); not yet published
	pointDone       = "done"        // Token returned the new token
)

// childEnv lists the environment of a kill or soak child.
type childEnv struct {
	Issuer, TokenURL, Resource string
	Mode                       store.Mode
	Dir, LockDir, Passphrase   string
	Point                      string
	Grace                      time.Duration
	// CallAPI makes a kill child also call the API (at Resource) once
	// after Token and report the status.
	CallAPI bool
}

// environ returns the child's environment for role.
func (e childEnv) environ(role string) []string {
	return append(os.Environ(),
		envChild+"="+role,
		"HOSTILE_ISSUER="+e.Issuer, "HOSTILE_TOKEN_URL="+e.TokenURL, "HOSTILE_RESOURCE="+e.Resource,
		"HOSTILE_MODE="+string(e.Mode), "HOSTILE_DIR="+e.Dir, "HOSTILE_LOCKDIR="+e.LockDir,
		"HOSTILE_PASS="+e.Passphrase, "HOSTILE_POINT="+e.Point, "HOSTILE_GRACE="+e.Grace.String(),
		"HOSTILE_CALL_API="+strconv.FormatBool(e.CallAPI))
}

// childEnvFromOS reads a child's settings from its environment.
func childEnvFromOS() childEnv {
	g, _ := time.ParseDuration(os.Getenv("HOSTILE_GRACE"))
	return childEnv{
		Issuer: os.Getenv("HOSTILE_ISSUER"), TokenURL: os.Getenv("HOSTILE_TOKEN_URL"), Resource: os.Getenv("HOSTILE_RESOURCE"),
		Mode: store.Mode(os.Getenv("HOSTILE_MODE")), Dir: os.Getenv("HOSTILE_DIR"), LockDir: os.Getenv("HOSTILE_LOCKDIR"),
		Passphrase: os.Getenv("HOSTILE_PASS"), Point: os.Getenv("HOSTILE_POINT"), Grace: g,
		CallAPI: os.Getenv("HOSTILE_CALL_API") == "true",
	}
}

// openStore opens the file store of e.
func (e childEnv) openStore(ctx context.Context) (store.Store, error) {
	return store.Open(ctx, func(o *store.Options) {
		o.Mode, o.Dir, o.LockDir, o.Passphrase = e.Mode, e.Dir, e.LockDir, e.Passphrase
	})
}

// childConfig is the client configuration of a child process.
func (e childEnv) childConfig(st store.Store) client.Options {
	cfg := client.Options{
		Issuer: e.Issuer, ClientID: oauthtest.DefaultClientID, Scopes: []string{"read"}, Resources: []string{e.Resource},
		AllowInsecureLoopback: true, Store: st, Prompt: io.Discard,
		HTTP: client.HTTPSettings{Timeout: 20 * time.Second},
		RefreshOptions: []func(*refresh.Options){func(o *refresh.Options) {
			o.DisableIdleRefresh = true
			o.RotationGrace = e.Grace
		}},
	}
	if e.TokenURL != "" {
		cfg.Endpoints.TokenURL = e.TokenURL
	}
	return cfg
}

// announce tells the parent that the child reached a kill point.
func announce(point string) { fmt.Fprintf(os.Stdout, "AT %s\n", point) }

// waitForKill blocks until the parent kills the process (it never closes
// the child's standard input).
func waitForKill() { io.Copy(io.Discard, os.Stdin) }

// killStore wraps the child's store and stops (or announces) at the kill
// point: the hook between the steps of refresh-and-save. It uses only the
// public store.Store interface, the way client.Options.Store receives it.
type killStore struct {
	store.Store
	point string
}

// Lock takes the store lock and stops there at pointLocked.
func (k *killStore) Lock(ctx context.Context, name string) (func() error, error) {
	unlock, err := k.Store.Lock(ctx, name)
	if err == nil && k.point == pointLocked {
		announce(pointLocked)
		waitForKill()
	}
	return unlock, err
}

// Save stops before or after saving, or announces the save, per the point.
func (k *killStore) Save(ctx context.Context, name string, e *store.Entry) error {
	switch k.point {
	case pointBeforeSave:
		announce(pointBeforeSave)
		waitForKill()
	case pointDuringSave:
		announce(pointDuringSave)
	}
	err := k.Store.Save(ctx, name, e)
	if k.point == pointAfterSave && err == nil {
		announce(pointAfterSave)
		waitForKill()
	}
	return err
}

// childResult is what a child reports on its last line. It never carries a
// token, only a digest of the access token.
type childResult struct {
	OK       bool   `json:"ok"`
	Reauth   bool   `json:"reauth"`
	Err      string `json:"err,omitempty"`
	ATDigest string `json:"at_digest,omitempty"`
	// APIStatus is the status of the API call (CallAPI), 0 on error.
	APIStatus int    `json:"api_status,omitempty"`
	APIErr    string `json:"api_err,omitempty"`
}

// digest identifies s without revealing it.
func digest(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:8])
}

// killChild is the child of TestKillDuringRefresh: it opens the file store,
// asks the client for the (expired) token, which refreshes, and stops at the
// kill point if it has one; without one it reports the result.
func killChild() int {
	ctx := context.Background()
	e := childEnvFromOS()
	st, err := e.openStore(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "store.Open:", err)
		return 1
	}
	c, err := client.New(ctx, func(opts *client.Options) { *opts = e.childConfig(&killStore{Store: st, point: e.Point}) })
	if err != nil {
		fmt.Fprintln(os.Stderr, "client.New:", err)
		return 1
	}
	defer c.Close()
	tok, err := c.Token(ctx)
	if err == nil && e.Point == pointDone {
		announce(pointDone)
		waitForKill()
	}
	r := childResult{OK: err == nil, Reauth: errors.Is(err, client.ErrReauthRequired)}
	if err != nil {
		r.Err = err.Error()
	} else {
		r.ATDigest = digest(tok.AccessToken)
	}
	if e.CallAPI {
		hc, _ := c.HTTPClient(ctx)
		if resp, err := hc.Get(e.Resource + "/from-another-process"); err != nil {
			r.APIErr = err.Error()
		} else {
			resp.Body.Close()
			r.APIStatus = resp.StatusCode
		}
	}
	b, _ := json.Marshal(r)
	fmt.Printf("RESULT %s\n", b)
	return 0
}

// child is a running child process and its output.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stdout *syncBuffer
	stderr *syncBuffer
}

// startChild re-executes the test binary in role with env.
func startChild(t *testing.T, role string, env childEnv) *child {
	t.Helper()
	return startChildWith(t, role, env, nil)
}

// startChildWith is startChild with extra environment variables.
func startChildWith(t *testing.T, role string, env childEnv, extra []string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(env.environ(role), extra...)
	ch := &child{cmd: cmd, lines: make(chan string, 64), stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	cmd.Stderr = ch.stderr
	var err error
	if ch.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			ch.stdout.Write(append(sc.Bytes(), '\n'))
			ch.lines <- sc.Text()
		}
		close(ch.lines)
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return ch
}

// await returns the first line with prefix, or fails after d.
func (ch *child) await(t *testing.T, prefix string, d time.Duration) string {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case l, ok := <-ch.lines:
			if !ok {
				err := ch.cmd.Wait()
				t.Fatalf("the child exited (%v) before %q; stdout:\n%s\nstderr:\n%s", err, prefix, ch.stdout.String(), ch.stderr.String())
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-timer.C:
			t.Fatalf("no %q from the child within %v; stderr:\n%s", prefix, d, ch.stderr.String())
		}
	}
}

// kill sends SIGKILL and reaps the child.
func (ch *child) kill(t *testing.T) {
	t.Helper()
	if err := ch.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	ch.cmd.Wait()
}

// result waits for the child's RESULT line and its exit.
func (ch *child) result(t *testing.T) childResult {
	t.Helper()
	line := ch.await(t, "RESULT ", 60*time.Second)
	var r childResult
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "RESULT ")), &r); err != nil {
		t.Fatal(err)
	}
	if err := ch.cmd.Wait(); err != nil {
		t.Fatalf("child: %v; stderr:\n%s", err, ch.stderr.String())
	}
	if s := ch.stderr.String(); strings.Contains(s, "DATA RACE") {
		t.Fatalf("data race in the child:\n%s", s)
	}
	return r
}

// holdProxy forwards token requests to the fake server and, when armed,
// holds the answer after the server processed the request (the refresh
// token is rotated) until the client goes away: the kill point "server
// rotated, response in flight".
type holdProxy struct {
	url  string
	arm  atomic.Bool
	held chan struct{}
}

// newHoldProxy starts a proxy to target for the test.
func newHoldProxy(t *testing.T, target string) *holdProxy {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &holdProxy{held: make(chan struct{}, 1)}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorLog = log.New(io.Discard, "", 0)
	rp.ModifyResponse = func(resp *http.Response) error {
		if !p.arm.Load() || resp.Request.URL.Path != oauthtest.PathToken {
			return nil
		}
		io.Copy(io.Discard, resp.Body) // the server answered: it has rotated
		resp.Body.Close()
		p.held <- struct{}{}
		<-resp.Request.Context().Done() // until the client is gone
		return resp.Request.Context().Err()
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	p.url = srv.URL
	return p
}

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
// once (C-04: the new refresh token is kept in memory and the save retried
// on the next access). Before that retry, another process sharing the store
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
