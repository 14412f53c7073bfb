package oauthtest

import "net/http"

// revoke serves RFC 7009: 200 for known and unknown tokens alike;
// revoking a refresh token revokes its family. token_type_hint is only a
// hint. A token of another client is left alone (and still answered 200).
func (s *Server) revoke(r *http.Request) *reply {
	if r.Method != http.MethodPost {
		return postRequired()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, errRep := s.authenticate(r)
	if errRep != nil {
		return errRep
	}
	tok := r.PostForm.Get("token")
	if tok == "" {
		return oauthError(http.StatusBadRequest, "invalid_request", "token missing")
	}
	owner := ""
	if at, ok := s.ats[tok]; ok {
		if s.cfg.RefuseAccessTokenRevocation {
			return oauthError(http.StatusBadRequest, "unsupported_token_type", "access tokens are not revocable")
		}
		owner = at.clientID
	} else if rt, ok := s.rts[tok]; ok {
		owner = rt.fam.clientID
	}
	if owner == c.ID && s.revokeLocked(tok) {
		s.stats.Revocations++
	}
	return &reply{status: http.StatusOK, header: http.Header{"Cache-Control": {"no-store"}}}
}
