package oauthtest

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tokenward/tokenward/internal/canary"
)

type authCode struct {
	clientID    string
	redirectURI string // as sent in the authorization request ("" if none)
	challenge   string
	scope       string
	resources   []string
	nonce       string
	subject     string
	expiry      time.Time
	used        bool
	fam         *family // what the code produced, revoked on replay
	dpopJKT     string  // RFC 9449 section 10: the DPoP key that must redeem it
}

// authorize serves the authorization endpoint: it approves every valid
// request at once (as DefaultSubject / Config.Subject) and redirects to the
// client's redirect URI with code, state and iss (RFC 9207). Requests whose
// client or redirect URI is invalid get an HTML error page and are never
// redirected (RFC 6749 section 4.1.2.1). A request that names a pushed
// request (client_id and request_uri, RFC 9126 section 4) is served with
// the parameters pushed, once; with Config.RequirePAR any other request is
// refused.
func (s *Server) authorize(r *http.Request) *reply {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		return textReply(http.StatusMethodNotAllowed, "text/plain; charset=utf-8", "method not allowed\n")
	}
	q := r.URL.Query()
	if r.Method == http.MethodPost {
		q = r.Form
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	page := func(msg string) *reply {
		return textReply(http.StatusBadRequest, "text/html; charset=utf-8",
			"<!DOCTYPE html><html><head><title>Authorization error</title></head><body><p>"+html.EscapeString(msg)+"</p></body></html>\n")
	}
	pushed := false
	if _, ok := q["request_uri"]; ok {
		// Only the pushed parameters count: anything else in the query
		// is ignored (RFC 9126 section 4).
		p, msg := s.takePushed(q.Get("client_id"), q.Get("request_uri"))
		if msg != "" {
			return page(msg)
		}
		q, pushed = p, true
	}
	c := s.clients[q.Get("client_id")]
	if c == nil {
		return page("unknown client")
	}
	redirect := q.Get("redirect_uri")
	target, msg := redirectTarget(c, redirect)
	if msg != "" {
		return page(msg)
	}
	back := func(params url.Values) *reply {
		u, _ := url.Parse(target)
		qq := u.Query()
		for k, vs := range params {
			qq[k] = vs
		}
		if st := q.Get("state"); st != "" {
			qq.Set("state", st)
		}
		switch {
		case s.cfg.CallbackIss != "":
			qq.Set("iss", s.cfg.CallbackIss)
		case !s.cfg.OmitCallbackIss:
			qq.Set("iss", s.issuer)
		}
		u.RawQuery = qq.Encode()
		rep := textReply(http.StatusFound, "text/plain; charset=utf-8", "redirecting\n")
		rep.header.Set("Location", u.String())
		rep.header.Set("Cache-Control", "no-store")
		return rep
	}
	fail := func(code, desc string) *reply {
		return back(url.Values{"error": {code}, "error_description": {desc}})
	}
	if s.cfg.RequirePAR && !pushed {
		return fail("invalid_request", "pushed authorization request required")
	}
	if code, desc := s.checkAuthRequest(c, q); code != "" {
		return fail(code, desc)
	}
	switch {
	case s.cfg.AuthorizeError != "":
		return fail(s.cfg.AuthorizeError, "injected by the test")
	case s.cfg.NoSession && slices.Contains(strings.Fields(q.Get("prompt")), "none"):
		return fail("login_required", "no session, and prompt=none forbids asking the user to sign in")
	}
	code := &authCode{
		clientID: c.ID, redirectURI: redirect, challenge: q.Get("code_challenge"),
		scope: q.Get("scope"), resources: slices.Clone(q["resource"]), nonce: q.Get("nonce"),
		subject: s.cfg.Subject, expiry: s.now().Add(s.cfg.CodeLifetime),
	}
	if s.cfg.DPoP != DPoPOff {
		code.dpopJKT = q.Get("dpop_jkt")
	}
	value := canary.New("code")
	s.codes[value] = code
	return back(url.Values{"code": {value}})
}

// redirectTarget returns where the authorization response of client c goes:
// the redirect URI requested, or the one registered when none was and one
// alone is (never a loopback one, whose port varies), or a message saying
// why there is no safe target.
func redirectTarget(c *Client, redirect string) (target, msg string) {
	target = redirect
	if target == "" {
		if len(c.RedirectURIs) != 1 || isLoopbackRedirect(c.RedirectURIs[0]) {
			return "", "redirect_uri required"
		}
		target = c.RedirectURIs[0]
	}
	if !redirectAllowed(target, c.RedirectURIs) {
		return "", "redirect_uri not registered for this client"
	}
	return target, ""
}

// checkAuthRequest checks the parameters of an authorization request of
// client c, sent to the authorization endpoint or pushed: the OAuth error
// code and description of the first problem, or "" when there is none.
// The caller holds s.mu.
func (s *Server) checkAuthRequest(c *Client, q url.Values) (code, desc string) {
	switch {
	case q.Get("response_type") != "code":
		return "unsupported_response_type", "only response_type=code"
	case !c.allowsGrant(GrantAuthorizationCode):
		return "unauthorized_client", "client may not use the authorization code grant"
	case q.Get("code_challenge") == "":
		return "invalid_request", "PKCE required: code_challenge missing"
	case q.Get("code_challenge_method") != "S256":
		return "invalid_request", "PKCE: only code_challenge_method=S256"
	case len(q.Get("code_challenge")) != 43:
		return "invalid_request", "PKCE: malformed code_challenge"
	case !scopeSubset(q.Get("scope"), c.Scopes):
		return "invalid_scope", "scope not allowed for this client"
	}
	for _, res := range q["resource"] {
		if !validResource(res) || !s.resourceAllowed(res) {
			return "invalid_target", "unknown resource"
		}
	}
	if _, ok := q["dpop_jkt"]; ok && s.cfg.DPoP != DPoPOff && (len(q["dpop_jkt"]) != 1 || !validJKT(q.Get("dpop_jkt"))) {
		return "invalid_request", "dpop_jkt is not one base64url SHA-256 JWK thumbprint"
	}
	return "", ""
}

// isLoopbackRedirect: http with a loopback IP literal host (RFC 8252 7.3).
func isLoopbackRedirect(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" {
		return false
	}
	ip := net.ParseIP(u.Hostname())
	return ip != nil && ip.IsLoopback()
}

// redirectAllowed matches a redirect URI against the registered ones:
// exactly, or for loopback IP literals with any port (RFC 8252 section 7.3).
func redirectAllowed(got string, registered []string) bool {
	u, err := url.Parse(got)
	if err != nil || u.Fragment != "" {
		return false
	}
	for _, reg := range registered {
		if reg == got {
			return true
		}
		if !isLoopbackRedirect(reg) {
			continue
		}
		ru, _ := url.Parse(reg)
		if u.Scheme == "http" && u.Hostname() == ru.Hostname() && u.EscapedPath() == ru.EscapedPath() && u.RawQuery == ru.RawQuery && u.User == nil {
			return true
		}
	}
	return false
}

// Authorize plays the browser's first half: it sends the authorization
// request authURL (as a client would open it) to the server in memory and
// returns the redirect the server answered with, for example
// http://127.0.0.1:PORT/callback?code=...&state=...&iss=... The redirect is
// not followed: a test may read the code, or tamper with the redirect
// before delivering it with Deliver. An authorization error is redirected
// too (error=access_denied&...) and returned the same way; only a request
// the server never redirects (an unknown client, an unregistered redirect
// URI) is an error.
func (s *Server) Authorize(ctx context.Context, authURL string) (*url.URL, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
	if err != nil {
		return nil, fmt.Errorf("oauthtest: authorize: bad URL: %w", err)
	}
	resp, err := s.Transport().RoundTrip(req)
	if err != nil {
		return nil, fmt.Errorf("oauthtest: authorize: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusFound {
		return nil, fmt.Errorf("oauthtest: authorize: HTTP %d (invalid client or redirect URI)", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		return nil, errors.New("oauthtest: authorize: bad Location")
	}
	return loc, nil
}

// Browse plays the whole browser part of a login: Authorize, then a GET of
// the redirect (the client's loopback callback) over the network. It
// returns an error when the callback does not answer 2xx. Only loopback
// callbacks are followed.
func (s *Server) Browse(ctx context.Context, authURL string) error {
	loc, err := s.Authorize(ctx, authURL)
	if err != nil {
		return err
	}
	return Deliver(ctx, loc.String())
}

// Deliver GETs a callback URL as a browser would, over the network, and
// returns an error unless the callback answers 2xx. Only http(s) URLs on
// loopback hosts are allowed. It is the second half of Server.Browse, for
// a test that inspects or alters the redirect in between.
func Deliver(ctx context.Context, callback string) error {
	u, err := url.Parse(callback)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return errors.New("oauthtest: callback is not an http(s) URL")
	}
	if h := u.Hostname(); h != "localhost" && !isLoopbackRedirect("http://"+u.Host) {
		return errors.New("oauthtest: callback host is not loopback")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, callback, nil)
	if err != nil {
		return fmt.Errorf("oauthtest: callback: %w", err)
	}
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}).Do(req)
	if err != nil {
		return fmt.Errorf("oauthtest: callback: %w", stripURL(err))
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("oauthtest: callback answered HTTP %d", resp.StatusCode)
	}
	return nil
}

// stripURL removes the URL (which holds the code) from a *url.Error.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", strings.ToLower(ue.Op), ue.Err)
	}
	return err
}
