package oauthtest

import (
	"net/http"
	"strings"
)

// Schemes of the Authorization header an API accepts
// (APIRequest.Scheme).
const (
	SchemeBearer = "Bearer" // RFC 6750
	SchemeDPoP   = "DPoP"   // RFC 9449 section 7.1
)

// credential returns the scheme (SchemeBearer or SchemeDPoP, whatever
// its case on the wire) and token of the Authorization header, or two
// empty strings.
func credential(r *http.Request) (scheme, tok string) {
	sch, t, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	t = strings.TrimSpace(t)
	if !ok || t == "" {
		return "", ""
	}
	switch {
	case strings.EqualFold(sch, SchemeBearer):
		return SchemeBearer, t
	case strings.EqualFold(sch, SchemeDPoP):
		return SchemeDPoP, t
	}
	return "", ""
}

// guard is what the DPoP checks of a protected resource decided about a
// request: nothing when DPoP is off, else the proof's key, the nonce to
// send, and the refusal if any.
type guard struct {
	mode  DPoPMode
	algs  string // space-separated, for the challenges' algs parameter
	jkt   string // thumbprint of the accepted proof's key
	nonce string // DPoP-Nonce to send ("" unless Config.DPoPNonceAPI)

	refused    bool
	outcome    string   // APIRequest.Outcome of the refusal
	errCode    string   // the error in the body
	challenges []string // WWW-Authenticate values
}

// challenge builds a WWW-Authenticate challenge of scheme with extra
// parameters (may be ""); a DPoP challenge names the accepted algorithms
// (RFC 9449 section 7.1).
func (g *guard) challenge(scheme, params string) string {
	c := scheme + ` realm="oauthtest"`
	if params != "" {
		c += ", " + params
	}
	if scheme == SchemeDPoP {
		c += `, algs="` + g.algs + `"`
	}
	return c
}

// missing are the challenges to a request without credentials: one per
// scheme the resource accepts.
func (g *guard) missing() []string {
	switch g.mode {
	case DPoPOptional:
		return []string{g.challenge(SchemeBearer, ""), g.challenge(SchemeDPoP, "")}
	case DPoPRequired:
		return []string{g.challenge(SchemeDPoP, "")}
	}
	return []string{g.challenge(SchemeBearer, "")}
}

func (g *guard) refuse(outcome, errCode string, challenges ...string) {
	g.refused, g.outcome, g.errCode, g.challenges = true, outcome, errCode, challenges
}

// resourceGuard applies the DPoP rules of a protected resource (an API,
// counted as endpoint, or userinfo) to a request presenting tok with
// scheme: the proof of the DPoP scheme (RFC 9449 section 7.1, with ath and
// the token's key), and the refusal of a DPoP-bound token shown as Bearer
// (section 7.2).
func (s *Server) resourceGuard(r *http.Request, endpoint, scheme, tok string) guard {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := guard{mode: s.cfg.DPoP, algs: strings.Join(s.cfg.DPoPSigningAlgs, " ")}
	if g.mode == DPoPOff {
		return g
	}
	if s.cfg.DPoPNonceAPI {
		g.nonce = s.nonceAPI
	}
	desc := func(d string) string { return `error_description="` + strings.ReplaceAll(d, `"`, `'`) + `"` }
	at := s.ats[tok]
	switch scheme {
	case SchemeDPoP:
		p, err := s.checkProof(proofCheck{r: r, nonce: g.nonce, token: tok, useATH: true})
		if err != nil && err.nonce {
			s.stats.DPoPNonceChallenges[endpoint]++
			g.refuse(OutcomeDPoPNonce, "use_dpop_nonce",
				g.challenge(SchemeDPoP, `error="use_dpop_nonce", `+desc("Resource server requires nonce in DPoP proof")))
			return g
		}
		if err != nil {
			s.stats.DPoPRefusals[endpoint+":"+err.reason]++
			g.refuse(OutcomeInvalidDPoPProof, "invalid_dpop_proof",
				g.challenge(SchemeDPoP, `error="invalid_dpop_proof", `+desc(err.desc)))
			return g
		}
		g.jkt = p.jkt
		s.lastProof[endpoint] = p.raw
		if at != nil && at.jkt != p.jkt {
			d := "Invalid DPoP key binding"
			if at.jkt == "" {
				// The scheme promises a proven key; granting access
				// would tell the client so while nothing was bound.
				d = "access token is not DPoP-bound"
			}
			s.stats.DPoPRefusals[endpoint+":"+DPoPRefusedKey]++
			g.refuse(OutcomeDPoPKeyMismatch, "invalid_token", g.challenge(SchemeDPoP, `error="invalid_token", `+desc(d)))
			return g
		}
		s.stats.DPoPProofs[endpoint]++
	case SchemeBearer:
		if g.mode == DPoPRequired {
			s.stats.DPoPRefusals[endpoint+":"+DPoPRefusedBearer]++
			g.refuse(OutcomeDPoPRequired, "invalid_token",
				g.challenge(SchemeDPoP, `error="invalid_token", `+desc("DPoP required")))
			return g
		}
		if at != nil && at.jkt != "" {
			// RFC 9449 section 7.2: the token is refused per RFC 6750, so
			// the error goes in the Bearer challenge of the scheme used;
			// the DPoP challenge tells the client how to present it.
			s.stats.DPoPRefusals[endpoint+":"+DPoPRefusedDowngrade]++
			g.refuse(OutcomeDPoPDowngrade, "invalid_token",
				g.challenge(SchemeBearer, `error="invalid_token", `+desc("DPoP-bound access token presented as a Bearer token")),
				g.challenge(SchemeDPoP, ""))
			return g
		}
	}
	return g
}
