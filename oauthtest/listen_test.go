package oauthtest_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"strings"
	"testing"

	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/oauthtest"
)

func TestTLS(t *testing.T) {
	t.Parallel()
	srv := oauthtest.Start(t, oauthtest.Config{TLS: true})
	api := oauthtest.StartAPI(t, srv, "")
	if !strings.HasPrefix(srv.Issuer(), "https://127.0.0.1:") || !strings.HasPrefix(api.URL(), "https://") || srv.CertPool() == nil {
		t.Fatalf("issuer %q api %q", srv.Issuer(), api.URL())
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL(oauthtest.PathOAuthDiscovery), nil)
	r, err := do(t, srv, srv.HTTPClient(), req)
	if err != nil {
		t.Fatal(err)
	}
	d, err := oauthwire.ParseDiscovery(r.body, srv.Issuer())
	if err != nil || d.CheckSecure(false) != nil {
		t.Fatalf("discovery over TLS: %v", err)
	}
	// Untrusted without the pool.
	if _, err := http.Get(srv.URL(oauthtest.PathOAuthDiscovery)); err == nil {
		t.Error("self-signed certificate trusted by default")
	}
	// Resets work through TLS (HTTP/1.1 hijack).
	tok, _ := srv.Mint(oauthtest.Grant{})
	srv.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultResponseLost, Times: 1})
	if _, err := tokenReq(t, srv, srv.HTTPClient(), auth{id: oauthtest.DefaultClientID}, refresh(tok.RefreshToken)); err == nil {
		t.Error("lost response over TLS returned a token")
	}
}

// CertificatePEM is the certificate the server presents, in a form a CA
// file can hold.
func TestCertificatePEM(t *testing.T) {
	t.Parallel()
	srv := oauthtest.Start(t, oauthtest.Config{TLS: true})
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(srv.CertificatePEM()) {
		t.Fatal("CertificatePEM holds no certificate")
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := hc.Get(srv.URL(oauthtest.PathOAuthDiscovery))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if plain := oauthtest.Start(t, oauthtest.Config{}); plain.CertificatePEM() != nil {
		t.Fatal("a server without TLS has a certificate")
	}
}
