package oauthwire

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tokenward/tokenward/internal/twerr"
)

const issuer = "https://as.example.com/tenant"

func TestParseDiscovery(t *testing.T) {
	t.Parallel()
	doc := `{
	  "issuer": "https://as.example.com/tenant",
	  "authorization_endpoint": "https://as.example.com/tenant/authorize",
	  "token_endpoint": "https://as.example.com/tenant/token",
	  "device_authorization_endpoint": "https://as.example.com/tenant/device",
	  "revocation_endpoint": "https://as.example.com/tenant/revoke",
	  "userinfo_endpoint": "https://as.example.com/tenant/userinfo",
	  "jwks_uri": "https://as.example.com/tenant/jwks",
	  "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt", 5],
	  "code_challenge_methods_supported": ["S256"],
	  "grant_types_supported": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"],
	  "response_types_supported": ["code"],
	  "scopes_supported": "openid",
	  "authorization_response_iss_parameter_supported": true,
	  "unknown": {"nested": [1,2,3]}
	}`
	d, err := ParseDiscovery([]byte(doc), issuer)
	if err != nil {
		t.Fatal(err)
	}
	want := &Discovery{
		Issuer:                                     issuer,
		AuthorizationEndpoint:                      issuer + "/authorize",
		TokenEndpoint:                              issuer + "/token",
		DeviceAuthorizationEndpoint:                issuer + "/device",
		RevocationEndpoint:                         issuer + "/revoke",
		UserinfoEndpoint:                           issuer + "/userinfo",
		JWKSURI:                                    issuer + "/jwks",
		TokenEndpointAuthMethodsSupported:          []string{"client_secret_basic", "private_key_jwt"},
		CodeChallengeMethodsSupported:              []string{"S256"},
		GrantTypesSupported:                        []string{"authorization_code", "refresh_token", GrantTypeDeviceCode},
		ResponseTypesSupported:                     []string{"code"},
		ScopesSupported:                            []string{"openid"},
		AuthorizationResponseIssParameterSupported: true,
	}
	if diff := cmp.Diff(want, d, cmpopts.IgnoreFields(Discovery{}, "Raw")); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	if again, err := ParseDiscovery(d.Raw, issuer); err != nil || !cmp.Equal(d, again) {
		t.Fatalf("Raw does not parse back to the same document (err %v)", err)
	}
	if !d.SupportsAuthMethod("private_key_jwt") || d.SupportsAuthMethod("client_secret_post") || !d.SupportsS256() ||
		!d.SupportsGrant("refresh_token") || d.SupportsGrant("implicit") {
		t.Error("Supports* wrong")
	}
	if err := d.CheckSecure(false); err != nil {
		t.Errorf("CheckSecure: %v", err)
	}
	if len(d.Endpoints()) != 6 {
		t.Errorf("Endpoints() = %v", d.Endpoints())
	}
	// RFC 8414 defaults when lists are absent.
	e := &Discovery{}
	if !e.SupportsAuthMethod("client_secret_basic") || e.SupportsAuthMethod("none") || !e.SupportsGrant("authorization_code") || e.SupportsS256() {
		t.Error("defaults wrong")
	}
}

func TestParseDiscoveryErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		doc  string
		want error
	}{
		{"trailing slash", `{"issuer":"https://as.example.com/tenant/"}`, ErrIssuerMismatch},
		{"other host", `{"issuer":"https://evil.example.com/tenant"}`, ErrIssuerMismatch},
		{"case differs", `{"issuer":"https://AS.example.com/tenant"}`, ErrIssuerMismatch},
		{"no issuer", `{"token_endpoint":"https://as.example.com/token"}`, ErrIssuerMismatch},
		{"issuer not a string", `{"issuer":5}`, ErrIssuerMismatch},
		{"not json", `<html>`, ErrInvalidDiscovery},
		{"array", `[]`, ErrInvalidDiscovery},
		{"empty", ``, ErrInvalidDiscovery},
		{"relative token endpoint", `{"issuer":"` + issuer + `","token_endpoint":"/token"}`, ErrInvalidDiscovery},
		{"javascript endpoint", `{"issuer":"` + issuer + `","authorization_endpoint":"javascript:alert(1)"}`, ErrInvalidDiscovery},
		{"user info", `{"issuer":"` + issuer + `","token_endpoint":"https://u:p@as.example.com/token"}`, ErrInvalidDiscovery},
		{"fragment", `{"issuer":"` + issuer + `","token_endpoint":"https://as.example.com/token#x"}`, ErrInvalidDiscovery},
		{"number endpoint", `{"issuer":"` + issuer + `","revocation_endpoint":5}`, ErrInvalidDiscovery},
		{"empty endpoint", `{"issuer":"` + issuer + `","revocation_endpoint":""}`, ErrInvalidDiscovery},
		{"no host", `{"issuer":"` + issuer + `","jwks_uri":"https:///jwks"}`, ErrInvalidDiscovery},
		{"too large", `{"issuer":"` + issuer + `","x":"` + strings.Repeat("a", MaxBody) + `"}`, ErrBodyTooLarge},
	}
	for _, c := range cases {
		if _, err := ParseDiscovery([]byte(c.doc), issuer); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		} else if len(err.Error()) > 512 {
			t.Errorf("%s: long error", c.name)
		}
	}
	if _, err := ParseDiscovery([]byte(`{"issuer":"x"}`), ""); !errors.Is(err, ErrIssuerMismatch) {
		t.Errorf("empty wantIssuer: %v", err)
	}
	iq := "https://as.example.com/?a=1"
	if _, err := ParseDiscovery([]byte(`{"issuer":"`+iq+`"}`), iq); !errors.Is(err, ErrInvalidDiscovery) {
		t.Errorf("issuer with query: %v", err)
	}
	// null endpoints are absent.
	if d, err := ParseDiscovery([]byte(`{"issuer":"`+issuer+`","revocation_endpoint":null}`), issuer); err != nil || d.RevocationEndpoint != "" {
		t.Errorf("null endpoint: %v", err)
	}
	// http endpoints parse; CheckSecure decides.
	d, err := ParseDiscovery([]byte(`{"issuer":"http://127.0.0.1:8080","token_endpoint":"http://127.0.0.1:8080/token"}`), "http://127.0.0.1:8080")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.CheckSecure(false); !errors.Is(err, twerr.ErrInsecureURL) {
		t.Errorf("CheckSecure(false) = %v", err)
	}
	if err := d.CheckSecure(true); err != nil {
		t.Errorf("CheckSecure(true) = %v", err)
	}
	d.TokenEndpoint = "http://example.com/token"
	if err := d.CheckSecure(true); !errors.Is(err, twerr.ErrInsecureURL) || !strings.Contains(err.Error(), "token_endpoint") {
		t.Errorf("CheckSecure(true) non-loopback = %v", err)
	}
}

func TestCheckSecureURL(t *testing.T) {
	t.Parallel()
	cases := []struct {
		url      string
		loopback bool
		ok       bool
	}{
		{"https://as.example.com/token", false, true},
		{"https://127.0.0.1/token", false, true},
		{"http://as.example.com/token", false, false},
		{"http://as.example.com/token", true, false},
		{"http://127.0.0.1:8080/token", false, false},
		{"http://127.0.0.1:8080/token", true, true},
		{"http://127.1.2.3/token", true, true},
		{"http://[::1]:9/token", true, true},
		{"http://localhost:9/token", true, true},
		{"http://localhost.evil.com/token", true, false},
		{"http://10.0.0.1/token", true, false},
		{"ftp://127.0.0.1/x", true, false},
		{"/relative", true, false},
		{"", true, false},
		{"https://", false, false},
	}
	for _, c := range cases {
		err := CheckSecureURL(c.url, c.loopback)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, twerr.ErrInsecureURL)) {
			t.Errorf("CheckSecureURL(%q, %v) = %v", c.url, c.loopback, err)
		}
	}
	err := CheckSecureURL("http://as.example.com/cb?code=secretcode123&state=s", false)
	if err == nil || strings.Contains(err.Error(), "secretcode123") {
		t.Errorf("error leaks query: %v", err)
	}
}

func TestWellKnownURLs(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ issuer, oauth, oidc string }{
		{"https://as.example.com", "https://as.example.com/.well-known/oauth-authorization-server", "https://as.example.com/.well-known/openid-configuration"},
		{"https://as.example.com/", "https://as.example.com/.well-known/oauth-authorization-server", "https://as.example.com/.well-known/openid-configuration"},
		{"https://as.example.com/t/1", "https://as.example.com/.well-known/oauth-authorization-server/t/1", "https://as.example.com/t/1/.well-known/openid-configuration"},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080/.well-known/oauth-authorization-server", "http://127.0.0.1:8080/.well-known/openid-configuration"},
	} {
		o, i, err := WellKnownURLs(c.issuer)
		if err != nil || o != c.oauth || i != c.oidc {
			t.Errorf("WellKnownURLs(%q) = %q, %q, %v", c.issuer, o, i, err)
		}
	}
	for _, bad := range []string{"", "as.example.com", "https://as.example.com/?x=1", "https://as.example.com/#f"} {
		if _, _, err := WellKnownURLs(bad); err == nil {
			t.Errorf("WellKnownURLs(%q) accepted", bad)
		}
	}
}
