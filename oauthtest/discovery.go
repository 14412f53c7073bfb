package oauthtest

import (
	"net/http"
	"slices"
)

// discovery serves the RFC 8414 / OpenID Connect discovery document (the
// same one at both well-known paths, or only at the OpenID Connect one with
// Config.OIDCDiscoveryOnly).
func (s *Server) discovery(r *http.Request) *reply {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return textReply(http.StatusMethodNotAllowed, "text/plain; charset=utf-8", "method not allowed\n")
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.cfg.OIDCDiscoveryOnly && r.URL.Path == PathOAuthDiscovery {
		return textReply(http.StatusNotFound, "text/plain; charset=utf-8", "404 page not found\n")
	}
	iss := s.issuer
	if s.cfg.DiscoveryIssuer != "" {
		iss = s.cfg.DiscoveryIssuer
	}
	enabled := func(name string) bool { return !slices.Contains(s.cfg.DisabledEndpoints, name) }
	doc := map[string]any{
		"issuer":                                           iss,
		"response_types_supported":                         []string{"code"},
		"code_challenge_methods_supported":                 []string{"S256"},
		"subject_types_supported":                          []string{"public"},
		"id_token_signing_alg_values_supported":            []string{"none"},
		"token_endpoint_auth_signing_alg_values_supported": []string{"RS256", "ES256", "ES384", "ES512"},
		"authorization_response_iss_parameter_supported":   !s.cfg.OmitCallbackIss,
	}
	grants := []string{GrantAuthorizationCode, GrantRefreshToken, GrantClientCredentials}
	if enabled(EndpointAuthorize) {
		doc["authorization_endpoint"] = s.issuer + PathAuthorize
	}
	if enabled(EndpointToken) {
		doc["token_endpoint"] = s.issuer + PathToken
	}
	if enabled(EndpointDeviceAuthorization) {
		doc["device_authorization_endpoint"] = s.issuer + PathDeviceAuthorization
		grants = append(grants, GrantDeviceCode)
	}
	if enabled(EndpointRevocation) {
		doc["revocation_endpoint"] = s.issuer + PathRevocation
	}
	if enabled(EndpointPAR) {
		doc["pushed_authorization_request_endpoint"] = s.issuer + PathPAR
	}
	if s.cfg.RequirePAR {
		doc["require_pushed_authorization_requests"] = true
	}
	if enabled(EndpointUserinfo) {
		doc["userinfo_endpoint"] = s.issuer + PathUserinfo
	}
	doc["grant_types_supported"] = grants
	if s.cfg.DPoP != DPoPOff {
		doc["dpop_signing_alg_values_supported"] = s.cfg.DPoPSigningAlgs
	}
	var methods []string
	for _, m := range []string{AuthNone, AuthClientSecretBasic, AuthClientSecretPost, AuthPrivateKeyJWT} {
		for _, c := range s.cfg.Clients {
			if c.method() == m {
				methods = append(methods, m)
				break
			}
		}
	}
	doc["token_endpoint_auth_methods_supported"] = methods
	var scopes []string
	for _, c := range s.cfg.Clients {
		for _, sc := range c.Scopes {
			if !slices.Contains(scopes, sc) {
				scopes = append(scopes, sc)
			}
		}
	}
	if len(scopes) > 0 {
		doc["scopes_supported"] = scopes
	}
	return jsonReply(http.StatusOK, doc)
}
