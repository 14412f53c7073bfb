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
// 128 the issue asks for (RFC 6749 section 10.12, RFC 9700 section 4.7).
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
		return nil, fmt.Errorf("%w: RedirectHost %q is not a loopback IP address (use 127.0.0.1 or ::1)", ErrInvalidConfig, host)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort(ip.String(), "0"))
	if err != nil {
		return nil, fmt.Errorf("client: login: listen on %s: %w", ip, err)
	}
	return ln, nil
}

// browserLogin runs the authorization code flow with S256 PKCE on a
// loopback redirect (RFC 8252): it listens on a random loopback port,
// shows and opens the authorization URL, accepts exactly one callback,
// checks state (constant time) and iss (RFC 9207), and exchanges the code
// once. The listener is closed on every exit path.
func (c *Client) browserLogin(ctx context.Context, o *loginOptions) (*oauth2.Token, error) {
	if c.endpoints.AuthURL == "" {
		return nil, fmt.Errorf("%w: the server has no authorization endpoint; use device login (WithDevice)", ErrInvalidConfig)
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
	authURL := c.endpoints.AuthURL
	if strings.Contains(authURL, "?") {
		authURL += "&" + q.Encode()
	} else {
		authURL += "?" + q.Encode()
	}

	results := make(chan callbackResult, 1)
	var once sync.Once
	accept := func(r callbackResult) bool {
		taken := false
		once.Do(func() { results <- r; taken = true })
		return taken
	}
	mux := http.NewServeMux()
	mux.HandleFunc(callbackPath, func(w http.ResponseWriter, r *http.Request) {
		res := c.checkCallback(r.URL.Query(), state)
		if !accept(res) {
			// Exactly one callback is accepted: a second one (a replay,
			// a second tab, an attacker) changes nothing.
			writePage(w, http.StatusConflict, "This login has already been handled. You can close this window.")
			return
		}
		if res.err != nil {
			writePage(w, http.StatusBadRequest, "Login failed: "+res.err.Error()+". Return to the application for details.")
			return
		}
		writePage(w, http.StatusOK, "Login complete. You can close this window and return to the application.")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: discardLog()}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
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
	if res.err != nil {
		return nil, res.err
	}
	// Stop listening before the exchange: nothing else may arrive. The
	// accepted callback's page is still delivered (Shutdown waits for it).
	_ = ln.Close()

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

// checkCallback validates the redirect's query: state first (constant time),
// then iss, then error, then code.
func (c *Client) checkCallback(q url.Values, state string) callbackResult {
	got := q.Get("state")
	if len(q["state"]) != 1 || subtle.ConstantTimeCompare([]byte(got), []byte(state)) != 1 {
		return callbackResult{err: fmt.Errorf("%w: state does not match this login", ErrCallbackRejected)}
	}
	// iss (RFC 9207) can be checked only against a configured issuer; with
	// explicit endpoints alone there is nothing to compare it with.
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
