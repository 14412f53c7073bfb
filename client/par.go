package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"time"

	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/internal/redact"
)

// maxRequestURI bounds the request_uri a PAR endpoint may hand back: it
// goes into the URL the browser opens and the prompt prints.
const maxRequestURI = 1024

// usePAR reports whether browser logins push their authorization requests
// (RFC 9126): when the application asks (Options.UsePAR) or the server
// requires it (require_pushed_authorization_requests in discovery). Either
// way without an endpoint to push to is a configuration error, reported
// before the login starts.
func (g *grant) usePAR() (bool, error) {
	required := g.disco != nil && g.disco.RequirePushedAuthorizationRequests
	if !g.cfg.UsePAR && !required {
		return false, nil
	}
	if g.endpoints.PARURL != "" {
		return true, nil
	}
	if g.cfg.UsePAR {
		return false, failure(opLogin, "Options.UsePAR is set, but the server has no pushed authorization request endpoint (discovery names none and Endpoints.PARURL is empty)", ErrInvalidConfig)
	}
	return false, failure(opLogin, "the server requires pushed authorization requests but its discovery document names no endpoint for them; set Endpoints.PARURL", ErrInvalidConfig)
}

// authRequestURL returns the URL the browser opens for the authorization
// request q: the authorization endpoint with q, or, with PAR, with only
// client_id and the request_uri the PAR endpoint handed out for q. The
// parameters then travel from this process to the server directly, with
// the client's authentication, instead of through the browser's address
// bar, history and extensions.
// With PAR it also returns how long the address works (0 when the server
// did not say), for the person who opens it by hand. hk is the login's
// DPoP key, nil without DPoP.
func (c *Client) authRequestURL(ctx context.Context, q url.Values, hk *heldKey) (string, time.Duration, error) {
	par, err := c.usePAR()
	if err != nil {
		return "", 0, err
	}
	if !par {
		u, err := authorizationURL(c.endpoints.AuthURL, q)
		return u, 0, err
	}
	uri, validFor, err := c.pushAuthRequest(ctx, q, hk)
	if err != nil {
		return "", 0, err
	}
	u, err := authorizationURL(c.endpoints.AuthURL, url.Values{"client_id": {c.cfg.ClientID}, "request_uri": {uri}})
	return u, validFor, err
}

// pushAuthRequest posts the authorization parameters q to the PAR
// endpoint with the client authentication of the token endpoint and
// returns the request_uri of the answer. The push carries no single-use
// credential (the PKCE verifier stays here; the state and challenge are
// fresh for this login), so it is retried like the other replay-safe
// requests.
//
// With DPoP the push carries a proof of the login's key next to dpop_jkt
// (RFC 9449 section 10.1 allows either; some servers read only the
// proof, and one that reads both checks that they name the same key). A
// server that asks for a nonce gets one more push with it, as the token
// endpoint does.
func (g *grant) pushAuthRequest(ctx context.Context, q url.Values, hk *heldKey) (string, time.Duration, error) {
	endpoint := g.endpoints.PARURL
	resp, err := g.postProof(ctx, endpoint, q, replaySafe, hk)
	if err != nil {
		return "", 0, inOp(opPAR, err)
	}
	if resp.status < 200 || resp.status > 299 {
		return "", 0, g.classifyAuthz(opPAR, endpoint, resp.status, oauthwire.ParseErrorResponse(resp.status, resp.header, resp.body))
	}
	uri, validFor, err := parseRequestURI(resp.body)
	if err != nil {
		return "", 0, &EndpointError{Op: opPAR, Endpoint: redact.URLString(endpoint), Status: resp.status, Err: badResponse(err)}
	}
	return uri, validFor, nil
}

// errBadPARResponse: the PAR endpoint's success answer has no usable
// request_uri. The message never quotes the answer: a request_uri
// stands for the pushed request until it is used.
var errBadPARResponse = errors.New("the answer holds no usable request_uri (a JSON object with a request_uri string of printable characters is required)")

// parseRequestURI reads the request_uri of a PAR endpoint's success answer
// (RFC 9126 section 2.2) and its expires_in: the browser is sent at once,
// but a person who opens the address by hand (no browser could be
// started) must do so before it expires. An absent or unusable expires_in
// is 0.
func parseRequestURI(body []byte) (string, time.Duration, error) {
	var m struct {
		RequestURI string  `json:"request_uri"`
		ExpiresIn  float64 `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		var uriOnly struct {
			RequestURI string `json:"request_uri"`
		}
		if json.Unmarshal(body, &uriOnly) != nil {
			return "", 0, errBadPARResponse
		}
		m.RequestURI, m.ExpiresIn = uriOnly.RequestURI, 0
	}
	if m.RequestURI == "" || len(m.RequestURI) > maxRequestURI || !printableASCII(m.RequestURI) {
		return "", 0, errBadPARResponse
	}
	var validFor time.Duration
	if m.ExpiresIn >= 1 && m.ExpiresIn <= 86400 {
		validFor = time.Duration(m.ExpiresIn) * time.Second
	}
	return m.RequestURI, validFor, nil
}
