package client

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenward/tokenward/internal/canary"
	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/store"
)

// fixture is what a client test talks to: a fake authorization server with
// one protected API, a memory store, a captured debug log, and the Options
// of the default public client for them. newFixture builds it; its options
// say how.
type fixture struct {
	as    *oauthtest.Server
	api   *oauthtest.API
	store store.Store
	log   *syncBuffer
	// wire records every form POST the Clients send (recordWire only).
	wire *wireRecorder

	base  Options
	setup fixtureSetup
}

// syncBuffer captures log or prompt output for scans.
type syncBuffer = canary.Log

// fixtureOption changes how newFixture builds a fixture.
type fixtureOption func(*fixtureSetup)

type fixtureSetup struct {
	inMemory bool
	wraps    []func(http.RoundTripper) http.RoundTripper
	record   bool
	mods     []func(*Options)
}

// inMemory runs the fake server in memory (no sockets), on the clock of the
// synctest bubble the test runs in, and sends every request of the Clients
// through it: timings are exact however loaded the machine is.
func inMemory() fixtureOption { return func(s *fixtureSetup) { s.inMemory = true } }

// wrapTransport puts wrap around the Clients' base transport (the default
// one, or the in-memory server's), to change what the server seems to
// send or how attempts time out.
func wrapTransport(wrap func(http.RoundTripper) http.RoundTripper) fixtureOption {
	return func(s *fixtureSetup) { s.wraps = append(s.wraps, wrap) }
}

// recordWire records every form POST on the wire, retries included, in
// fixture.wire (outside the wrapTransport wrappers).
func recordWire() fixtureOption { return func(s *fixtureSetup) { s.record = true } }

// withOptions changes the Options that fixture.config returns.
func withOptions(mod func(*Options)) fixtureOption {
	return func(s *fixtureSetup) { s.mods = append(s.mods, mod) }
}

// newFixture starts a fake authorization server configured by cfg, one API
// on it (its resource is the default Client's) and a memory store.
func newFixture(t *testing.T, cfg oauthtest.Config, opts ...fixtureOption) *fixture {
	t.Helper()
	f := &fixture{log: &syncBuffer{}}
	for _, o := range opts {
		o(&f.setup)
	}
	if f.setup.inMemory {
		cfg.InMemory = true
		as, err := oauthtest.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(as.Close)
		f.as = as
		if f.api, err = as.NewAPI(""); err != nil {
			t.Fatal(err)
		}
	} else {
		f.as = oauthtest.Start(t, cfg)
		f.api = oauthtest.StartAPI(t, f.as, "")
	}
	st, err := store.Open(t.Context(), func(o *store.Options) { o.Mode = store.ModeMemory })
	if err != nil {
		t.Fatal(err)
	}
	f.store = st

	var base http.RoundTripper
	if f.setup.inMemory {
		base = f.as.Transport()
	}
	if len(f.setup.wraps) > 0 || f.setup.record {
		if base == nil {
			base = http.DefaultTransport.(*http.Transport).Clone()
		}
		for _, w := range f.setup.wraps {
			base = w(base)
		}
		if f.setup.record {
			f.wire = &wireRecorder{base: base}
			base = f.wire
		}
	}
	f.base = Options{
		Issuer:                f.as.Issuer(),
		ClientID:              oauthtest.DefaultClientID,
		Scopes:                []string{"read"},
		Resources:             []string{f.api.Resource()},
		AllowInsecureLoopback: true,
		Store:                 f.store,
		Logger:                slog.New(slog.NewTextHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Prompt:                io.Discard,
		OpenBrowser: func(u string) error {
			go f.as.Browse(context.Background(), u)
			return nil
		},
		HTTP: HTTPSettings{RetryWaitMin: 10 * time.Millisecond, RetryWaitMax: 50 * time.Millisecond, Transport: base},
	}
	return f
}

// config returns the Options of the default public client (a login with
// the browser played by the fake server), as changed by withOptions.
func (f *fixture) config() Options {
	cfg := f.base
	cfg.Scopes = slices.Clone(cfg.Scopes)
	cfg.Resources = slices.Clone(cfg.Resources)
	for _, m := range f.setup.mods {
		m(&cfg)
	}
	return cfg
}

// client returns a new Client with config's Options changed by mods,
// closed when the test ends.
func (f *fixture) client(t *testing.T, mods ...func(*Options)) *Client {
	t.Helper()
	cfg := f.config()
	for _, m := range mods {
		m(&cfg)
	}
	return mustNew(t, cfg)
}

// loggedIn returns a new Client (see client) that has logged in through
// the fake browser.
func (f *fixture) loggedIn(t *testing.T, mods ...func(*Options)) *Client {
	t.Helper()
	c := f.client(t, mods...)
	login(t, c)
	return c
}

// confidential registers a client_secret client and returns its Options
// for client credentials.
func (f *fixture) confidential(t *testing.T, id, secret, method string) Options {
	t.Helper()
	if err := f.as.Update(func(c *oauthtest.Config) {
		c.Clients = append(c.Clients, oauthtest.Client{ID: id, Secret: secret, AuthMethod: method})
		if len(c.Clients) == 1 {
			c.Clients = append(c.Clients, oauthtest.Client{ID: oauthtest.DefaultClientID, RedirectURIs: []string{"http://127.0.0.1/callback", "http://[::1]/callback"}})
		}
	}); err != nil {
		t.Fatal(err)
	}
	cfg := f.config()
	cfg.ClientID, cfg.ClientSecret, cfg.Grant = id, secret, GrantClientCredentials
	cfg.OpenBrowser = nil
	return cfg
}

// clientCredentials makes Options a client-credentials client already
// registered with the server (oauthtest.Config.Clients).
func clientCredentials(id, secret string) func(*Options) {
	return func(o *Options) {
		o.ClientID, o.ClientSecret, o.Grant = id, secret, GrantClientCredentials
		o.OpenBrowser = nil
	}
}

// waitForCancel is a DevicePrompt that shows nothing and returns when the
// login ends.
func waitForCancel(ctx context.Context, _ DeviceCode) { <-ctx.Done() }

func mustNew(t *testing.T, cfg Options) *Client {
	t.Helper()
	c, err := New(t.Context(), with(cfg))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// with sets every field of the Options at once, for tests that build
// Options as values.
func with(cfg Options) func(*Options) { return func(o *Options) { *o = cfg } }

// login logs c in through the fake browser.
func login(t *testing.T, c *Client) {
	t.Helper()
	if err := c.Login(t.Context()); err != nil {
		t.Fatalf("Login: %v", err)
	}
}

// forceRefresh drops the default cache's current token so the next Token
// call refreshes it.
func forceRefresh(t *testing.T, c *Client) {
	t.Helper()
	r := mustDefault(t, c)
	tok, err := r.cache.Token(t.Context())
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	if !r.cache.Invalidate(tok) {
		t.Fatal("Invalidate did not drop the current token")
	}
}

// mustDefault returns c's default token handle.
func mustDefault(t *testing.T, c *Client) *Resource {
	t.Helper()
	r, err := c.defaultResource()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// get calls the API through the client's HTTP client.
func get(t *testing.T, hc *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func lines(s string) []string { return strings.Split(strings.TrimSpace(s), "\n") }

// eventuallyOK polls cond for up to five seconds (a bounded wait on real
// state, not a synchronisation sleep).
func eventuallyOK(cond func() bool) bool {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		t := time.NewTimer(10 * time.Millisecond)
		<-t.C
	}
	return cond()
}

// wireRecorder is an http.RoundTripper in front of a base transport that
// records every form POST as it goes on the wire: one record per attempt,
// so a retry shows up as a record of its own, with the body as sent (not as
// the client meant it).
type wireRecorder struct {
	base http.RoundTripper

	mu     sync.Mutex // guards before and sent
	before func(wirePost)
	sent   []wirePost
}

// wirePost is one recorded POST.
type wirePost struct {
	at   time.Time
	path string
	form url.Values
	n    int // its 1-based position among the recorded POSTs of its grant_type
}

func (p wirePost) grant() string { return p.form.Get("grant_type") }

// onPost makes fn run for each POST after it is recorded and before it is
// forwarded (to inject a fault into exactly that request).
func (w *wireRecorder) onPost(fn func(wirePost)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.before = fn
}

// posts returns the recorded POSTs to path, of grant type grant unless it
// is empty, in order.
func (w *wireRecorder) posts(path, grant string) []wirePost {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []wirePost
	for _, p := range w.sent {
		if p.path == path && (grant == "" || p.grant() == grant) {
			out = append(out, p)
		}
	}
	return out
}

// RoundTrip records a POST's form body and forwards a copy of the request.
func (w *wireRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPost || req.Body == nil {
		return w.base.RoundTrip(req)
	}
	b, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	form, _ := url.ParseQuery(string(b))
	p := wirePost{at: time.Now(), path: req.URL.Path, form: form, n: 1}
	w.mu.Lock()
	for _, q := range w.sent {
		if q.grant() == p.grant() {
			p.n++
		}
	}
	w.sent = append(w.sent, p)
	before := w.before
	w.mu.Unlock()
	if before != nil {
		before(p)
	}
	out := req.Clone(req.Context())
	out.Body = io.NopCloser(bytes.NewReader(b))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	return w.base.RoundTrip(out)
}
