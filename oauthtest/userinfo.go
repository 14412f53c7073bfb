package oauthtest

import (
	"net/http"
	"strings"
)

// userinfo answers {"sub": ...} for a valid access token of any audience.
func (s *Server) userinfo(r *http.Request) *reply {
	tok, ok := bearer(r)
	s.mu.RLock()
	defer s.mu.RUnlock()
	at := s.ats[tok]
	if !ok || at == nil || at.revoked || (at.fam != nil && at.fam.revoked) || !s.now().Before(at.expiry) {
		rep := textReply(http.StatusUnauthorized, "application/json", `{"error":"invalid_token"}`)
		rep.header.Set("WWW-Authenticate", `Bearer realm="oauthtest", error="invalid_token"`)
		return rep
	}
	return jsonReply(http.StatusOK, map[string]string{"sub": at.subject})
}

// bearer extracts a Bearer credential (scheme case-insensitive).
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}
