package oauthtest

import (
	"net/http"
)

// userinfo answers {"sub": ...} for a valid access token of any audience,
// shown with the Bearer scheme or, when DPoP is on, with DPoP and a proof
// (the same rules as an API's).
func (s *Server) userinfo(r *http.Request) *reply {
	scheme, tok := credential(r)
	s.mu.RLock()
	if s.cfg.DPoP == DPoPOff && scheme != SchemeBearer {
		scheme, tok = "", ""
	}
	s.mu.RUnlock()
	g := s.resourceGuard(r, EndpointUserinfo, scheme, tok)
	switch {
	case tok == "" && g.mode == DPoPOff:
		g.refuse(OutcomeMissing, "invalid_token", g.challenge(SchemeBearer, `error="invalid_token"`))
	case tok == "":
		g.refuse(OutcomeMissing, "invalid_token", g.missing()...)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	at := s.ats[tok]
	if !g.refused && (at == nil || at.revoked || (at.fam != nil && at.fam.revoked) || !s.now().Before(at.expiry)) {
		g.refuse(OutcomeUnknown, "invalid_token", g.challenge(scheme, `error="invalid_token"`))
	}
	var rep *reply
	if g.refused {
		rep = textReply(http.StatusUnauthorized, "application/json", `{"error":"`+g.errCode+`"}`)
		for _, c := range g.challenges {
			rep.header.Add("WWW-Authenticate", c)
		}
	} else {
		rep = jsonReply(http.StatusOK, map[string]string{"sub": at.subject})
	}
	if g.nonce != "" {
		rep.header.Set("DPoP-Nonce", g.nonce)
	}
	return rep
}
