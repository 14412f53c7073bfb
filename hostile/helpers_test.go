package hostile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenward/tokenward/client"
	"github.com/tokenward/tokenward/internal/canary"
	"github.com/tokenward/tokenward/internal/leakscan"
	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/refresh"
	"github.com/tokenward/tokenward/store"
)

// envChild selects a child role when the test binary is re-executed by the
// kill matrix, the soak or the DPoP key test; see TestMain.
const envChild = "TOKENWARD_HOSTILE_CHILD"

// TestMain runs the child roles of the multi-process tests when the test
// binary is re-executed with envChild set, and the tests otherwise.
func TestMain(m *testing.M) {
	switch os.Getenv(envChild) {
	case "":
		os.Exit(m.Run())
	case "kill":
		os.Exit(killChild())
	case "soak":
		os.Exit(soakChild())
	case "dpop":
		os.Exit(dpopChild())
	default:
		fmt.Fprintf(os.Stderr, "unknown child role %q\n", os.Getenv(envChild))
		os.Exit(2)
	}
}

// syncBuffer captures log output for canary scans.
type syncBuffer = canary.Log

// recorder keeps every error a test saw, in each of the forms a program might
// print it (%v, %+v, %#v), and every client event, for the canary scans.
type recorder struct {
	mu     sync.Mutex
	texts  []string
	events []client.Event
}

// err records err (nil is ignored) and returns it.
func (r *recorder) err(err error) error {
	if err == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.texts = append(r.texts, err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err))
	return err
}

// event is a client.Options.Events hook.
func (r *recorder) event(ev client.Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.texts = append(r.texts, fmt.Sprintf("%+v", ev), fmt.Sprintf("%#v", ev))
	if ev.Err != nil {
		r.texts = append(r.texts, ev.Err.Error(), fmt.Sprintf("%+v", ev.Err), fmt.Sprintf("%#v", ev.Err))
	}
	r.mu.Unlock()
}

// String returns everything recorded, one item per line.
func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.texts, "\n")
}

// eventsOf returns the recorded events of kind k.
func (r *recorder) eventsOf(k client.EventKind) []client.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []client.Event
	for _, e := range r.events {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

// world is one fake authorization server with one protected API, a token
// store and a captured debug log, for one matrix row.
type world struct {
	t   *testing.T
	as  *oauthtest.Server
	api *oauthtest.API
	st  store.Store
	log *syncBuffer
	rec *recorder
	// asLog is the fake server's own debug log (no secrets).
	asLog *syncBuffer
	// lastClient is the client a row made, for its checks.
	lastClient *client.Client
	// transport is the client's base transport when set.
	transport http.RoundTripper
	// noIssuer configures the client with an explicit token URL and no
	// discovery, so that its first request is the token request.
	noIssuer bool
	// tokenURL replaces the discovered token endpoint when set.
	tokenURL string
	// rotationGrace is the client's refresh.Options.RotationGrace.
	rotationGrace time.Duration
	// httpTimeout is the client's HTTP.Timeout (default 2 s).
	httpTimeout time.Duration
	// clients counts the clients made by newClient, for the canary scan's
	// check that it had something to scan.
	clients atomic.Int32
	// secretsMu guards secrets.
	secretsMu sync.Mutex
	// secrets are secrets the world saw that the server's own records do
	// not list (seeded tokens, authorization codes, another process's
	// tokens), for the canary scan.
	secrets []string
}

// newWorld starts a fake server configured by cfg, an API on it and a memory
// store. When the test ends (after its clients are closed) the world's
// debug log, every error and event it recorded and the fake server's log
// are scanned for the secrets the server issued (scanSecrets).
func newWorld(t *testing.T, cfg oauthtest.Config) *world {
	t.Helper()
	asLog := &syncBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(asLog, &slog.HandlerOptions{Level: slog.LevelDebug}))
	as := oauthtest.Start(t, cfg)
	api := oauthtest.StartAPI(t, as, "")
	st, err := store.Open(t.Context(), func(o *store.Options) { o.Mode = store.ModeMemory })
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, as: as, api: api, st: st, log: &syncBuffer{}, rec: &recorder{}, asLog: asLog}
	// Registered before any client, so it runs after their Close (cleanups
	// run last in, first out) and sees what Close logged too.
	t.Cleanup(w.scanSecrets)
	return w
}

// remember adds secrets the world saw to the canary scan's list.
func (w *world) remember(secrets ...string) {
	w.secretsMu.Lock()
	defer w.secretsMu.Unlock()
	for _, s := range secrets {
		if s != "" {
			w.secrets = append(w.secrets, s)
		}
	}
}

// issuedSecrets lists the secrets the server issued or was shown during
// the test: every refresh token presented to it, every credential the API
// was shown, the registered client secrets, and those remembered (seeded
// tokens, codes, another process's tokens).
func (w *world) issuedSecrets() []string {
	var out []string
	for _, p := range w.as.RefreshPresentations() {
		out = append(out, p.Token)
	}
	out = append(out, w.api.Tokens()...)
	for _, c := range w.as.Config().Clients {
		if c.Secret != "" {
			out = append(out, c.Secret)
		}
	}
	w.secretsMu.Lock()
	out = append(out, w.secrets...)
	w.secretsMu.Unlock()
	return out
}

// leaks scans the client's debug log, every recorded error (%v, %+v, %#v)
// and event, and the fake server's log for secrets: any of issuedSecrets,
// whole or as a recognisable fragment, and anything token-shaped (every
// token, code and secret the fake server makes carries a canary core;
// internal/leakscan). It returns what it found, without the secrets, and
// the number of bytes scanned.
func (w *world) leaks() (found []string, scanned int) {
	haystack := strings.Join([]string{w.log.String(), w.rec.String(), w.asLog.String()}, "\n")
	return findSecrets(haystack, w.issuedSecrets()...), len(haystack)
}

// scanSecrets is the canary scan of every matrix row (a cleanup of
// newWorld): it fails the test when leaks finds anything.
func (w *world) scanSecrets() {
	if w.clients.Load() > 0 && !strings.Contains(w.log.String(), "level=DEBUG") {
		w.t.Errorf("canary scan: a client ran but nothing was logged at debug level; the scan would prove nothing")
	}
	if found, n := w.leaks(); len(found) != 0 {
		w.t.Errorf("canary scan: secrets in the client's log, the recorded errors and events or the server's log (%d bytes): %v", n, found)
	}
}

// issuer is the issuer identifier the client files its tokens under.
func (w *world) issuer() string {
	if w.noIssuer {
		return w.as.TokenURL()
	}
	return w.as.Issuer()
}

// key is the store name of the login's token set, as client.New derives it
// (store.Key of issuer, client id, scopes, resource and profile).
func (w *world) key() string {
	return store.Key{Issuer: w.issuer(), ClientID: oauthtest.DefaultClientID, Scopes: []string{"read"}, Resource: []string{w.api.Resource()}}.String()
}

// config returns the client configuration of the world: the default public
// client, one API, the world's store, a debug logger and an event recorder,
// short retry waits and backoffs so that recovery is quick.
func (w *world) config() client.Options {
	timeout := w.httpTimeout
	if timeout == 0 {
		timeout = 2 * time.Second
	}
	cfg := client.Options{
		Issuer:                w.as.Issuer(),
		ClientID:              oauthtest.DefaultClientID,
		Scopes:                []string{"read"},
		Resources:             []string{w.api.Resource()},
		AllowInsecureLoopback: true,
		Store:                 w.st,
		Logger:                slog.New(slog.NewTextHandler(w.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Events:                w.rec.event,
		Prompt:                io.Discard,
		OpenBrowser: func(u string) error {
			go func() {
				// Browse, keeping the code for the canary scan.
				redirect, err := w.as.Authorize(context.Background(), u)
				if err != nil {
					return
				}
				w.remember(redirect.Query().Get("code"))
				oauthtest.Deliver(context.Background(), redirect.String())
			}()
			return nil
		},
		HTTP: client.HTTPSettings{Timeout: timeout, RetryWaitMin: 10 * time.Millisecond, RetryWaitMax: 50 * time.Millisecond},
		RefreshOptions: []func(*refresh.Options){func(o *refresh.Options) {
			o.RetryBackoffMin, o.RetryBackoffMax = 10*time.Millisecond, 50*time.Millisecond
			o.RotationGrace = w.rotationGrace
			o.DisableIdleRefresh = true
		}},
	}
	if w.noIssuer {
		cfg.Issuer = ""
		cfg.Endpoints = client.Endpoints{TokenURL: w.as.TokenURL()}
	}
	if w.tokenURL != "" {
		cfg.Endpoints.TokenURL = w.tokenURL
	}
	if w.transport != nil {
		cfg.HTTP.Transport = w.transport
	}
	return cfg
}

// newClient creates a client with cfg; it is closed when the test ends.
func (w *world) newClient(cfg client.Options) *client.Client {
	w.t.Helper()
	c, err := client.New(w.t.Context(), func(opts *client.Options) { *opts = cfg })
	if err != nil {
		w.t.Fatalf("client.New: %v", w.rec.err(err))
	}
	w.clients.Add(1)
	w.t.Cleanup(func() { w.rec.err(c.Close()) })
	return c
}

// seed stores a login's token set whose access token has expired, as a
// process finds it when it starts after the token's lifetime: the client's
// first Token call must refresh. It returns the stored refresh token.
func (w *world) seed() string {
	w.t.Helper()
	tok, err := w.as.Mint(oauthtest.Grant{Scope: "read", Resources: []string{w.api.Resource()}})
	if err != nil {
		w.t.Fatal(err)
	}
	w.remember(tok.AccessToken, tok.RefreshToken)
	e := store.EntryFromToken(tok)
	e.Expiry = time.Now().Add(-time.Minute)
	if err := w.st.Save(w.t.Context(), w.key(), e); err != nil {
		w.t.Fatalf("seeding the store: %v", err)
	}
	return tok.RefreshToken
}

// stored loads the login's entry; ok is false when there is none.
func (w *world) stored() (e *store.Entry, ok bool) {
	w.t.Helper()
	e, err := w.st.Load(w.t.Context(), w.key())
	if errors.Is(err, store.ErrNotFound) {
		return nil, false
	}
	if err != nil {
		w.t.Fatalf("loading the stored entry: %v", err)
	}
	return e, true
}

// assertStoredActive checks that the store holds a token set whose refresh
// token the server still honours (not rotated away, not revoked): no token
// was lost.
func (w *world) assertStoredActive() *store.Entry {
	w.t.Helper()
	e, ok := w.stored()
	if !ok {
		w.t.Fatal("the store holds no token set: the login was lost")
	}
	info, known := w.as.Introspect(e.RefreshToken)
	if !known || !info.Active {
		w.t.Fatalf("the stored refresh token is not usable (known %v, %+v): the live token was lost", known, info)
	}
	if e.AccessToken == "" {
		w.t.Fatal("the stored entry has no access token")
	}
	return e
}

// assertNoReplay checks the server's record: no refresh token was presented
// again after the server consumed it (rotated), except as a reuse the server
// accepted inside its grace window when allowGrace is set, and no reuse was
// detected, no family revoked.
func (w *world) assertNoReplay(allowGrace bool) {
	w.t.Helper()
	assertNoReplay(w.t, w.as, allowGrace)
}

// assertNoReplay is world.assertNoReplay for any server.
func assertNoReplay(t testing.TB, as *oauthtest.Server, allowGrace bool) {
	t.Helper()
	st := as.Stats()
	if st.ReuseDetections != 0 || st.FamilyRevocations != 0 {
		t.Fatalf("refresh token reused: %d reuse detections, %d family revocations; presentations %s", st.ReuseDetections, st.FamilyRevocations, describePresentations(as))
	}
	if !allowGrace && st.GraceReuses != 0 {
		t.Fatalf("%d refresh tokens reused inside the grace window; presentations %s", st.GraceReuses, describePresentations(as))
	}
	consumed := map[string]bool{}
	for i, p := range as.RefreshPresentations() {
		if consumed[p.Token] && !(allowGrace && p.Outcome == oauthtest.RefreshGrace) {
			t.Fatalf("presentation %d: a refresh token was presented again after the server consumed it (outcome %q); presentations %s", i, p.Outcome, describePresentations(as))
		}
		if p.Outcome == oauthtest.RefreshRotated || p.Outcome == oauthtest.RefreshGrace {
			consumed[p.Token] = true
		}
	}
}

// describePresentations lists the server's refresh token presentations
// without the tokens: "#token:outcome" per presentation.
func describePresentations(as *oauthtest.Server) string {
	ids := map[string]int{}
	var parts []string
	for _, p := range as.RefreshPresentations() {
		id, ok := ids[p.Token]
		if !ok {
			id = len(ids)
			ids[p.Token] = id
		}
		parts = append(parts, fmt.Sprintf("rt%d:%s", id, p.Outcome))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// refreshPosts is the number of refresh_token requests the server received.
func refreshPosts(as *oauthtest.Server) int { return as.Stats().Grants[oauthtest.GrantRefreshToken] }

// eventually polls cond every few milliseconds until it holds or d passes,
// and reports whether it held. It is a bounded wait on real state, not a
// sleep for synchronisation.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
}

// tokenEventually calls c.Token until it succeeds (a failed refresh backs off
// before the next attempt) or d passes, and returns the last error.
func tokenEventually(t *testing.T, c *client.Client, d time.Duration) error {
	t.Helper()
	var err error
	eventually(d, func() bool {
		_, err = c.Token(t.Context())
		return err == nil
	})
	return err
}

// within fails the test when d exceeds limit.
func within(t *testing.T, what string, d, limit time.Duration) {
	t.Helper()
	if d > limit {
		t.Fatalf("%s took %v, more than its deadline %v", what, d, limit)
	}
}

// isAll reports whether err matches every target.
func isAll(err error, targets ...error) bool {
	for _, t := range targets {
		if !errors.Is(err, t) {
			return false
		}
	}
	return true
}

// canarySecret returns a fresh canary client secret.
func canarySecret() string { return canary.New("secret") }

// findSecrets reports the secrets, token-shaped strings and canary cores
// found in s (internal/leakscan), without repeating them.
func findSecrets(s string, exact ...string) []string { return leakscan.Find(s, exact...) }
