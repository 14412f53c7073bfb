package refresh

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/canary"
)

// fixture is the scene most tests play in: a rotating authorization
// server (as), a store (st) that holds the server's first token (at-0 and
// rt-0: a login), and a cache (c) for a fresh key (key) on both, whose
// events are recorded (ev). Build one with scene.start; the cache is closed
// when the test ends.
type fixture struct {
	as  *rotatingAS
	st  *memStore
	key string
	ev  *eventLog
	c   *Cache
}

// scene describes a fixture. Its zero value: a server issuing one-hour
// tokens, a store holding the server's first token, expiring now, and a
// cache with the store as its Persister.
type scene struct {
	// life is the lifetime of the tokens the server issues; zero means one
	// hour.
	life time.Duration
	// first is when the server's first token expires, from now.
	first time.Duration
	// login hands the first token to Cache.Set once the cache runs instead
	// of storing it beforehand; empty issues no first token at all.
	login, empty bool
	// memory leaves the cache without a Persister (the first token is then
	// handed to Set).
	memory bool
	// server adjusts the server before it issues its first token.
	server func(as *rotatingAS)
	// persister builds the cache's Persister on the store (to inject
	// faults); nil uses the store itself.
	persister func(st *memStore) Persister
	// upstream builds the cache's Upstream on the server; nil uses the
	// server itself.
	upstream func(as *rotatingAS) Upstream
	// options adjusts the cache's options; the Persister and OnEvent are
	// set already.
	options func(o *Options)
}

// start builds the fixture sc describes.
func (sc scene) start(t testing.TB) *fixture {
	t.Helper()
	life := sc.life
	if life == 0 {
		life = time.Hour
	}
	f := &fixture{as: newRotatingAS(life), st: newMemStore(), key: testKey(t), ev: &eventLog{}}
	if sc.server != nil {
		sc.server(f.as)
	}
	var first *oauth2.Token
	if !sc.empty {
		first = f.as.initial(time.Now().Add(sc.first))
	}
	login := sc.login || sc.memory
	if first != nil && !login {
		f.st.put(f.key, first)
	}
	var p Persister = f.st
	if sc.persister != nil {
		p = sc.persister(f.st)
	}
	var up Upstream = f.as
	if sc.upstream != nil {
		up = sc.upstream(f.as)
	}
	c, err := New(f.key, up, func(o *Options) {
		if !sc.memory {
			o.Persister = p
		}
		o.OnEvent = f.ev.add
		if sc.options != nil {
			sc.options(o)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	f.c = c
	if first != nil && login {
		if err := c.Set(t.Context(), first); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// idleOff is the option that turns the idle timer off, for tests that
// drive every refresh themselves.
func idleOff(o *Options) { o.DisableIdleRefresh = true }

// mustNew is New for a fresh key, for tests with an Upstream of their own:
// it fails the test when New fails. Close the cache with defer.
func mustNew(t testing.TB, up Upstream, optFns ...func(*Options)) *Cache {
	t.Helper()
	c, err := New(testKey(t), up, optFns...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var keySeq atomic.Int64

// testKey returns a key unique to this test (the registry is per process).
func testKey(t testing.TB) string {
	return fmt.Sprintf("test|%s|%d", strings.ReplaceAll(t.Name(), "/", "."), keySeq.Add(1))
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

// invalidateOrdinary is Invalidate of a token treated as one from an
// ordinary refresh, which the rate limit of repeated rejections
// (reject.go) never refuses: for tests that use rejections to force one
// refresh after another.
func invalidateOrdinary(c *Cache, tok *oauth2.Token) bool {
	for {
		s := c.c.cur.Load()
		if s == nil || !s.forced {
			break
		}
		n := s.clone()
		n.forced = false
		if c.c.cur.CompareAndSwap(s, n) {
			break
		}
	}
	return c.Invalidate(tok)
}

// rotatingAS is an in-test authorization server's refresh grant: every
// refresh rotates the refresh token, and presenting a used one (reuse)
// revokes the whole family, as Okta, Auth0 and Keycloak do. An optional
// grace lets the previous refresh token be reused for a while, for an
// answer lost in transit.
type rotatingAS struct {
	lifetime time.Duration // lifetime of issued access tokens
	latency  time.Duration // time.Sleep before answering (honours ctx)
	hang     time.Duration // time.Sleep before answering, ignoring ctx
	grace    time.Duration // reuse of the previous refresh token is allowed this long

	// fail, if set, may fail call n before anything happens.
	fail func(n int) error
	// lost, if set, makes call n rotate and then lose the answer (a
	// connection reset after the server committed).
	lost func(n int) bool
	// mkAT and mkRT build generation g's tokens (default "at-g", "rt-g").
	mkAT func(g int, exp time.Time) string
	mkRT func(g int) string

	mu        sync.Mutex
	gen       int
	at, rt    string
	exp       time.Time
	prevRT    string
	rotatedAt time.Time
	revoked   bool
	calls     int
	presented []string
	reuses    int
}

func newRotatingAS(lifetime time.Duration) *rotatingAS {
	return &rotatingAS{lifetime: lifetime}
}

// initial issues generation 0 (the token a login produced).
func (a *rotatingAS) initial(exp time.Time) *oauth2.Token {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.gen = 0
	a.exp = exp
	a.at, a.rt = a.makeAT(0, exp), a.makeRT(0)
	return &oauth2.Token{AccessToken: a.at, TokenType: "Bearer", RefreshToken: a.rt, Expiry: exp}
}

func (a *rotatingAS) makeAT(g int, exp time.Time) string {
	if a.mkAT != nil {
		return a.mkAT(g, exp)
	}
	return fmt.Sprintf("at-%d", g)
}

func (a *rotatingAS) makeRT(g int) string {
	if a.mkRT != nil {
		return a.mkRT(g)
	}
	return fmt.Sprintf("rt-%d", g)
}

func (a *rotatingAS) Token(ctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
	if a.hang > 0 {
		time.Sleep(a.hang)
	}
	if a.latency > 0 {
		t := time.NewTimer(a.latency)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	n := a.calls
	rt := ""
	if cur != nil {
		rt = cur.RefreshToken
	}
	a.presented = append(a.presented, rt)
	if a.fail != nil {
		if err := a.fail(n); err != nil {
			return nil, err
		}
	}
	switch {
	case rt == "":
		return nil, grantErr("invalid_grant", "no refresh token")
	case a.revoked:
		return nil, grantErr("invalid_grant", "token family revoked")
	case rt == a.rt:
		a.gen++
		a.prevRT = a.rt
		a.rotatedAt = time.Now()
		a.exp = time.Now().Add(a.lifetime)
		a.at, a.rt = a.makeAT(a.gen, a.exp), a.makeRT(a.gen)
	case rt == a.prevRT && a.grace > 0 && time.Since(a.rotatedAt) < a.grace:
		// Within the grace: re-issue the current generation.
	default:
		a.revoked = true
		a.reuses++
		return nil, grantErr("invalid_grant", "refresh token reuse detected")
	}
	tok := &oauth2.Token{AccessToken: a.at, TokenType: "Bearer", RefreshToken: a.rt, Expiry: a.exp}
	if a.lost != nil && a.lost(n) {
		return nil, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	}
	return tok, nil
}

func (a *rotatingAS) stats() (calls, reuses int, presented []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls, a.reuses, append([]string(nil), a.presented...)
}

// revoke makes the server refuse every refresh token from now on.
func (a *rotatingAS) revoke() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.revoked = true
}

func grantErr(code, desc string) error {
	return &oauth2.RetrieveError{
		Response:         &http.Response{StatusCode: http.StatusBadRequest, Status: "400 Bad Request"},
		ErrorCode:        code,
		ErrorDescription: desc,
	}
}

func retrieveErr(status int, code, body string) *oauth2.RetrieveError {
	return &oauth2.RetrieveError{
		Response:  &http.Response{StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status))},
		ErrorCode: code, Body: []byte(body),
	}
}

// wireErr stands in for the token parser's error type: anything with
// OAuthError().
type wireErr struct {
	status      int
	code, descr string
}

func (e *wireErr) Error() string { return "oauthwire: " + e.code }
func (e *wireErr) OAuthError() (int, string, string) {
	return e.status, e.code, e.descr
}

// eventLog collects events.
type eventLog struct {
	mu      sync.Mutex
	ev      []Event
	changed chan struct{} // closed by the next add, for wait
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ev = append(l.ev, e)
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
}

// wait blocks until n events of kind k have been recorded (for work the
// cache does in the background, such as a save retry). It fails the test
// after 10 s (fake time inside a synctest bubble).
func (l *eventLog) wait(t testing.TB, k EventKind, n int) {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		l.mu.Lock()
		got := 0
		for _, e := range l.ev {
			if e.Kind == k {
				got++
			}
		}
		if got >= n {
			l.mu.Unlock()
			return
		}
		if l.changed == nil {
			l.changed = make(chan struct{})
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-timeout.C:
			t.Fatalf("waited 10 s for %d %v event(s), got %d", n, k, got)
		}
	}
}

func (l *eventLog) count(k EventKind) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.ev {
		if e.Kind == k {
			n++
		}
	}
	return n
}

func (l *eventLog) all() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Event(nil), l.ev...)
}

// syncBuffer captures log output for canary scans.
type syncBuffer = canary.Log

// accessToken returns tok's access token, or "" for nil.
func accessToken(tok *oauth2.Token) string {
	if tok == nil {
		return ""
	}
	return tok.AccessToken
}

type tsFunc func() (*oauth2.Token, error)

func (f tsFunc) Token() (*oauth2.Token, error) { return f() }

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
