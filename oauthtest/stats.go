package oauthtest

import (
	"maps"
	"slices"
	"time"
)

// Stats is a snapshot of the server's counters.
type Stats struct {
	// Requests counts requests per endpoint name (EndpointToken, ...),
	// including those answered by a fault.
	Requests map[string]int
	// Grants counts token endpoint requests per grant_type as sent.
	Grants map[string]int
	// Discovery counts requests per discovery path
	// (oauthwire.WellKnownOAuth, oauthwire.WellKnownOpenID), including
	// those answered 404 or by a fault.
	Discovery map[string]int
	// TokenPosts counts POST requests to the token endpoint.
	TokenPosts int
	// AccessTokensIssued and RefreshTokensIssued count minted tokens.
	AccessTokensIssued, RefreshTokensIssued int
	// RefreshTokensPresented counts refresh_token grant requests that
	// carried a refresh token (also when a fault answered them).
	RefreshTokensPresented int
	// RefreshTokensPresentedTwice counts distinct refresh tokens that were
	// presented more than once. With rotation on, anything but 0 means a
	// client replayed a refresh token.
	RefreshTokensPresentedTwice int
	// ReuseDetections counts presentations of an already-rotated refresh
	// token outside the grace window that revoked a live family. Once the
	// family is revoked, further replays are answered "revoked" and not
	// counted here: count RefreshPresentations (or
	// RefreshTokensPresentedTwice) to see every replay.
	ReuseDetections int
	// GraceReuses counts reuses accepted inside Config.ReuseGrace.
	GraceReuses int
	// FamilyRevocations counts token families revoked (reuse detection,
	// code replay, revocation of a refresh token, RevokeToken).
	FamilyRevocations int
	// Revocations counts requests to the revocation endpoint that revoked
	// a token.
	Revocations int
	// CodeExchanges counts successful authorization code exchanges;
	// CodeReuses counts attempts to use a code a second time.
	CodeExchanges, CodeReuses int
	// PKCEFailures counts code exchanges rejected for a missing or wrong
	// code_verifier.
	PKCEFailures int
	// DevicePolls counts device_code token requests; SlowDowns those
	// answered slow_down.
	DevicePolls, SlowDowns int
	// ClientAuthFailures counts requests rejected with invalid_client.
	ClientAuthFailures int
	// Faults counts injected faults that fired, by kind.
	Faults map[FaultKind]int
}

func (st *Stats) init() {
	st.Requests = map[string]int{}
	st.Grants = map[string]int{}
	st.Discovery = map[string]int{}
	st.Faults = map[FaultKind]int{}
}

func (st Stats) clone() Stats {
	st.Requests = maps.Clone(st.Requests)
	st.Grants = maps.Clone(st.Grants)
	st.Discovery = maps.Clone(st.Discovery)
	st.Faults = maps.Clone(st.Faults)
	return st
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.stats.clone()
}

// ResetStats zeroes the counters and forgets the refresh token
// presentations (issued tokens stay valid).
func (s *Server) ResetStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats = Stats{}
	s.stats.init()
	s.presented = nil
	s.rtSeen = map[string]int{}
}

// Presentation is one refresh token presented at the token endpoint.
type Presentation struct {
	// Token is the refresh token as presented.
	Token string
	// At is the server's clock when it arrived.
	At time.Time
	// Outcome is what the server did: "rotated", "accepted" (no rotation),
	// "grace", "reuse-detected", "invalid", "expired", "revoked",
	// "wrong-client", "invalid-scope", "invalid-target", or "fault:<kind>"
	// when an injected fault answered before processing.
	Outcome string
}

// RefreshPresentations returns every refresh token presentation in order.
func (s *Server) RefreshPresentations() []Presentation {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.presented)
}

// present records a presentation. The caller holds s.mu.
func (s *Server) present(tok, outcome string) {
	if tok == "" {
		return
	}
	s.presented = append(s.presented, Presentation{Token: tok, At: s.now(), Outcome: outcome})
	s.stats.RefreshTokensPresented++
	s.rtSeen[tok]++
	if s.rtSeen[tok] == 2 {
		s.stats.RefreshTokensPresentedTwice++
	}
}
