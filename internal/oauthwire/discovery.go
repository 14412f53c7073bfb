package oauthwire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/tokenward/tokenward/internal/redact"
	"github.com/tokenward/tokenward/internal/twerr"
)

// Well-known discovery paths.
const (
	// WellKnownOAuth is the RFC 8414 path, inserted between host and the
	// issuer's path.
	WellKnownOAuth = "/.well-known/oauth-authorization-server"
	// WellKnownOpenID is the OpenID Connect Discovery path, appended to the
	// issuer.
	WellKnownOpenID = "/.well-known/openid-configuration"
)

// Discovery is the part of an RFC 8414 / OpenID Connect discovery document
// tokenward uses. Endpoint fields are "" when the document does not have
// them; every non-empty one is an absolute http(s) URL without user info or
// fragment. List fields keep only the string elements the document had.
type Discovery struct {
	Issuer                      string
	AuthorizationEndpoint       string
	TokenEndpoint               string
	DeviceAuthorizationEndpoint string
	RevocationEndpoint          string
	UserinfoEndpoint            string
	JWKSURI                     string
	// PushedAuthorizationRequestEndpoint is the RFC 9126 endpoint, "" when
	// the server has none.
	PushedAuthorizationRequestEndpoint string

	TokenEndpointAuthMethodsSupported []string
	CodeChallengeMethodsSupported     []string
	GrantTypesSupported               []string
	ResponseTypesSupported            []string
	ScopesSupported                   []string
	// AuthorizationResponseIssParameterSupported: the server puts "iss" in
	// authorization responses (RFC 9207); the client must then check it.
	AuthorizationResponseIssParameterSupported bool
	// RequirePushedAuthorizationRequests: the server accepts authorization
	// requests only through its pushed authorization request endpoint
	// (RFC 9126 section 5).
	RequirePushedAuthorizationRequests bool
	// DPoPSigningAlgValuesSupported are the JWS algorithms the server
	// accepts for DPoP proofs (RFC 9449 section 5.1); empty when it did
	// not say.
	DPoPSigningAlgValuesSupported []string

	// Raw is the document as parsed (without a byte-order mark or
	// surrounding white space), for keeping it where ParseDiscovery can
	// read it again.
	Raw []byte
}

// SupportsAuthMethod reports whether the document lists the token endpoint
// authentication method. RFC 8414 says an absent list means
// client_secret_basic only.
func (d *Discovery) SupportsAuthMethod(method string) bool {
	if len(d.TokenEndpointAuthMethodsSupported) == 0 {
		return method == "client_secret_basic"
	}
	return slices.Contains(d.TokenEndpointAuthMethodsSupported, method)
}

// SupportsS256 reports whether the document lists the S256 PKCE method. An
// absent list says nothing; clients send S256 anyway.
func (d *Discovery) SupportsS256() bool {
	return slices.Contains(d.CodeChallengeMethodsSupported, "S256")
}

// SupportsGrant reports whether the grant type is listed. RFC 8414 says an
// absent list means authorization_code and implicit.
func (d *Discovery) SupportsGrant(grant string) bool {
	if len(d.GrantTypesSupported) == 0 {
		return grant == "authorization_code" || grant == "implicit"
	}
	return slices.Contains(d.GrantTypesSupported, grant)
}

// Endpoints returns the non-empty endpoint URLs by metadata name.
func (d *Discovery) Endpoints() map[string]string {
	out := map[string]string{}
	for name, v := range map[string]string{
		"authorization_endpoint":                d.AuthorizationEndpoint,
		"token_endpoint":                        d.TokenEndpoint,
		"device_authorization_endpoint":         d.DeviceAuthorizationEndpoint,
		"revocation_endpoint":                   d.RevocationEndpoint,
		"userinfo_endpoint":                     d.UserinfoEndpoint,
		"jwks_uri":                              d.JWKSURI,
		"pushed_authorization_request_endpoint": d.PushedAuthorizationRequestEndpoint,
	} {
		if v != "" {
			out[name] = v
		}
	}
	return out
}

// CheckSecure checks the issuer and every endpoint with CheckSecureURL.
func (d *Discovery) CheckSecure(allowLoopback bool) error {
	if err := CheckSecureURL(d.Issuer, allowLoopback); err != nil {
		return err
	}
	eps := d.Endpoints()
	for _, name := range slices.Sorted(maps.Keys(eps)) {
		if err := CheckSecureURL(eps[name], allowLoopback); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// ParseDiscovery parses a discovery document (RFC 8414 or OpenID Connect
// Discovery 1.0) fetched for wantIssuer. The document's issuer must equal
// wantIssuer exactly (no normalisation: a trailing slash matters), else the
// error wraps ErrIssuerMismatch. Every endpoint present must be an absolute
// http or https URL (ErrInvalidDiscovery otherwise); https is not enforced
// here, see CheckSecure. Unknown members and list elements of the wrong type
// are ignored.
func ParseDiscovery(body []byte, wantIssuer string) (*Discovery, error) {
	if len(body) > MaxBody {
		return nil, ErrBodyTooLarge
	}
	if wantIssuer == "" {
		return nil, fmt.Errorf("%w: no issuer to compare with", ErrIssuerMismatch)
	}
	trimmed := bytes.TrimSpace(bytes.TrimPrefix(body, []byte("\xef\xbb\xbf")))
	var m map[string]json.RawMessage
	if len(trimmed) == 0 || trimmed[0] != '{' || json.Unmarshal(trimmed, &m) != nil {
		return nil, fmt.Errorf("%w: not a JSON object", ErrInvalidDiscovery)
	}
	d := &Discovery{Issuer: jsonString(m["issuer"]), Raw: bytes.Clone(trimmed)}
	if d.Issuer != wantIssuer {
		return nil, fmt.Errorf("%w: it names %q, expected %q", ErrIssuerMismatch,
			sanitize(redact.URLString(d.Issuer), 200), sanitize(redact.URLString(wantIssuer), 200))
	}
	if err := checkAbsolute(d.Issuer); err != nil {
		return nil, fmt.Errorf("%w: issuer: %v", ErrInvalidDiscovery, err)
	}
	if u, _ := url.Parse(d.Issuer); u.RawQuery != "" || u.ForceQuery {
		return nil, fmt.Errorf("%w: issuer has a query", ErrInvalidDiscovery)
	}
	for _, ep := range []struct {
		name string
		dst  *string
	}{
		{"authorization_endpoint", &d.AuthorizationEndpoint},
		{"token_endpoint", &d.TokenEndpoint},
		{"device_authorization_endpoint", &d.DeviceAuthorizationEndpoint},
		{"revocation_endpoint", &d.RevocationEndpoint},
		{"userinfo_endpoint", &d.UserinfoEndpoint},
		{"jwks_uri", &d.JWKSURI},
		{"pushed_authorization_request_endpoint", &d.PushedAuthorizationRequestEndpoint},
	} {
		raw, ok := m[ep.name]
		if !ok || string(raw) == "null" {
			continue
		}
		v := jsonString(raw)
		if v == "" {
			return nil, fmt.Errorf("%w: %s is not a non-empty string", ErrInvalidDiscovery, ep.name)
		}
		if err := checkAbsolute(v); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalidDiscovery, ep.name, err)
		}
		*ep.dst = v
	}
	d.TokenEndpointAuthMethodsSupported = stringList(m["token_endpoint_auth_methods_supported"])
	d.CodeChallengeMethodsSupported = stringList(m["code_challenge_methods_supported"])
	d.GrantTypesSupported = stringList(m["grant_types_supported"])
	d.ResponseTypesSupported = stringList(m["response_types_supported"])
	d.ScopesSupported = stringList(m["scopes_supported"])
	d.AuthorizationResponseIssParameterSupported = jsonBool(m["authorization_response_iss_parameter_supported"])
	d.RequirePushedAuthorizationRequests = jsonBool(m["require_pushed_authorization_requests"])
	d.DPoPSigningAlgValuesSupported = stringList(m["dpop_signing_alg_values_supported"])
	return d, nil
}

// checkAbsolute: an absolute http(s) URL with a host, no user info and no
// fragment. The error never contains the URL (it could hold a secret).
func checkAbsolute(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("scheme %q is not http or https", sanitize(u.Scheme, 16))
	case u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("URL has no host")
	case u.User != nil:
		return fmt.Errorf("URL has user info")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return fmt.Errorf("URL has a fragment")
	}
	return nil
}

// stringList decodes a JSON array keeping its string elements; a lone
// string counts as a one-element list.
func stringList(raw json.RawMessage) []string {
	if len(raw) == 0 {
		return nil
	}
	if raw[0] == '"' {
		if s := jsonString(raw); s != "" {
			return []string{s}
		}
		return nil
	}
	var list []any
	if json.Unmarshal(raw, &list) != nil {
		return nil
	}
	var out []string
	for _, v := range list {
		if s, ok := v.(string); ok && s != "" {
			out = append(out, s)
		}
	}
	return out
}

func jsonBool(raw json.RawMessage) bool {
	var b bool
	if json.Unmarshal(raw, &b) == nil {
		return b
	}
	return jsonString(raw) == "true"
}

// WellKnownURLs returns the discovery URLs to try for an issuer, RFC 8414's
// first: https://as/.well-known/oauth-authorization-server/tenant and then
// https://as/tenant/.well-known/openid-configuration.
func WellKnownURLs(issuer string) (oauth, openid string, err error) {
	if err := checkAbsolute(issuer); err != nil {
		return "", "", fmt.Errorf("issuer: %w", err)
	}
	u, _ := url.Parse(issuer)
	if u.RawQuery != "" || u.ForceQuery {
		return "", "", fmt.Errorf("issuer has a query")
	}
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	base := u.Scheme + "://" + u.Host
	return base + WellKnownOAuth + path, base + path + WellKnownOpenID, nil
}

// CheckSecureURL returns nil for an absolute https URL, and for an http URL
// whose host is a loopback address (127.0.0.0/8, ::1, or "localhost") when
// allowLoopback is true. Anything else yields an error wrapping
// twerr.ErrInsecureURL. The error names only scheme, host and path.
func CheckSecureURL(raw string, allowLoopback bool) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("%q is not an absolute URL: %w", sanitize(redact.URLString(raw), 200), twerr.ErrInsecureURL)
	}
	switch {
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && allowLoopback && IsLoopbackHost(u.Hostname()):
		return nil
	}
	return fmt.Errorf("%s: %w", sanitize(redact.URL(u), 200), twerr.ErrInsecureURL)
}

// IsLoopbackHost reports whether host (without port or brackets) is a
// loopback IP address or "localhost".
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
