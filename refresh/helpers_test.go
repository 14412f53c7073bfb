package refresh

import (
	"context"
	"errors"
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
)

// rotatingAS is an in-test authorization server's refresh grant: every
// refresh rotates the refresh token, and presenting a used one (reuse)
// revokes the whole family, as Okta, Auth0 and Keycloak do. An optional
// grace lets the previous refresh token be reused for a while (C-03).
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

func grantErr(code, desc string) error {
	return &oauth2.RetrieveError{
		Response:         &http.Response{StatusCode: http.StatusBadRequest, Status: "400 Bad Request"},
		ErrorCode:        code,
		ErrorDescription: desc,
	}
}

// memStore is an in-memory Persister and Locker that copies tokens in and
// out (like a real store) and can fail saves.
type memStore struct {
	lock chan struct{}

	mu        sync.Mutex
	m         map[string]*oauth2.Token
	saves     int
	deletes   int
	failSaves int   // the next failSaves Saves fail
	saveErr   error // what they fail with
	ignore    bool  // Save reports success but stores nothing (the x/oauth2 way)
}

func newMemStore() *memStore {
	return &memStore{lock: make(chan struct{}, 1), m: map[string]*oauth2.Token{}}
}

var errDiskFull = errors.New("memstore: disk full")

func (s *memStore) Load(ctx context.Context, key string) (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.m[key]
	if t == nil {
		return nil, nil
	}
	cp := *t
	return &cp, nil
}

func (s *memStore) Save(ctx context.Context, key string, tok *oauth2.Token) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failSaves > 0 {
		s.failSaves--
		if s.saveErr != nil {
			return s.saveErr
		}
		return errDiskFull
	}
	s.saves++
	if s.ignore {
		return nil
	}
	cp := *tok
	s.m[key] = &cp
	return nil
}

func (s *memStore) Delete(ctx context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deletes++
	delete(s.m, key)
	return nil
}

func (s *memStore) Lock(ctx context.Context, key string) (func() error, error) {
	select {
	case s.lock <- struct{}{}:
		return func() error { <-s.lock; return nil }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *memStore) get(key string) *oauth2.Token {
	t, _ := s.Load(context.Background(), key)
	return t
}

func (s *memStore) put(key string, t *oauth2.Token) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cp := *t
	s.m[key] = &cp
}

var keySeq atomic.Int64

// testKey returns a key unique to this test (the registry is per process).
func testKey(t testing.TB) string {
	return fmt.Sprintf("test|%s|%d", strings.ReplaceAll(t.Name(), "/", "."), keySeq.Add(1))
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

// mustNew creates a cache for a fresh key; close it with defer.
func mustNew(t testing.TB, up Upstream, optFns ...func(*Options)) *Cache {
	t.Helper()
	return mustNewKey(t, testKey(t), up, optFns...)
}

// mustNewKey is New for tests: it fails the test when New fails; close the
// cache with defer.
func mustNewKey(t testing.TB, key string, up Upstream, optFns ...func(*Options)) *Cache {
	t.Helper()
	c, err := New(key, up, optFns...)
	if err != nil {
		t.Fatal(err)
	}
	return c
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
