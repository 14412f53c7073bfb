package oauthtest

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"slices"
	"strings"
)

// token serves the token endpoint.
func (s *Server) token(r *http.Request) *reply {
	if r.Method != http.MethodPost {
		return postRequired()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	grant := r.PostForm.Get("grant_type")
	proof, errRep := s.asProof(r, EndpointToken)
	if errRep != nil {
		// The refresh token went over the wire all the same.
		outcome := RefreshDPoPInvalid
		if errRep.header.Get("DPoP-Nonce") != "" {
			outcome = RefreshDPoPNonce
		}
		if grant == GrantRefreshToken {
			s.present(r.PostForm.Get("refresh_token"), outcome)
		}
		return s.withASNonce(errRep)
	}
	return s.withASNonce(s.grant(r, grant, proofJKT(proof)))
}

// grant serves a token request whose DPoP proof, if any, was accepted:
// jkt is its key's thumbprint ("" without one). The caller holds s.mu.
func (s *Server) grant(r *http.Request, grant, jkt string) *reply {
	if grant == GrantRefreshToken {
		// Authentication failures still count as a presentation: the
		// refresh token went over the wire.
		c, errRep := s.authenticate(r)
		if errRep != nil {
			s.present(r.PostForm.Get("refresh_token"), RefreshClientAuthFailed)
			return errRep
		}
		return s.refreshGrant(r, c, jkt)
	}
	c, errRep := s.authenticate(r)
	if errRep != nil {
		return errRep
	}
	if grant == "" {
		return oauthError(http.StatusBadRequest, "invalid_request", "grant_type missing")
	}
	if !c.allowsGrant(grant) {
		return oauthError(http.StatusBadRequest, "unauthorized_client", "grant not allowed for this client")
	}
	switch grant {
	case GrantClientCredentials:
		return s.clientCredentialsGrant(r, c, jkt)
	case GrantAuthorizationCode:
		return s.codeGrant(r, c, jkt)
	case GrantDeviceCode:
		return s.deviceGrant(r, c, jkt)
	}
	return oauthError(http.StatusBadRequest, "unsupported_grant_type", "")
}

func (s *Server) clientCredentialsGrant(r *http.Request, c *Client, jkt string) *reply {
	scope := r.PostForm.Get("scope")
	if scope == "" {
		scope = strings.Join(c.Scopes, " ")
	} else if !scopeSubset(scope, c.Scopes) {
		return oauthError(http.StatusBadRequest, "invalid_scope", "scope not allowed for this client")
	}
	aud, errRep := s.audience(r.PostForm["resource"], nil)
	if errRep != nil {
		return errRep
	}
	at := s.mintAccess(c.ID, c.ID, scope, aud, nil, jkt)
	return s.tokenReply(at, nil, "")
}

func (s *Server) codeGrant(r *http.Request, c *Client, jkt string) *reply {
	code := s.codes[r.PostForm.Get("code")]
	now := s.now()
	switch {
	case code == nil:
		return oauthError(http.StatusBadRequest, "invalid_grant", "unknown authorization code")
	case code.clientID != c.ID:
		return oauthError(http.StatusBadRequest, "invalid_grant", "code was issued to another client")
	case code.used:
		// RFC 6749 section 4.1.2: revoke what the code produced.
		s.stats.CodeReuses++
		s.revokeFamily(code.fam)
		return oauthError(http.StatusBadRequest, "invalid_grant", "authorization code already used")
	case !now.Before(code.expiry):
		return oauthError(http.StatusBadRequest, "invalid_grant", "authorization code expired")
	case code.redirectURI != "" && r.PostForm.Get("redirect_uri") != code.redirectURI:
		return oauthError(http.StatusBadRequest, "invalid_grant", "redirect_uri does not match the authorization request")
	case code.dpopJKT != "" && jkt != code.dpopJKT:
		// RFC 9449 section 10: the code names the key that may redeem
		// it, so a stolen code is of no use with another key. The code
		// stays usable by its owner.
		return s.dpopRefusal(EndpointToken, DPoPRefusedKey, "invalid_grant", "authorization code is bound to another DPoP key (dpop_jkt)")
	}
	verifier := r.PostForm.Get("code_verifier")
	if !validVerifier(verifier) {
		s.stats.PKCEFailures++
		return oauthError(http.StatusBadRequest, "invalid_grant", "code_verifier missing or malformed")
	}
	sum := sha256.Sum256([]byte(verifier))
	if subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(code.challenge)) != 1 {
		s.stats.PKCEFailures++
		return oauthError(http.StatusBadRequest, "invalid_grant", "code_verifier does not match the code_challenge")
	}
	code.used = true
	fam := s.newFamily(c.ID, code.subject, code.scope, code.resources, code.nonce)
	aud, errRep := s.audience(r.PostForm["resource"], fam)
	if errRep != nil {
		return errRep
	}
	code.fam = fam
	s.stats.CodeExchanges++
	return s.issueForFamily(fam, aud, c, jkt)
}

// issueForFamily mints an access token, a refresh token and maybe an ID
// token for a new grant of client c, bound to the DPoP key jkt when it is
// not "". The caller holds s.mu.
func (s *Server) issueForFamily(fam *family, aud string, c *Client, jkt string) *reply {
	at := s.mintAccess(fam.clientID, fam.subject, fam.scope, aud, fam, jkt)
	rt := s.mintRefresh(fam, s.refreshJKT(c, jkt))
	return s.tokenReply(at, rt, s.mintIDToken(fam))
}

func (s *Server) refreshGrant(r *http.Request, c *Client, jkt string) *reply {
	presented := r.PostForm.Get("refresh_token")
	if !c.allowsGrant(GrantRefreshToken) {
		s.present(presented, RefreshUnauthorizedClient)
		return oauthError(http.StatusBadRequest, "unauthorized_client", "grant not allowed for this client")
	}
	if presented == "" {
		return oauthError(http.StatusBadRequest, "invalid_request", "refresh_token missing")
	}
	rt := s.rts[presented]
	now := s.now()
	invalid := func(outcome, desc string) *reply {
		s.present(presented, outcome)
		return oauthError(http.StatusBadRequest, "invalid_grant", desc)
	}
	switch {
	case rt == nil:
		return invalid(RefreshInvalid, "unknown refresh token")
	case rt.fam.clientID != c.ID:
		return invalid(RefreshWrongClient, "refresh token was issued to another client")
	case rt.revoked || rt.fam.revoked:
		return invalid(RefreshRevoked, "refresh token revoked")
	case !rt.expiry.IsZero() && !now.Before(rt.expiry):
		return invalid(RefreshExpired, "refresh token expired")
	case rt.jkt != "" && jkt != rt.jkt:
		// RFC 9449 section 5: a public client's refresh token is bound
		// to its DPoP key. Checked before reuse detection, so that a
		// thief without the key cannot even revoke the family.
		s.stats.DPoPRefusals[EndpointToken+":"+DPoPRefusedKey]++
		return invalid(RefreshDPoPKeyMismatch, "refresh token is bound to another DPoP key")
	}
	fam := rt.fam
	outcome := RefreshAccepted
	if !s.cfg.DisableRotation {
		outcome = RefreshRotated
		if rt.used {
			if s.cfg.ReuseGrace > 0 && now.Sub(rt.usedAt) <= s.cfg.ReuseGrace {
				outcome = RefreshGrace
			} else {
				if s.cfg.DisableReuseDetection {
					return invalid(RefreshReused, "refresh token already used")
				}
				s.stats.ReuseDetections++
				s.revokeFamily(fam)
				return invalid(RefreshReuseDetected, "refresh token reuse detected; token family revoked")
			}
		}
	}
	scope := fam.scope
	if req := r.PostForm.Get("scope"); req != "" {
		if !scopeSubset(req, strings.Fields(fam.scope)) {
			s.present(presented, RefreshInvalidScope)
			return oauthError(http.StatusBadRequest, "invalid_scope", "scope exceeds the original grant")
		}
		scope = req
	}
	aud, errRep := s.audience(r.PostForm["resource"], fam)
	if errRep != nil {
		s.present(presented, RefreshInvalidTarget)
		return errRep
	}
	s.present(presented, outcome)
	if outcome == RefreshGrace {
		s.stats.GraceReuses++
	}
	at := s.mintAccess(fam.clientID, fam.subject, scope, aud, fam, jkt)
	var next *refreshToken
	switch {
	case !s.cfg.DisableRotation:
		if !rt.used {
			rt.used, rt.usedAt = true, now
		}
		next = s.mintRefresh(fam, s.refreshJKT(c, jkt))
	case s.cfg.EchoRefreshToken:
		next = rt
	}
	return s.tokenReply(at, next, s.mintIDToken(fam))
}

// audience picks the audience of an access token from the request's
// resource parameters (RFC 8707) and the grant's resources. The caller
// holds s.mu.
func (s *Server) audience(req []string, fam *family) (string, *reply) {
	if len(req) > 1 {
		return "", oauthError(http.StatusBadRequest, "invalid_target", "one resource per access token")
	}
	if len(req) == 1 {
		res := req[0]
		switch {
		case !validResource(res):
			return "", oauthError(http.StatusBadRequest, "invalid_target", "resource is not an absolute URI")
		case fam != nil && len(fam.resources) > 0 && !slices.Contains(fam.resources, res):
			return "", oauthError(http.StatusBadRequest, "invalid_target", "resource not part of the grant")
		case !s.resourceAllowed(res):
			return "", oauthError(http.StatusBadRequest, "invalid_target", "unknown resource")
		}
		return res, nil
	}
	if fam != nil && len(fam.resources) == 1 {
		return fam.resources[0], nil
	}
	if s.cfg.DefaultResource != "" {
		return s.cfg.DefaultResource, nil
	}
	return s.defaultAud, nil
}

// resourceAllowed: any absolute URI when Config.Resources is empty, else
// one of them or an API's. The caller holds s.mu.
func (s *Server) resourceAllowed(res string) bool {
	if len(s.cfg.Resources) == 0 || slices.Contains(s.cfg.Resources, res) {
		return true
	}
	for _, a := range s.apis {
		if a.resource == res {
			return true
		}
	}
	return false
}

// scopeSubset reports whether every scope in req is allowed (an empty
// allowed list allows everything).
func scopeSubset(req string, allowed []string) bool {
	if len(allowed) == 0 {
		return true
	}
	for _, sc := range strings.Fields(req) {
		if !slices.Contains(allowed, sc) {
			return false
		}
	}
	return true
}

// validVerifier: 43 to 128 unreserved characters (RFC 7636 section 4.1).
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}
