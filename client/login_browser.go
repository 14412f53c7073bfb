package client

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/redact"
)

// callbackPath is the path of the loopback redirect URI.
const callbackPath = "/callback"

// randomState returns 32 random bytes, base64url: 256 bits, well above the
// 128 needed to make guessing hopeless (RFC 6749 section 10.12, RFC 9700
// section 4.7).
func randomState() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", failure(opLogin, "no random state: "+plain(err), err)
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
		return nil, failure(opConfig, fmt.Sprintf("RedirectHost %q is not a loopback IP address (use 127.0.0.1 or ::1)", host), ErrInvalidConfig)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort(ip.String(), "0"))
	if err != nil {
		return nil, failure(opLogin, fmt.Sprintf("listen on %s: %s", ip, plain(err)), err)
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
	if err := c.ready(ctx); err != nil {
		return nil, err
	}
	if c.endpoints.AuthURL == "" {
		return nil, failure(opLogin, "the server has no authorization endpoint; use device login (WithDevice)", ErrInvalidConfig)
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
	q = withParams(q, mergeParams(c.cfg.AuthParams, o.AuthParams))
	var hk *heldKey
	if c.dpop != nil {
		// The code is bound to the key (RFC 9449 section 10): a code
		// stolen on its way back is useless without it. The key is the
		// new login's; it is saved with its tokens.
		if hk, err = c.newLoginKey(); err != nil {
			return nil, inOp(opLogin, err)
		}
		q.Set("dpop_jkt", hk.k.Thumbprint())
	}
	authURL, validFor, err := c.authRequestURL(ctx, q, hk)
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

	o.show(c, authURL, validFor)

	timeout := c.cfg.LoginTimeout
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var res callbackResult
	select {
	case res = <-results:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-timer.C:
		return nil, failure(opLogin, fmt.Sprintf("no browser callback arrived within %s; the login expired", timeout), ErrLoginExpired)
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
	return c.tokenRequest(ctx, form, replayNever, hk)
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
		return "", failure(opLogin, fmt.Sprintf("the authorization endpoint %s is not a URL", redact.URLString(endpoint)), ErrBadResponse)
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
		return "", failure(opLogin, fmt.Sprintf("the authorization endpoint %s holds characters that cannot be shown safely", redact.URLString(endpoint)), ErrBadResponse)
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
