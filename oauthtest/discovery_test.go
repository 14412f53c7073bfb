package oauthtest_test

import (
	"errors"
	"net/http"
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/oauthtest"
)

func TestDiscovery(t *testing.T) {
	t.Parallel()
	srv := oauthtest.Start(t, oauthtest.Config{Clients: []oauthtest.Client{public("cli"), confidential("job")}})
	hc := srv.HTTPClient()
	for _, path := range []string{oauthtest.PathOAuthDiscovery, oauthtest.PathOpenIDDiscovery} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL(path), nil)
		r, err := do(t, srv, hc, req)
		if err != nil {
			t.Fatal(err)
		}
		d, err := oauthwire.ParseDiscovery(r.body, srv.Issuer())
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		want := &oauthwire.Discovery{
			Issuer:                                     srv.Issuer(),
			AuthorizationEndpoint:                      srv.AuthorizeURL(),
			TokenEndpoint:                              srv.TokenURL(),
			DeviceAuthorizationEndpoint:                srv.DeviceAuthorizationURL(),
			RevocationEndpoint:                         srv.RevocationURL(),
			UserinfoEndpoint:                           srv.URL(oauthtest.PathUserinfo),
			PushedAuthorizationRequestEndpoint:         srv.PARURL(),
			TokenEndpointAuthMethodsSupported:          []string{"none", "client_secret_basic"},
			CodeChallengeMethodsSupported:              []string{"S256"},
			GrantTypesSupported:                        []string{"authorization_code", "refresh_token", "client_credentials", oauthtest.GrantDeviceCode},
			ResponseTypesSupported:                     []string{"code"},
			AuthorizationResponseIssParameterSupported: true,
		}
		if diff := cmp.Diff(want, d, cmpopts.IgnoreFields(oauthwire.Discovery{}, "Raw")); diff != "" {
			t.Errorf("%s (-want +got):\n%s", path, diff)
		}
	}
	if got := srv.Stats().Requests[oauthtest.EndpointDiscovery]; got != 2 {
		t.Errorf("discovery requests = %d", got)
	}

	// Mismatched issuer, disabled endpoints, omitted iss support.
	srv.Update(func(c *oauthtest.Config) {
		c.DiscoveryIssuer = srv.Issuer() + "/"
		c.DisabledEndpoints = []string{oauthtest.EndpointRevocation}
		c.OmitCallbackIss = true
	})
	req, _ := http.NewRequest(http.MethodGet, srv.URL(oauthtest.PathOpenIDDiscovery), nil)
	r, _ := do(t, srv, hc, req)
	if _, err := oauthwire.ParseDiscovery(r.body, srv.Issuer()); !errors.Is(err, oauthwire.ErrIssuerMismatch) {
		t.Errorf("mismatched issuer: %v", err)
	}
	d, err := oauthwire.ParseDiscovery(r.body, srv.Issuer()+"/")
	if err != nil || d.RevocationEndpoint != "" || d.AuthorizationResponseIssParameterSupported {
		t.Errorf("disabled revocation still advertised: %+v %v", d, err)
	}
	r, _ = postForm(t, srv, hc, oauthtest.PathRevocation, auth{id: "cli"}, url.Values{"token": {"x"}})
	if r.status != http.StatusNotFound {
		t.Errorf("disabled endpoint answered %d", r.status)
	}
}

// OIDCDiscoveryOnly: the RFC 8414 path answers 404, the OpenID Connect one
// the document; Stats.Discovery counts each path, 404s included.
func TestOIDCDiscoveryOnly(t *testing.T) {
	t.Parallel()
	srv := oauthtest.Start(t, oauthtest.Config{OIDCDiscoveryOnly: true})
	get := func(path string) *rawResp {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL(path), nil)
		r, err := do(t, srv, nil, req)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := get(oauthtest.PathOAuthDiscovery); r.status != http.StatusNotFound {
		t.Fatalf("RFC 8414 path answered %d, want 404", r.status)
	}
	r := get(oauthtest.PathOpenIDDiscovery)
	if d, err := oauthwire.ParseDiscovery(r.body, srv.Issuer()); r.status != http.StatusOK || err != nil || d.TokenEndpoint != srv.TokenURL() {
		t.Fatalf("OpenID Connect path: status %d, %+v, %v", r.status, d, err)
	}
	get(oauthtest.PathOpenIDDiscovery)
	want := map[string]int{oauthtest.PathOAuthDiscovery: 1, oauthtest.PathOpenIDDiscovery: 2}
	if diff := cmp.Diff(want, srv.Stats().Discovery); diff != "" {
		t.Errorf("Stats.Discovery (-want +got):\n%s", diff)
	}
	srv.ResetStats()
	if err := srv.Update(func(c *oauthtest.Config) { c.OIDCDiscoveryOnly = false }); err != nil {
		t.Fatal(err)
	}
	if r := get(oauthtest.PathOAuthDiscovery); r.status != http.StatusOK {
		t.Fatalf("RFC 8414 path answered %d without OIDCDiscoveryOnly", r.status)
	}
	if diff := cmp.Diff(map[string]int{oauthtest.PathOAuthDiscovery: 1}, srv.Stats().Discovery); diff != "" {
		t.Errorf("Stats.Discovery after ResetStats (-want +got):\n%s", diff)
	}
}
