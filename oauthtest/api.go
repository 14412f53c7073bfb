package oauthtest

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Outcomes of a request to an API (APIRequest.Outcome).
const (
	OutcomeOK                = "ok"
	OutcomeMissing           = "missing"            // no credential (of an accepted scheme)
	OutcomeUnknown           = "unknown"            // not a token this server issued
	OutcomeForeign           = "foreign"            // issued by this server for another resource
	OutcomeExpired           = "expired"            // expired by the server's clock
	OutcomeRevoked           = "revoked"            // revoked (itself or its family)
	OutcomeRejected          = "rejected"           // forced by RejectNext
	OutcomeInsufficientScope = "insufficient_scope" // lacks the required scope
	OutcomeRedirect          = "redirect"           // a /redirect/ route
	// The DPoP outcomes (Config.DPoP on).
	OutcomeInvalidDPoPProof = "invalid_dpop_proof" // the DPoP proof failed a check
	OutcomeDPoPNonce        = "use_dpop_nonce"     // the proof lacked the API's current nonce
	OutcomeDPoPKeyMismatch  = "dpop_key_mismatch"  // the proof's key is not the token's (or the token is unbound)
	OutcomeDPoPDowngrade    = "dpop_downgrade"     // a DPoP-bound token shown with the Bearer scheme
	OutcomeDPoPRequired     = "dpop_required"      // the Bearer scheme under DPoPRequired
)

// maxRecords bounds the request records of an API and of the trap
// (counters keep counting).
const maxRecords = 10000

// API is a protected resource server on an origin of its own. It accepts
// only Bearer access tokens its Server issued for its resource (the
// token's audience), unexpired by the server's clock and not revoked, and
// answers 401 with WWW-Authenticate: Bearer error="invalid_token"
// otherwise (RFC 6750). It records every request's credential, so a test
// can prove that each API received only its own tokens.
//
// Any method and path with a valid token gets 200 and the JSON object
// {"resource", "sub", "scope", "path"}. The paths /redirect/302,
// /redirect/307 and /redirect/308 answer that redirect (before any token
// check) to the "to" query parameter, or by default to the server's Trap,
// another origin: a client that follows it with the token attached leaks
// the token, and the trap records it.
//
// An API is also an http.Handler, so it can be mounted elsewhere. Printing
// an API (fmt, log/slog) shows its URL and resource only.
type API struct {
	srv      *Server
	resource string
	url      string
	host     string
	hs       *http.Server

	calls, ok, rejected, foreign, unknown atomic.Int64

	mu            sync.Mutex // guards the fields below
	records       []APIRequest
	requiredScope string
	rejectNext    int
}

// APIRequest is one request an API received (API.Requests). Its Token is
// there for tests to compare; printing an APIRequest (fmt, log/slog) shows
// it only as [REDACTED].
type APIRequest struct {
	// Method and Path are the request's method and URL path.
	Method, Path string
	// Token is the credential presented ("" when none).
	Token string
	// Scheme is the Authorization scheme it came with: SchemeBearer,
	// SchemeDPoP (only when Config.DPoP is on), or "".
	Scheme string
	// DPoPJKT is the RFC 7638 thumbprint of the key of the DPoP proof
	// that passed the checks ("" when none did). The proof itself is not
	// kept.
	DPoPJKT string
	// Audience is the token's audience when this server issued it.
	Audience string
	// Status is the HTTP status the API answered.
	Status int
	// Outcome says why: OutcomeOK, OutcomeForeign, ...
	Outcome string
}

// APIStats counts an API's requests (API.Stats).
type APIStats struct {
	// Calls counts every request; OK those answered 200.
	Calls, OK int64
	// Rejected counts requests answered 401 or 403 (no token, a token it
	// does not accept, RejectNext, a missing scope).
	Rejected int64
	// Foreign counts requests whose token this server issued for another
	// resource; Unknown those whose token it never issued.
	Foreign, Unknown int64
}

// NewAPI starts a protected API on its own 127.0.0.1 port (its own origin)
// for resource, an absolute URI such as "https://api.example"; an empty
// resource means the API's own URL. The resource becomes an allowed
// resource indicator and, if the server has no default yet, the audience
// of tokens requested without one. The server's Close closes the API.
func (s *Server) NewAPI(resource string) (*API, error) {
	a := &API{srv: s}
	ln, err := s.listen(a, false)
	if err != nil {
		return nil, err
	}
	a.url, a.host, a.hs = ln.url, ln.host, ln.hs
	if resource == "" {
		resource = a.url
	}
	if !validResource(resource) {
		ln.close()
		return nil, errors.New("oauthtest: API resource is not an absolute URI without fragment")
	}
	a.resource = resource
	s.mu.Lock()
	s.apis = append(s.apis, a)
	s.hosts[a.host] = a
	if s.defaultAud == "" {
		s.defaultAud = resource
	}
	s.mu.Unlock()
	select {
	case <-s.closed:
		ln.close()
		return nil, errors.New("oauthtest: server closed")
	default:
	}
	ln.serve()
	return a, nil
}

// URL returns the API's base URL ("http://127.0.0.1:PORT").
func (a *API) URL() string { return a.url }

// Resource returns the API's resource indicator (the audience it accepts).
func (a *API) Resource() string { return a.resource }

// Close stops the API before the server (the server's Close does it too):
// its URL then refuses connections.
func (a *API) Close() {
	a.srv.mu.Lock()
	delete(a.srv.hosts, a.host)
	a.srv.mu.Unlock()
	closeHTTP(a.hs)
}

// SetRequiredScope makes requests whose token is valid but lacks scope
// fail with 403 insufficient_scope ("" turns the check off).
func (a *API) SetRequiredScope(scope string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.requiredScope = scope
}

// RejectNext answers the next n requests that carry a valid token with 401
// invalid_token, as an API does when it no longer trusts a token its
// authorization server still considers valid.
func (a *API) RejectNext(n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.rejectNext = n
}

// Requests returns the recorded requests, oldest first (at most the
// most recent 10000).
func (a *API) Requests() []APIRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.records)
}

// Tokens returns the distinct credentials the API was shown, in order of
// first appearance.
func (a *API) Tokens() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	seen := map[string]bool{}
	for _, r := range a.records {
		if r.Token != "" && !seen[r.Token] {
			seen[r.Token] = true
			out = append(out, r.Token)
		}
	}
	return out
}

// Stats returns the API's counters.
func (a *API) Stats() APIStats {
	return APIStats{Calls: a.calls.Load(), OK: a.ok.Load(), Rejected: a.rejected.Load(),
		Foreign: a.foreign.Load(), Unknown: a.unknown.Load()}
}

func (a *API) record(rec APIRequest, status int, outcome string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.records) >= maxRecords {
		a.records = slices.Delete(a.records, 0, maxRecords/10)
	}
	rec.Status, rec.Outcome = status, outcome
	a.records = append(a.records, rec)
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.calls.Add(1)
	s := a.srv
	scheme, tok := credential(r)
	s.mu.RLock()
	if s.cfg.DPoP == DPoPOff && scheme != SchemeBearer {
		// A server that does not know DPoP sees no credential.
		scheme, tok = "", ""
	}
	has := tok != ""
	now := s.now()
	var (
		issued           bool
		aud, sub, scope  string
		expired, revoked bool
	)
	if at := s.ats[tok]; has && at != nil {
		issued = true
		aud, sub, scope = at.audience, at.subject, at.scope
		expired = !now.Before(at.expiry)
		revoked = at.revoked || (at.fam != nil && at.fam.revoked)
	}
	s.mu.RUnlock()
	w.Header().Set("Date", now.UTC().Format(http.TimeFormat))
	if r.Body != nil {
		io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
	}

	if code, ok := strings.CutPrefix(r.URL.Path, "/redirect/"); ok && (code == "302" || code == "307" || code == "308") {
		to := r.URL.Query().Get("to")
		if to == "" {
			to = s.trap.URL() + "/from-api"
		}
		status := map[string]int{"302": http.StatusFound, "307": http.StatusTemporaryRedirect, "308": http.StatusPermanentRedirect}[code]
		a.record(APIRequest{Method: r.Method, Path: r.URL.Path, Token: tok, Scheme: scheme, Audience: aud}, status, OutcomeRedirect)
		w.Header().Set("Location", to)
		w.WriteHeader(status)
		return
	}

	var g guard
	if has {
		g = s.resourceGuard(r, EndpointAPI, scheme, tok)
	} else {
		g = s.resourceGuard(r, EndpointAPI, "", "")
	}
	rec := APIRequest{Method: r.Method, Path: r.URL.Path, Token: tok, Scheme: scheme, DPoPJKT: g.jkt, Audience: aud}
	if g.nonce != "" {
		w.Header().Set("DPoP-Nonce", g.nonce)
	}
	fail := func(status int, outcome string, challenges ...string) {
		a.rejected.Add(1)
		a.record(rec, status, outcome)
		for _, c := range challenges {
			w.Header().Add("WWW-Authenticate", c)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		switch {
		case outcome == OutcomeMissing:
			io.WriteString(w, `{"error":"unauthorized"}`)
		case outcome == OutcomeInsufficientScope:
			io.WriteString(w, `{"error":"insufficient_scope"}`)
		case g.refused:
			io.WriteString(w, `{"error":"`+g.errCode+`"}`)
		default:
			io.WriteString(w, `{"error":"invalid_token"}`)
		}
	}
	invalid := g.challenge(scheme, `error="invalid_token"`)
	switch {
	case !has:
		fail(http.StatusUnauthorized, OutcomeMissing, g.missing()...)
		return
	case g.refused:
		fail(http.StatusUnauthorized, g.outcome, g.challenges...)
		return
	case !issued:
		a.unknown.Add(1)
		fail(http.StatusUnauthorized, OutcomeUnknown, invalid+`, error_description="unknown token"`)
		return
	case aud != a.resource:
		a.foreign.Add(1)
		fail(http.StatusUnauthorized, OutcomeForeign, invalid+`, error_description="wrong audience"`)
		return
	case revoked:
		fail(http.StatusUnauthorized, OutcomeRevoked, invalid+`, error_description="token revoked"`)
		return
	case expired:
		fail(http.StatusUnauthorized, OutcomeExpired, invalid+`, error_description="token expired"`)
		return
	}
	a.mu.Lock()
	reject := a.rejectNext > 0
	if reject {
		a.rejectNext--
	}
	need := a.requiredScope
	a.mu.Unlock()
	if reject {
		fail(http.StatusUnauthorized, OutcomeRejected, invalid+`, error_description="token rejected"`)
		return
	}
	if need != "" && !slices.Contains(strings.Fields(scope), need) {
		fail(http.StatusForbidden, OutcomeInsufficientScope, g.challenge(scheme, `error="insufficient_scope", scope="`+need+`"`))
		return
	}
	a.ok.Add(1)
	a.record(rec, http.StatusOK, OutcomeOK)
	body, _ := json.Marshal(map[string]string{"resource": a.resource, "sub": sub, "scope": scope, "path": r.URL.Path})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

// Trap is a listener on an origin of its own that records every request
// and answers 200: the default target of redirect faults and of the APIs'
// redirect routes, so a test can prove that no credential followed a
// redirect to another origin. Printing a Trap (fmt, log/slog) shows its
// URL only.
type Trap struct {
	url    string
	altURL string
	host   string
	hs     *http.Server

	mu   sync.Mutex // guards reqs
	reqs []TrapRequest
}

// TrapRequest is one request the trap received (Trap.Requests). Printing
// one (fmt, log/slog) shows Authorization and Body only as [REDACTED].
type TrapRequest struct {
	// Method and Path are the request's method and URL path.
	Method, Path string
	// Authorization is the Authorization header as received.
	Authorization string
	// Body is the first 64 KiB of the request body (a token POST replayed
	// to the trap would carry its refresh token or code here).
	Body string
}

func (s *Server) newTrap() (*Trap, error) {
	t := &Trap{}
	ln, err := s.listen(t, false)
	if err != nil {
		return nil, err
	}
	t.url, t.host, t.hs = ln.url, ln.host, ln.hs
	_, port, _ := net.SplitHostPort(t.host)
	t.altURL = strings.Replace(t.url, t.host, "localhost:"+port, 1)
	s.register(t.host, t)
	s.register("localhost:"+port, t)
	ln.serve()
	return t, nil
}

// URL returns the trap's base URL, http(s)://127.0.0.1:PORT: the same
// host as the server with another port, hence another origin. Note that
// net/http itself keeps Authorization on redirects to the same host name
// whatever the port; only origin scoping stops it.
func (t *Trap) URL() string { return t.url }

// AltURL returns the trap's URL under the host name localhost (another
// host name as well as another port; net/http strips Authorization on
// redirects there).
func (t *Trap) AltURL() string { return t.altURL }

// Requests returns the recorded requests, oldest first (at most the
// first 10000).
func (t *Trap) Requests() []TrapRequest {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.reqs)
}

// ServeHTTP implements http.Handler.
func (t *Trap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(io.LimitReader(r.Body, 64<<10))
	}
	t.mu.Lock()
	if len(t.reqs) < maxRecords {
		t.reqs = append(t.reqs, TrapRequest{Method: r.Method, Path: r.URL.Path, Authorization: r.Header.Get("Authorization"), Body: string(body)})
	}
	t.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "oauthtest trap\n")
}
