package oauthtest

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/url"
	"time"
)

// RequestURIPrefix starts every request_uri the pushed authorization
// request endpoint hands out (RFC 9126 section 2.2).
const RequestURIPrefix = "urn:ietf:params:oauth:request_uri:"

// pushedRequest is an authorization request pushed to the PAR endpoint,
// waiting for the browser to name it at the authorization endpoint.
type pushedRequest struct {
	clientID string
	params   url.Values // without the client's credentials
	expiry   time.Time
}

// clientAuthParams are the form parameters that authenticate a client:
// dropped from a pushed request, whose parameters the authorization
// endpoint acts on later, so that no credential is kept with them.
var clientAuthParams = []string{"client_secret", "client_assertion", "client_assertion_type"}

// par serves the pushed authorization request endpoint (RFC 9126): it
// authenticates the client as the token endpoint does, checks the
// authorization parameters as the authorization endpoint would, and
// answers 201 with a request_uri that the authorization endpoint accepts
// once, until it expires (Config.PARLifetime).
func (s *Server) par(r *http.Request) *reply {
	if r.Method != http.MethodPost {
		return postRequired()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.withASNonce(s.pushRequest(r))
}

// pushRequest serves a pushed authorization request. The caller holds
// s.mu.
func (s *Server) pushRequest(r *http.Request) *reply {
	proof, errRep := s.asProof(r, EndpointPAR)
	if errRep != nil {
		return errRep
	}
	c, errRep := s.authenticate(r)
	if errRep != nil {
		return errRep
	}
	q := r.PostForm
	if _, ok := q["request_uri"]; ok {
		// RFC 9126 section 2.1: a pushed request never names another.
		return oauthError(http.StatusBadRequest, "invalid_request", "request_uri is not allowed in a pushed authorization request")
	}
	if _, msg := redirectTarget(c, q.Get("redirect_uri")); msg != "" {
		return oauthError(http.StatusBadRequest, "invalid_request", msg)
	}
	if code, desc := s.checkAuthRequest(c, q); code != "" {
		return oauthError(http.StatusBadRequest, code, desc)
	}
	params := make(url.Values, len(q))
	for k, vs := range q {
		params[k] = append([]string(nil), vs...)
	}
	for _, k := range clientAuthParams {
		delete(params, k)
	}
	if proof != nil {
		// RFC 9449 section 10.1: a proof at the PAR endpoint binds the
		// code as dpop_jkt does, and both must then name the same key.
		if j, ok := params["dpop_jkt"]; ok && j[0] != proof.jkt {
			return s.dpopRefusal(EndpointPAR, DPoPRefusedKey, "invalid_dpop_proof", "dpop_jkt does not match the DPoP proof's key")
		}
		params.Set("dpop_jkt", proof.jkt)
	}
	params.Set("client_id", c.ID)
	var b [16]byte
	rand.Read(b[:])
	uri := RequestURIPrefix + hex.EncodeToString(b[:])
	s.pushed[uri] = &pushedRequest{clientID: c.ID, params: params, expiry: s.now().Add(s.cfg.PARLifetime)}
	s.stats.PushedRequests++
	rep := jsonReply(http.StatusCreated, map[string]any{
		"request_uri": uri,
		"expires_in":  int64(s.cfg.PARLifetime / time.Second),
	})
	rep.header.Set("Cache-Control", "no-store")
	return rep
}

// takePushed returns the parameters of the pushed request uri, made by
// client clientID, and forgets it: a request_uri serves one authorization
// request. The message says why there is none (unknown, another client's,
// expired or used). The caller holds s.mu.
func (s *Server) takePushed(clientID, uri string) (url.Values, string) {
	p := s.pushed[uri]
	switch {
	case p == nil:
		return nil, "unknown, used or expired request_uri"
	case p.clientID != clientID:
		return nil, "request_uri was pushed by another client"
	}
	delete(s.pushed, uri)
	if !s.now().Before(p.expiry) {
		return nil, "unknown, used or expired request_uri"
	}
	return p.params, ""
}

// PARURL returns the pushed authorization request endpoint URL (RFC 9126).
func (s *Server) PARURL() string { return s.issuer + PathPAR }
