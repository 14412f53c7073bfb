package oauthtest

import "net/http"

// asProof checks the DPoP proof of a request to the token or PAR
// endpoint. It returns no proof and no error when DPoP is off, or when
// the request has none and none is required. The caller holds s.mu.
func (s *Server) asProof(r *http.Request, endpoint string) (*dpopProof, *reply) {
	if s.cfg.DPoP == DPoPOff {
		return nil, nil
	}
	if len(r.Header.Values("DPoP")) == 0 && (s.cfg.DPoP == DPoPOptional || endpoint == EndpointPAR) {
		// A pushed request may name its key with dpop_jkt instead
		// (RFC 9449 section 10.1); the code exchange needs the proof.
		return nil, nil
	}
	nonce := ""
	if s.cfg.DPoPNonceAS {
		nonce = s.nonceAS
	}
	p, err := s.checkProof(proofCheck{r: r, nonce: nonce})
	if err != nil {
		if err.nonce {
			s.stats.DPoPNonceChallenges[endpoint]++
			rep := oauthError(http.StatusBadRequest, "use_dpop_nonce", "Authorization server requires nonce in DPoP proof")
			rep.header.Set("DPoP-Nonce", s.nonceAS)
			return nil, rep
		}
		return nil, s.dpopRefusal(endpoint, err.reason, "invalid_dpop_proof", err.desc)
	}
	s.stats.DPoPProofs[endpoint]++
	s.lastProof[endpoint] = p.raw
	return p, nil
}

// dpopRefusal counts a refusal and answers it with an OAuth error. The
// caller holds s.mu.
func (s *Server) dpopRefusal(endpoint, reason, code, desc string) *reply {
	s.stats.DPoPRefusals[endpoint+":"+reason]++
	return oauthError(http.StatusBadRequest, code, desc)
}

// withASNonce adds the current nonce to a reply of the token or PAR
// endpoint when nonces are on, so that a client learns a new one from any
// answer (RFC 9449 section 8.2). The caller holds s.mu.
func (s *Server) withASNonce(rep *reply) *reply {
	if rep != nil && s.cfg.DPoP != DPoPOff && s.cfg.DPoPNonceAS {
		rep.header.Set("DPoP-Nonce", s.nonceAS)
	}
	return rep
}

// refreshJKT is the key a refresh token issued to c with a proof of key
// jkt is bound to: only public clients' are (RFC 9449 section 5), since a
// confidential client's refresh tokens are bound to its credentials
// already. The caller holds s.mu.
func (s *Server) refreshJKT(c *Client, jkt string) string {
	if c == nil || c.method() != AuthNone {
		return ""
	}
	return jkt
}

// proofJKT is the thumbprint of p, "" for no proof.
func proofJKT(p *dpopProof) string {
	if p == nil {
		return ""
	}
	return p.jkt
}

// RotateDPoPNonce replaces the DPoP nonces of the token endpoint and of
// the APIs with fresh ones: proofs carrying the old ones are answered
// use_dpop_nonce with the new value, as when a real server's nonce
// expires.
func (s *Server) RotateDPoPNonce() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nonceAS, s.nonceAPI = randomB64(18), randomB64(18)
}

// DPoPNonces returns the current DPoP nonces of the authorization server
// (token and PAR endpoints) and of the APIs (and userinfo), for tests
// that build proofs without a round trip first. They are demanded only
// with Config.DPoPNonceAS and Config.DPoPNonceAPI.
func (s *Server) DPoPNonces() (authServer, api string) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.nonceAS, s.nonceAPI
}

// LastDPoPProof returns the last DPoP proof endpoint (EndpointToken,
// EndpointPAR, EndpointUserinfo, EndpointAPI) accepted, "" when none: a
// test can send it again to prove that the server refuses a replay, or
// decode it to see what a client signed.
func (s *Server) LastDPoPProof(endpoint string) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.lastProof[endpoint]
}
