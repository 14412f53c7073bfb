package main

import (
	"strings"
	"testing"

	"github.com/tokenward/tokenward/client"
	"github.com/tokenward/tokenward/oauthtest"
)

// logout says what it did and nothing more: nothing stored, an access
// token the server does not revoke by policy (exit 0), a revocation that
// failed (exit 1, naming what the server may still honour), a fixed token.
func TestLogoutClaimsOnlyWhatItDid(t *testing.T) {
	noRetry := func(cfg *client.Options) { cfg.HTTP.RetryMax = -1 }
	t.Run("nothing stored", func(t *testing.T) {
		as := oauthtest.Start(t, oauthtest.Config{})
		fileStore(t)
		r := cliRun(t, nil, "--allow-insecure-loopback", "--issuer", as.Issuer(), "--client-id", oauthtest.DefaultClientID, "logout")
		r.want(t, 0, "not signed in: nothing to revoke or delete")
		if strings.Contains(r.all(), "revoked") || strings.Contains(r.all(), "signed out") {
			t.Fatalf("logout claims what it did not do: %s", r.all())
		}
	})
	t.Run("access token not revocable", func(t *testing.T) {
		as := oauthtest.Start(t, oauthtest.Config{RefuseAccessTokenRevocation: true})
		fileStore(t)
		args := []string{"--allow-insecure-loopback", "--issuer", as.Issuer(), "--client-id", oauthtest.DefaultClientID}
		cliRun(t, browser(as), append(args, "login")...).want(t, 0, "signed in")
		r := cliRun(t, nil, append(args, "logout")...)
		r.want(t, 0, "revoked at the server: refresh token", "not revocable: the server does not revoke access tokens (its policy); they stay valid until they expire: access token", "signed out (tokens deleted locally)")
	})
	t.Run("revocation failed", func(t *testing.T) {
		as := oauthtest.Start(t, oauthtest.Config{})
		fileStore(t)
		args := []string{"--allow-insecure-loopback", "--issuer", as.Issuer(), "--client-id", oauthtest.DefaultClientID, "--profile", "work"}
		cliRun(t, browser(as), append(args, "login")...).want(t, 0, "signed in")
		as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultUnavailable, Endpoint: oauthtest.EndpointRevocation})
		r := cliRun(t, noRetry, append(args, "logout")...)
		r.want(t, 1, "not revoked at the server: refresh token", "local tokens deleted", "hint: you are signed out here, but the server may still honour: refresh token")
		if strings.Contains(r.stdout, "revoked at the server") || strings.Contains(r.stdout, "signed out (tokens deleted") {
			t.Fatalf("logout claims a revocation that failed: %s", r.all())
		}
		cliRun(t, nil, append(args, "status")...).want(t, 0, "not signed in (profile work)")
	})
	t.Run("fixed token", func(t *testing.T) {
		as := oauthtest.Start(t, oauthtest.Config{})
		t.Setenv("TOKENWARD_ACCESS_TOKEN", "fixed")
		r := cliRun(t, nil, "--allow-insecure-loopback", "--issuer", as.Issuer(), "--client-id", "x", "logout")
		r.want(t, 0, "using a fixed access token from TOKENWARD_ACCESS_TOKEN: there is no login to revoke or delete")
		if n := as.Stats().Requests[oauthtest.EndpointRevocation]; n != 0 {
			t.Fatalf("%d revocation requests for a fixed token", n)
		}
	})
}

// status with TOKENWARD_ACCESS_TOKEN says a fixed token is in use, never
// "signed in".
func TestStatusFixedToken(t *testing.T) {
	as, api := fixedToken(t)
	r := cliRun(t, nil, "--allow-insecure-loopback", "--issuer", as.Issuer(), "--client-id", "x", "--resource", api.Resource(), "status")
	r.want(t, 0, "using a fixed access token from TOKENWARD_ACCESS_TOKEN (no login stored)", "sent to:       "+api.URL())
	if strings.Contains(r.all(), "signed in") {
		t.Fatalf("status claims a login: %s", r.all())
	}
}
