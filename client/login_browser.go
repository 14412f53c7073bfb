package client

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/redact"
)

// callbackPath is the path of the loopback redirect URI.
const callbackPath = "/callback"

// callbackResult is what the one accepted callback produced.
type callbackResult struct {
	code string
	err  error
}

// randomState returns 32 random bytes, base64url: 256 bits, well above the
// 128 needed to make guessing hopeless (RFC 6749 section 10.12, RFC 9700
// section 4.7).
func randomState() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("client: random state: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// listenLoopback binds host:0. Only loopback IP literals are allowed
// (RFC 8252 section 7.3 and 8.3): binding 0.0.0.0 or a LAN address would
// expose the authorization code to the network.
func listenLoopback(ctx context.Context, host string) (net.Listener, error) {
	if host == "" {
		host = "127.0.0.1"
	}
	h := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	ip := net.ParseIP(h)
	if ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("client: %w: RedirectHost %q is not a loopback IP address (use 127.0.0.1 or ::1)", ErrInvalidConfig, host)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort(ip.String(), "0"))
	if err != nil {
		return nil, fmt.Errorf("client: login: listen on %s: %w", ip, err)
	}
	return ln, nil
}

// Limits of the login listener. Any process on the machine can connect to
// it, so what one request or one flood of requests can cost is bounded:
// a request line and headers of at most callbackMaxHeader bytes (an
// authorization code and state fit many times over), at most
// callbackMaxConns connections served at once (more wait in the kernel's
// queue instead of each taking a goroutine and buffers), one request per
// connection, and callbackIOTimeout for reading and writing it.
const (
	callbackMaxHeader = 32 << 10
	callbackMaxConns  = 64
	callbackIOTimeout = 10 * time.Second
	// maxIgnoredLogged caps the debug lines about ignored requests, so a
	// flood cannot fill the log; their number is logged when the login
	// ends.
	maxIgnoredLogged = 16
)

// browserLogin runs the authorization code flow with S256 PKCE on a
// loopback redirect (RFC 8252): it listens on a random loopback port,
// shows and opens the authorization URL, and waits for the callback that
// carries this login's state (compared in constant time). Anything else
// that reaches the listener (a wrong or missing state, another method or
// path) is answered with an error page and ignored, so another process
// cannot end the login by guessing the port. The right callback is checked
// for iss (RFC 9207) and error, and its code is exchanged once. The
// listener is closed on every exit path.
func (c *Client) browserLogin(ctx context.Context, o *LoginOptions) (*oauth2.Token, error) {
	if c.endpoints.AuthURL == "" {
		return nil, fmt.Errorf("client: %w: the server has no authorization endpoint; use device login (WithDevice)", ErrInvalidConfig)
	}
	ln, err := listenLoopback(ctx, c.cfg.RedirectHost)
	if err != nil {
		return nil, err
	}
	defer ln.Close()

	state, err := randomState()
	if err != nil {
		return nil, err
	}
	verifier := oauth2.GenerateVerifier()
	redirectURI := "http://" + ln.Addr().String() + callbackPath

	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {c.cfg.ClientID},
		"redirect_uri":          {redirectURI},
		"state":                 {state},
		"code_challenge":        {oauth2.S256ChallengeFromVerifier(verifier)},
		"code_challenge_method": {"S256"},
	}
	if len(c.cfg.Scopes) > 0 {
		q.Set("scope", strings.Join(c.cfg.Scopes, " "))
	}
	for _, r := range c.allResources() {
		q.Add("resource", r)
	}
	authURL, err := authorizationURL(c.endpoints.AuthURL, q)
	if err != nil {
		return nil, err
	}

	results := make(chan callbackResult, 1)
	h := &callbackHandler{c: c, state: state, results: results}
	lim := newLimitListener(ln, callbackMaxConns)
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: callbackIOTimeout,
		ReadTimeout:       callbackIOTimeout,
		WriteTimeout:      callbackIOTimeout,
		MaxHeaderBytes:    callbackMaxHeader,
		ErrorLog:          discardLog(),
	}
	// One request per connection: a connection kept open after its
	// request would hold a place for nothing.
	srv.SetKeepAlivesEnabled(false)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lim)
	}()
	defer func() {
		// Shutdown, not Close: the handler may still be writing the page
		// the browser shows; idle and late connections get a short grace.
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			_ = srv.Close()
		}
		<-served
		if n := h.ignored.Load(); n > 0 {
			c.grant.log.Debug("client: login: requests ignored by the login listener", "count", n)
		}
	}()

	o.show(c, authURL)

	timeout := c.cfg.LoginTimeout
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var res callbackResult
	select {
	case res = <-results:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-timer.C:
		return nil, fmt.Errorf("%w: no browser callback within %s", ErrLoginExpired, timeout)
	}
	// Stop listening before the exchange: nothing else may arrive. The
	// accepted callback's page is still delivered (Shutdown waits for it).
	_ = lim.Close()
	if res.err != nil {
		return nil, res.err
	}

	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {res.code},
		"redirect_uri":  {redirectURI},
		"code_verifier": {verifier},
	}
	for _, r := range c.defaultResources() {
		form.Add("resource", r)
	}
	return c.tokenRequest(ctx, form, replayNever)
}

// authorizationURL returns the authorization endpoint with q added to its
// query, as printable ASCII: the endpoint comes from the server (discovery)
// and the URL is printed on the terminal, so any byte a terminal could act
// on is percent-encoded rather than printed as it is.
func authorizationURL(endpoint string, q url.Values) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		// Unreachable in practice: configured and discovered endpoints are
		// parsed before. The parse error is left out: it quotes the URL.
		return "", fmt.Errorf("%w: login: the authorization endpoint %s is not a URL", ErrBadResponse, redact.Terminal(redact.URLString(endpoint)))
	}
	if u.RawQuery != "" && !printableASCII(u.RawQuery) {
		u.RawQuery = u.Query().Encode()
	}
	if u.RawQuery != "" {
		u.RawQuery += "&"
	}
	u.RawQuery += q.Encode()
	s := u.String()
	if !printableASCII(s) {
		return "", fmt.Errorf("%w: login: the authorization endpoint %s holds characters that cannot be shown safely", ErrBadResponse, redact.Terminal(redact.URLString(endpoint)))
	}
	return s, nil
}

// printableASCII reports whether s holds only the bytes 0x21 to 0x7e.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// callbackHandler serves the login listener. Only a GET of callbackPath
// with exactly one state parameter equal to this login's state is the
// callback; the first such request ends the login and later ones change
// nothing.
type callbackHandler struct {
	c       *Client
	state   string
	results chan<- callbackResult // buffered, one slot
	once    sync.Once
	ignored atomic.Int64
}

// ServeHTTP answers one request with a small fixed page. Its work is
// bounded whatever arrives: no state is kept per request beyond a counter.
func (h *callbackHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path != callbackPath:
		h.ignore(w, http.StatusNotFound, "another path")
		return
	case r.Method != http.MethodGet:
		// The server redirects the browser with a GET; a HEAD or POST,
		// even with the right query, is not the browser's callback.
		w.Header().Set("Allow", http.MethodGet)
		h.ignore(w, http.StatusMethodNotAllowed, "method "+redact.Truncate(r.Method, 16))
		return
	}
	q := r.URL.Query()
	if !stateMatches(q, h.state) {
		h.ignore(w, http.StatusBadRequest, "no state or a wrong one")
		return
	}
	res := h.c.checkCallback(q)
	accepted := false
	h.once.Do(func() { h.results <- res; accepted = true })
	if !accepted {
		// Exactly one callback is accepted: a second one (a replay, a
		// second tab) changes nothing.
		writePage(w, http.StatusConflict, "This login has already been handled. You can close this window.")
		return
	}
	if res.err != nil {
		writePage(w, http.StatusBadRequest, "Login failed: "+res.err.Error()+". Return to the application for details.")
		return
	}
	writePage(w, http.StatusOK, "Login complete. You can close this window and return to the application.")
}

// ignore answers a request that is not this login's callback and logs it
// (at most maxIgnoredLogged times), naming only why it was ignored: never
// its query, which may hold a real state or code.
func (h *callbackHandler) ignore(w http.ResponseWriter, status int, why string) {
	n := h.ignored.Add(1)
	if n <= maxIgnoredLogged {
		msg := "client: login: ignored a request to the login listener"
		if n == maxIgnoredLogged {
			msg += " (further ones are counted, not logged)"
		}
		h.c.grant.log.Debug(msg, "reason", why, "status", status)
	}
	writePage(w, status, "This request does not belong to the login in progress and was ignored.")
}

// stateMatches reports whether q carries exactly one state parameter and it
// equals want, compared in constant time.
func stateMatches(q url.Values, want string) bool {
	got := q["state"]
	return len(got) == 1 && subtle.ConstantTimeCompare([]byte(got[0]), []byte(want)) == 1
}

// checkCallback validates the query of the callback whose state matched:
// iss first, then error, then code.
func (c *Client) checkCallback(q url.Values) callbackResult {
	// iss (RFC 9207) can be checked only against a configured issuer; with
	// explicit endpoints alone there is nothing to compare it with. A
	// mismatch with the right state means the browser was sent to another
	// server (a mix-up): the login ends.
	if iss, ok := q["iss"]; c.issuer != "" && (ok || c.issRequired) {
		if len(iss) != 1 || iss[0] != c.issuer {
			return callbackResult{err: fmt.Errorf("%w: %w: the authorization response comes from a different issuer", ErrCallbackRejected, ErrIssuerMismatch)}
		}
	}
	if e := q.Get("error"); e != "" {
		desc := redact.Truncate(q.Get("error_description"), 200)
		if e == "access_denied" {
			return callbackResult{err: fmt.Errorf("%w: %s", ErrAccessDenied, joinNonEmpty(redact.Truncate(e, 64), desc))}
		}
		return callbackResult{err: fmt.Errorf("%w: authorization server returned %s", ErrCallbackRejected, joinNonEmpty(redact.Truncate(e, 64), desc))}
	}
	code := q.Get("code")
	if code == "" || len(q["code"]) != 1 {
		return callbackResult{err: fmt.Errorf("%w: the callback carries no authorization code", ErrCallbackRejected)}
	}
	return callbackResult{code: code}
}

func joinNonEmpty(a, b string) string {
	if b == "" {
		return a
	}
	return a + ": " + b
}

// writePage answers the browser with a minimal page. msg never holds a secret.
func writePage(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Content-Security-Policy", "default-src 'none'")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<!doctype html><meta charset=utf-8><title>tokenward</title><p style=\"font-family:sans-serif\">%s</p>\n", html.EscapeString(msg))
}

var errNoBrowser = errors.New("client: no browser could be opened")

// limitListener serves at most a fixed number of connections at once:
// Accept waits for a connection to close before taking the next one from
// the kernel's queue.
type limitListener struct {
	net.Listener
	slots     chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func newLimitListener(ln net.Listener, n int) *limitListener {
	return &limitListener{Listener: ln, slots: make(chan struct{}, n), done: make(chan struct{})}
}

// Accept waits for a free place, then for a connection.
func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	conn, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitedConn{Conn: conn, release: sync.OnceFunc(func() { <-l.slots })}, nil
}

// Close stops Accept, also one waiting for a free place.
func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// limitedConn gives its place back when closed (once, however often Close
// is called).
type limitedConn struct {
	net.Conn
	release func()
}

// Close closes the connection and frees its place.
func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}
