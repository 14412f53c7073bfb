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
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
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
// Only token sets count: the client also keeps the server's discovery
// document in the store, which is no step of a refresh.
func (k *killStore) Save(ctx context.Context, name string, e *store.Entry) error {
	if e.AccessToken == "" && e.RefreshToken == "" {
		return k.Store.Save(ctx, name, e)
	}
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
