package client

import (
	"crypto/subtle"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"

	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/internal/redact"
)

// callbackResult is what the one accepted callback produced.
type callbackResult struct {
	code string
	err  error
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
		writePage(w, http.StatusBadRequest, "Login failed: "+plain(res.err)+". Return to the application for details.")
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
			return callbackResult{err: failure(opLogin, "callback rejected: the authorization response comes from a different issuer (issuer mismatch)", ErrCallbackRejected, ErrIssuerMismatch)}
		}
	}
	if e := q.Get("error"); e != "" {
		// The server's words, through the browser: redacted, and escaped
		// where a terminal could act on them.
		if ae := newAuthorizationError(e, q.Get("error_description"), c.cfg.ClientSecret); ae != nil {
			return callbackResult{err: authorizationFailure(opLogin, ae, ErrCallbackRejected)}
		}
		what := joinNonEmpty(redact.Terminal(redact.Truncate(e, 64)), redact.Scrub(q.Get("error_description"), 200, c.cfg.ClientSecret))
		errs := []error{ErrCallbackRejected}
		// A scope or resource the server refused shows up here first; the
		// sentinels say so whichever way the answer came.
		switch e {
		case oauthwire.CodeInvalidScope:
			errs = append(errs, ErrInvalidScope)
		case oauthwire.CodeInvalidTarget:
			errs = append(errs, ErrInvalidTarget)
		}
		return callbackResult{err: failure(opLogin, "callback rejected: the authorization server answered "+what, errs...)}
	}
	code := q.Get("code")
	if code == "" || len(q["code"]) != 1 {
		return callbackResult{err: failure(opLogin, "callback rejected: it carries no authorization code", ErrCallbackRejected)}
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
