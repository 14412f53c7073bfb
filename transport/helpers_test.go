package transport_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/canary"
	"github.com/tokenward/tokenward/transport"
)

// This file holds the package's test fixtures. mustNew is the one way tests
// get a Transport; toAPI and toServer are the option sets most of them
// share.

// roundTripFunc adapts a function to http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// fakeSource behaves like refresh.Cache as far as the transport can tell: it
// returns the same pointer while the token is unchanged, issues a new token
// ("refreshes") when there is none or the current one has expired by the
// (possibly synctest) clock, and Invalidate is a compare-and-swap.
type fakeSource struct {
	mu          sync.Mutex
	cur         *oauth2.Token   // guarded by mu
	issued      []*oauth2.Token // guarded by mu; every token handed out
	refreshes   int             // guarded by mu; tokens issued after the first
	tokenCalls  int             // guarded by mu
	invalidated []*oauth2.Token // guarded by mu; arguments of Invalidate
	lifetime    time.Duration   // 0: tokens never expire
	tokenType   string
	err         error // guarded by mu; returned by Token when set
	block       chan struct{}
}

func newFakeSource() *fakeSource { return &fakeSource{} }

func (s *fakeSource) issue() *oauth2.Token {
	tok := &oauth2.Token{AccessToken: canary.JWT("at", 0), TokenType: s.tokenType}
	if tok.TokenType == "" {
		tok.TokenType = "Bearer"
	}
	if s.lifetime > 0 {
		tok.Expiry = time.Now().Add(s.lifetime)
	}
	if len(s.issued) > 0 {
		s.refreshes++
	}
	s.issued = append(s.issued, tok)
	return tok
}

func (s *fakeSource) Token(ctx context.Context) (*oauth2.Token, error) {
	if s.block != nil {
		select {
		case <-s.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenCalls++
	if s.err != nil {
		return nil, s.err
	}
	if s.cur == nil || (!s.cur.Expiry.IsZero() && !time.Now().Before(s.cur.Expiry)) {
		s.cur = s.issue()
	}
	return s.cur, nil
}

func (s *fakeSource) Invalidate(tok *oauth2.Token) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.invalidated = append(s.invalidated, tok)
	if s.cur == tok {
		s.cur = nil
		return true
	}
	return false
}

// current returns the token the source would hand out now (issuing one if
// needed).
func (s *fakeSource) current(t testing.TB) *oauth2.Token {
	t.Helper()
	tok, err := s.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (s *fakeSource) stats() (refreshes, calls int, invalidated []*oauth2.Token, issued []*oauth2.Token) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refreshes, s.tokenCalls, append([]*oauth2.Token(nil), s.invalidated...), append([]*oauth2.Token(nil), s.issued...)
}

// secrets returns every access token the source issued.
func (s *fakeSource) secrets() []string {
	_, _, _, issued := s.stats()
	out := make([]string, len(issued))
	for i, t := range issued {
		out[i] = t.AccessToken
	}
	return out
}

// atomicSource stands in for refresh.Cache's fresh path: one atomic load,
// the same pointer every time, no allocation.
type atomicSource struct{ p atomic.Pointer[oauth2.Token] }

func (s *atomicSource) Token(context.Context) (*oauth2.Token, error) { return s.p.Load(), nil }

// readCloseCounter is a request body that counts its Close calls (the
// x/oauth2 transport_test.go pattern).
type readCloseCounter struct {
	r      io.Reader
	closes atomic.Int32
	reads  atomic.Int64 // bytes read
}

func newBody(s string) *readCloseCounter { return &readCloseCounter{r: strings.NewReader(s)} }

func (c *readCloseCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.reads.Add(int64(n))
	return n, err
}

func (c *readCloseCounter) Close() error {
	c.closes.Add(1)
	return nil
}

// bodyRequest returns a request whose body is a readCloseCounter; with
// replayable, GetBody hands out fresh counters, recorded in *copies.
func bodyRequest(t testing.TB, method, url, body string, replayable bool, copies *[]*readCloseCounter) (*http.Request, *readCloseCounter) {
	t.Helper()
	rc := newBody(body)
	req, err := http.NewRequest(method, url, rc)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(body))
	req.GetBody = nil
	if replayable {
		var mu sync.Mutex
		req.GetBody = func() (io.ReadCloser, error) {
			c := newBody(body)
			mu.Lock()
			*copies = append(*copies, c)
			mu.Unlock()
			return c, nil
		}
	}
	return req, rc
}

// respond builds a response for req.
func respond(req *http.Request, status int, h http.Header, body string) *http.Response {
	if h == nil {
		h = http.Header{}
	}
	return &http.Response{
		StatusCode:    status,
		Status:        http.StatusText(status),
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

// seen is what an in-memory base received.
type seen struct {
	Method, URL, Auth, Body string
	Header                  http.Header // every header of the request, as the base got it
}

// memBase is an in-memory base transport that behaves like a real one: it
// reads and closes the request body on every path, records what it got and
// answers with answer(n, req) for the n-th request (0-based).
type memBase struct {
	mu     sync.Mutex
	got    []seen // guarded by mu
	answer func(n int, req *http.Request) (*http.Response, error)
}

func (m *memBase) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
		req.Body.Close()
	}
	m.mu.Lock()
	n := len(m.got)
	m.got = append(m.got, seen{req.Method, req.URL.String(), req.Header.Get("Authorization"), string(body), req.Header.Clone()})
	m.mu.Unlock()
	if m.answer == nil {
		return respond(req, http.StatusOK, nil, "ok"), nil
	}
	return m.answer(n, req)
}

func (m *memBase) requests() []seen {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]seen(nil), m.got...)
}

// trackedBody is a response body that records whether it was closed.
type trackedBody struct {
	io.Reader
	closed atomic.Bool
}

func (b *trackedBody) Close() error { b.closed.Store(true); return nil }

// invalidTokenHeader is a 401 challenge rejecting the token.
func invalidTokenHeader() http.Header {
	h := http.Header{}
	h.Set("WWW-Authenticate", `Bearer realm="api", error="invalid_token", error_description="The access token expired"`)
	return h
}

// hit is one request a test server received.
type hit struct {
	Path, Auth, Headers, Body string
}

// site is a loopback test server standing in for one origin. It records
// every request it receives.
type site struct {
	srv  *httptest.Server
	mu   sync.Mutex
	hits []hit // guarded by mu
}

// newSite starts a site, over TLS when tls is set, that records each
// request and then answers it with answer.
func newSite(t *testing.T, tls bool, answer func(w http.ResponseWriter, r *http.Request, h hit)) *site {
	t.Helper()
	s := &site{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { answer(w, r, s.record(r)) })
	if tls {
		s.srv = httptest.NewTLSServer(h)
	} else {
		s.srv = httptest.NewServer(h)
	}
	t.Cleanup(s.srv.Close)
	return s
}

// record reads r's body and keeps what r carried.
func (s *site) record(r *http.Request) hit {
	body, _ := io.ReadAll(r.Body)
	var hdr strings.Builder
	r.Header.Write(&hdr)
	h := hit{r.URL.Path, r.Header.Get("Authorization"), hdr.String(), string(body)}
	s.mu.Lock()
	s.hits = append(s.hits, h)
	s.mu.Unlock()
	return h
}

func (s *site) got() []hit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]hit(nil), s.hits...)
}

// apiOrigin is the origin the token may go to in most tests.
const apiOrigin = "https://api.example.com"

// mustNew returns the Transport that New makes for src with optFns, and
// fails the test if New refuses.
func mustNew(t testing.TB, src transport.Source, optFns ...func(*transport.Options)) *transport.Transport {
	t.Helper()
	tr, err := transport.New(src, optFns...)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// toAPI is the setup most tests share: the token may go to apiOrigin, and
// every request goes to base.
func toAPI(base http.RoundTripper) func(*transport.Options) {
	return func(o *transport.Options) {
		o.Base = base
		o.Origins = []string{apiOrigin}
	}
}

// toServer points a transport at a loopback test server: its origin is the
// one allowed (plain http too, since it is loopback), and requests go
// through the server's own client transport, which trusts its certificate.
func toServer(srv *httptest.Server) func(*transport.Options) {
	return func(o *transport.Options) {
		o.Origins = []string{srv.URL}
		o.AllowInsecureLoopback = true
		o.Base = srv.Client().Transport
	}
}

func errorsIsAny(err error, targets ...error) bool { // nil targets are skipped
	for _, t := range targets {
		if t != nil && errors.Is(err, t) {
			return true
		}
	}
	return false
}

// retryOpts sets every RetryOptions field at once, for tables of options.
func retryOpts(o transport.RetryOptions) func(*transport.RetryOptions) {
	return func(p *transport.RetryOptions) { *p = o }
}
