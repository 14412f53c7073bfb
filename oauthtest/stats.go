package oauthtest

import (
	"maps"
	"slices"
	"time"
)

// Stats is a snapshot of the server's counters (Server.Stats). Mint,
// Introspect and the other methods of Server are not requests and count
// nowhere.
type Stats struct {
	// Requests counts requests per endpoint name (EndpointToken, ...),
	// including those answered by a fault.
	Requests map[string]int
	// Grants counts token endpoint requests per grant_type as sent.
	Grants map[string]int
	// Discovery counts requests per discovery path (PathOAuthDiscovery,
	// PathOpenIDDiscovery), including those answered 404 or by a fault.
	Discovery map[string]int
	// TokenPosts counts POST requests to the token endpoint.
	TokenPosts int
	// AccessTokensIssued and RefreshTokensIssued count minted tokens.
	AccessTokensIssued, RefreshTokensIssued int
	// RefreshTokensPresented counts refresh_token grant requests that
	// carried a refresh token (also when a fault answered them): one per
	// entry of Server.RefreshPresentations.
	RefreshTokensPresented int
	// RefreshTokensPresentedTwice counts distinct refresh tokens that were
	// presented more than once. With rotation on, anything but 0 means a
	// client replayed a refresh token. Presentations answered
	// use_dpop_nonce (RefreshDPoPNonce) are not counted here: the client
	// must send the same token again with the nonce.
	RefreshTokensPresentedTwice int
	// ReuseDetections counts presentations of an already-rotated refresh
	// token outside the grace window that revoked a live family. Once the
	// family is revoked, further replays are answered RefreshRevoked and
	// not counted here: see RefreshPresentations (or
	// RefreshTokensPresentedTwice) for every replay.
	ReuseDetections int
	// GraceReuses counts reuses accepted inside Config.ReuseGrace.
	GraceReuses int
	// FamilyRevocations counts token families revoked (reuse detection,
	// code replay, revocation of a refresh token, Server.RevokeToken). A
	// family is every token that descends from one login or grant.
	FamilyRevocations int
	// Revocations counts requests to the revocation endpoint that revoked
	// a token (requests for unknown tokens are answered 200 too, but not
	// counted).
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
	// PushedRequests counts authorization requests the pushed authorization
	// request endpoint accepted (RFC 9126); Requests[EndpointPAR] counts
	// every request to it.
	PushedRequests int
	// ClientAuthFailures counts requests rejected with invalid_client.
	ClientAuthFailures int
	// Faults counts injected faults that fired, by kind (a request that
	// met a delay and then an error counts under both).
	Faults map[FaultKind]int
	// DPoPProofs counts DPoP proofs accepted, by endpoint name
	// (EndpointToken, EndpointPAR, EndpointUserinfo, EndpointAPI).
	DPoPProofs map[string]int
	// DPoPRefusals counts DPoP refusals by endpoint and reason, joined by
	// a colon ("token:htu", "api:downgrade"; reasons are the
	// DPoPRefused... constants). A proof that only lacks the current
	// nonce is not a refusal: it counts in DPoPNonceChallenges.
	DPoPRefusals map[string]int
	// DPoPNonceChallenges counts use_dpop_nonce answers, by endpoint name.
	DPoPNonceChallenges map[string]int
}

func (st *Stats) init() {
	st.Requests = map[string]int{}
	st.Grants = map[string]int{}
	st.Discovery = map[string]int{}
	st.Faults = map[FaultKind]int{}
	st.DPoPProofs = map[string]int{}
	st.DPoPRefusals = map[string]int{}
	st.DPoPNonceChallenges = map[string]int{}
}

func (st Stats) clone() Stats {
	st.Requests = maps.Clone(st.Requests)
	st.Grants = maps.Clone(st.Grants)
	st.Discovery = maps.Clone(st.Discovery)
	st.Faults = maps.Clone(st.Faults)
	st.DPoPProofs = maps.Clone(st.DPoPProofs)
	st.DPoPRefusals = maps.Clone(st.DPoPRefusals)
	st.DPoPNonceChallenges = maps.Clone(st.DPoPNonceChallenges)
	return st
}

// Stats returns a snapshot of the counters; the maps are the caller's.
func (s *Server) Stats() Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.stats.clone()
}

// ResetStats zeroes the counters and forgets the refresh token
// presentations, for example after a test's setup. Issued tokens stay
// valid, and a refresh token presented before the reset and again after
// it does not count in RefreshTokensPresentedTwice.
func (s *Server) ResetStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats = Stats{}
	s.stats.init()
	s.presented = nil
	s.received = nil
	s.rtSeen = map[string]int{}
}

// Outcomes of a refresh token presentation (Presentation.Outcome).
const (
	RefreshRotated            = "rotated"             // accepted; a new refresh token replaces it
	RefreshAccepted           = "accepted"            // accepted, not rotated (Config.DisableRotation)
	RefreshGrace              = "grace"               // reused within Config.ReuseGrace, accepted
	RefreshReuseDetected      = "reuse-detected"      // reused: its family is now revoked
	RefreshReused             = "reused"              // reused, refused (Config.DisableReuseDetection)
	RefreshInvalid            = "invalid"             // not a refresh token this server issued
	RefreshExpired            = "expired"             // expired by the server's clock
	RefreshRevoked            = "revoked"             // revoked, itself or its family
	RefreshWrongClient        = "wrong-client"        // issued to another client
	RefreshInvalidScope       = "invalid-scope"       // asked for more scope than the grant has
	RefreshInvalidTarget      = "invalid-target"      // asked for a resource the grant lacks
	RefreshUnauthorizedClient = "unauthorized-client" // the client may not use the refresh grant
	RefreshClientAuthFailed   = "client-auth-failed"  // the client failed to authenticate
	RefreshDPoPInvalid        = "dpop-invalid"        // its DPoP proof was refused (or missing where required)
	RefreshDPoPNonce          = "dpop-nonce"          // answered use_dpop_nonce; the client retries with the same token
	RefreshDPoPKeyMismatch    = "dpop-key-mismatch"   // bound to a DPoP key the request did not prove
	// RefreshFaultPrefix starts the outcome of a presentation that an
	// injected fault answered before processing: "fault:" followed by
	// the FaultKind ("fault:unavailable"). A fault that answers after
	// processing (FaultResponseLost) leaves the real outcome.
	RefreshFaultPrefix = "fault:"
)

// Presentation is one refresh token presented at the token endpoint
// (Server.RefreshPresentations). Its Token is there for tests to compare;
// printing a Presentation (fmt, log/slog) shows it only as [REDACTED].
type Presentation struct {
	// Token is the refresh token as presented.
	Token string
	// At is the server's clock when it arrived.
	At time.Time
	// Outcome is what the server did with it: RefreshRotated, ...
	Outcome string
}

// RefreshPresentations returns every refresh token presentation since
// the server started (or since ResetStats), in order of arrival.
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
	if outcome == RefreshDPoPNonce {
		// RFC 9449 section 8 makes the client send the same request
		// again with the nonce: that is no replay.
		return
	}
	s.rtSeen[tok]++
	if s.rtSeen[tok] == 2 {
		s.stats.RefreshTokensPresentedTwice++
	}
}
