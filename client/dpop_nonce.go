package client

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/dpop"
	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/internal/redact"
	"github.com/tokenward/tokenward/internal/tokenx"
)

// proofKeyCtx carries the key of a token request's proofs through the
// retry engine to dpopEndpoint, which signs one per attempt: a proof's jti
// is single-use, so a retried request needs a new one.
type proofKeyCtx struct{}

// dpopEndpoint is the base transport of the authorization server's
// endpoints when DPoP is on: it puts a fresh proof on every attempt of a
// request whose context carries a key, and keeps the DPoP-Nonce of every
// answer and the clock skew its Date header shows (discovery's included,
// so that the first proof is already on the server's time).
type dpopEndpoint struct {
	g    *grant
	base http.RoundTripper
}

// RoundTrip signs the attempt's proof, when asked, and sends it.
func (t dpopEndpoint) RoundTrip(req *http.Request) (*http.Response, error) {
	hk, _ := req.Context().Value(proofKeyCtx{}).(*heldKey)
	if hk != nil {
		p, err := t.g.proof(hk, req.Method, req.URL, "", t.g.proofTime())
		if err != nil {
			if req.Body != nil {
				req.Body.Close()
			}
			return nil, inOp("DPoP proof", err)
		}
		out := *req
		out.Header = req.Header.Clone()
		out.Header.Set(dpop.HeaderDPoP, p)
		req = &out
	}
	sent := t.g.now()
	resp, err := t.base.RoundTrip(req)
	if err == nil && resp != nil {
		t.g.noteNonce(req.URL, resp.Header)
		t.g.noteSkew(oauthwire.ClockSkew(resp.Header, sent, t.g.now()))
	}
	return resp, err
}

// postProof posts a token request with a DPoP proof of hk (none when hk is
// nil). A 400 use_dpop_nonce answer that carries a nonce is answered by
// exactly one more request with it: the server refused the request before
// looking at its grant, so the code or refresh token it carries is unspent
// (RFC 9449 section 8).
func (g *grant) postProof(ctx context.Context, endpoint string, form url.Values, policy replay, hk *heldKey) (*response, error) {
	if hk == nil {
		return g.ep.post(ctx, endpoint, form, g.authFor(endpoint), policy)
	}
	ctx = context.WithValue(ctx, proofKeyCtx{}, hk)
	resp, err := g.ep.post(ctx, endpoint, form, g.authFor(endpoint), policy)
	if err != nil || resp.status < 400 {
		return resp, err
	}
	code := oauthwire.ParseErrorResponse(resp.status, resp.header, resp.body).Code
	if _, ok := dpop.TokenEndpointNonce(resp.status, code, resp.header); !ok {
		return resp, nil
	}
	g.log.LogAttrs(ctx, slog.LevelDebug, "client: the token endpoint asked for a DPoP nonce; sending the request once more with it",
		slog.String("endpoint", redact.URLString(endpoint)))
	return g.ep.post(ctx, endpoint, form, g.authFor(endpoint), policy)
}

// prepareDPoP is the API transports' Prepare hook: a DPoP token goes with
// a new proof for this request (its method, its URL, the token's hash, the
// origin's last nonce); the transport has set "Authorization: DPoP
// <token>" already. The transport calls it only for requests to the
// token's allowed origins. A Bearer token (a downgrade the application
// accepted) goes as the transport set it.
//
// It runs for every API request, so it stays cheap: the key and the ath
// are remembered per token, the URL is not printed, and the header is set
// under its canonical key ("Dpop", what Header.Set would make of "DPoP")
// without the canonicalising copy.
func (g *grant) prepareDPoP(req *http.Request, tok *oauth2.Token) error {
	if !isDPoP(tok) {
		return nil
	}
	hk := g.apiKey(tokenx.String(tok, tokenx.KeyDPoPJKT))
	if hk == nil {
		return failure("DPoP proof", "the token's DPoP key is not known in this process (log in again)", ErrReauthRequired)
	}
	p, err := g.proof(hk, req.Method, req.URL, g.ath(tok.AccessToken), g.apiProofTime())
	if err != nil {
		return inOp("DPoP proof", err)
	}
	req.Header[dpopHeaderKey] = []string{p}
	return nil
}

// dpopHeaderKey and dpopNonceKey are the canonical forms of the DPoP
// headers' names ("Dpop", "Dpop-Nonce"): the keys net/http uses in a
// header map, which an index by the RFC's spelling would miss.
var (
	dpopHeaderKey = http.CanonicalHeaderKey(dpop.HeaderDPoP)
	dpopNonceKey  = http.CanonicalHeaderKey(dpop.HeaderNonce)
)

// answeredDPoP is the API transports' Answered hook: it keeps the
// origin's nonce from every answer, asks for one resend of a request
// answered 401 use_dpop_nonce, and turns a refused proof into
// ErrInvalidDPoPProof instead of a 401 the caller would retry in vain.
func (g *grant) answeredDPoP(req *http.Request, resp *http.Response, tok *oauth2.Token) (bool, error) {
	if resp.StatusCode != http.StatusUnauthorized {
		if len(resp.Header[dpopNonceKey]) > 0 {
			g.noteNonce(req.URL, resp.Header)
		}
		return false, nil
	}
	ch := dpop.ParseChallenge(resp.Header)
	if ch.Nonce != "" {
		g.noteNonce(req.URL, resp.Header)
	}
	if !isDPoP(tok) {
		return false, nil
	}
	switch {
	case ch.UseNonce():
		return true, nil
	case ch.InvalidProof() && g.correctAPISkew(resp.Header):
		// The API's clock is far from the time the proof gave: a process
		// that started from stored tokens has not heard the authorization
		// server's clock yet. One resend with the corrected time.
		g.log.LogAttrs(req.Context(), slog.LevelDebug, "client: the API refused a DPoP proof and its clock differs from ours; sending the request once more with the proof's time corrected",
			slog.String("origin", redact.URLString(req.URL.Scheme+"://"+req.URL.Host)))
		return true, nil
	case ch.InvalidProof():
		return false, failure("API request", "the resource server refused the DPoP proof (invalid_dpop_proof)", ErrInvalidDPoPProof)
	}
	return false, nil
}
