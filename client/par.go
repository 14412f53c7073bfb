package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"

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
func (c *Client) authRequestURL(ctx context.Context, q url.Values) (string, error) {
	par, err := c.usePAR()
	if err != nil {
		return "", err
	}
	if !par {
		return authorizationURL(c.endpoints.AuthURL, q)
	}
	uri, err := c.pushAuthRequest(ctx, q)
	if err != nil {
		return "", err
	}
	return authorizationURL(c.endpoints.AuthURL, url.Values{"client_id": {c.cfg.ClientID}, "request_uri": {uri}})
}

// pushAuthRequest posts the authorization parameters q to the PAR
// endpoint with the client authentication of the token endpoint and
// returns the request_uri of the answer. The push carries no single-use
// credential (the PKCE verifier stays here; the state and challenge are
// fresh for this login), so it is retried like the other replay-safe
// requests.
func (g *grant) pushAuthRequest(ctx context.Context, q url.Values) (string, error) {
	endpoint := g.endpoints.PARURL
	resp, err := g.ep.post(ctx, endpoint, q, g.authFor(endpoint), replaySafe)
	if err != nil {
		return "", inOp(opPAR, err)
	}
	if resp.status < 200 || resp.status > 299 {
		return "", g.classifyAuthz(opPAR, endpoint, resp.status, oauthwire.ParseErrorResponse(resp.status, resp.header, resp.body))
	}
	uri, err := parseRequestURI(resp.body)
	if err != nil {
		return "", &EndpointError{Op: opPAR, Endpoint: redact.URLString(endpoint), Status: resp.status, Err: badResponse(err)}
	}
	return uri, nil
}

// errBadPARResponse: the PAR endpoint's success answer has no usable
// request_uri. The message never quotes the answer: a request_uri
// stands for the pushed request until it is used.
var errBadPARResponse = errors.New("the answer holds no usable request_uri (a JSON object with a request_uri string of printable characters is required)")

// parseRequestURI reads the request_uri of a PAR endpoint's success answer
// (RFC 9126 section 2.2). expires_in is not needed: the browser is sent at
// once, and an expired request_uri is the server's to refuse.
func parseRequestURI(body []byte) (string, error) {
	var m struct {
		RequestURI string `json:"request_uri"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return "", errBadPARResponse
	}
	if m.RequestURI == "" || len(m.RequestURI) > maxRequestURI || !printableASCII(m.RequestURI) {
		return "", errBadPARResponse
	}
	return m.RequestURI, nil
}
