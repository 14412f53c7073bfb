package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tokenward/tokenward/oauthtest"
)

// TestCLICallRefusesOtherOrigins: the token never goes to a URL outside the
// configured origins, whatever the user types.
func TestCLICallRefusesOtherOrigins(t *testing.T) {
	as := oauthtest.Start(t, oauthtest.Config{})
	api := oauthtest.StartAPI(t, as, "")
	other := oauthtest.StartAPI(t, as, "")
	tok, err := as.Mint(oauthtest.Grant{Resources: []string{api.Resource()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TOKENWARD_ACCESS_TOKEN", tok.AccessToken)
	var out, errOut bytes.Buffer
	code := run(t.Context(), []string{"--allow-insecure-loopback", "--issuer", as.Issuer(), "--client-id", "x",
		"--resource", api.Resource(), "call", other.URL() + "/steal"}, &out, &errOut)
	if code == 0 || !strings.Contains(errOut.String(), "not an API origin") {
		t.Fatalf("call to another origin: exit %d, stderr %q", code, errOut.String())
	}
	if n := other.Stats().Calls; n != 0 {
		t.Fatalf("the other origin received %d requests", n)
	}
	out.Reset()
	errOut.Reset()
	if code := run(t.Context(), []string{"--allow-insecure-loopback", "--issuer", as.Issuer(), "--client-id", "x",
		"--resource", api.Resource(), "call", api.URL() + "/ok"}, &out, &errOut); code != 0 {
		t.Fatalf("call to the API: exit %d, stderr %q", code, errOut.String())
	}
}

// fixedToken starts a server and an API, and puts a token for the API in
// TOKENWARD_ACCESS_TOKEN, so that call needs no login.
func fixedToken(t *testing.T) (*oauthtest.Server, *oauthtest.API) {
	t.Helper()
	as := oauthtest.Start(t, oauthtest.Config{})
	api := oauthtest.StartAPI(t, as, "")
	tok, err := as.Mint(oauthtest.Grant{Resources: []string{api.Resource()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TOKENWARD_ACCESS_TOKEN", tok.AccessToken)
	return as, api
}

// The hint for another origin suggests the user's own command with the
// origin added, and that command works: --api-origin adds to the
// resource's origin, so the resource keeps receiving the token.
func TestCallOriginHintIsCorrect(t *testing.T) {
	as, api := fixedToken(t)
	other := oauthtest.StartAPI(t, as, "")
	base := []string{"--allow-insecure-loopback", "--issuer", as.Issuer(), "--client-id", "x", "--profile", "work", "--resource", api.Resource()}
	r := cliRun(t, nil, append(base, "call", other.URL()+"/x")...)
	suggested := "cli --allow-insecure-loopback --api-origin " + other.URL() + " --client-id x --issuer " + as.Issuer() + " --profile work --resource " + api.Resource() + " call " + other.URL() + "/x"
	r.want(t, 2, "is not an API origin", "hint: if "+other.URL()+" should receive your token", suggested)
	if n := other.Stats().Calls; n != 0 {
		t.Fatalf("the other origin received %d requests before it was added", n)
	}
	withOrigin := append(base, "--api-origin", other.URL())
	// The other API sees a token for another audience and refuses it
	// (exit 1), but it was sent: the origin was added.
	cliRun(t, nil, append(withOrigin, "call", other.URL()+"/x")...).want(t, 1, "401")
	if n := other.Stats().Calls; n != 1 {
		t.Fatalf("the added origin received %d requests, want 1", n)
	}
	cliRun(t, nil, append(withOrigin, "call", api.URL()+"/ok")...).want(t, 0, "200 OK")

	// Origins from TOKENWARD_API_ORIGIN are kept in the suggestion: the
	// flag replaces the variable, so it must list them all.
	third := oauthtest.StartAPI(t, as, "")
	t.Setenv("TOKENWARD_API_ORIGIN", other.URL())
	cliRun(t, nil, append(base, "call", third.URL()+"/x")...).want(t, 2, "--api-origin "+other.URL()+","+third.URL()+" ")
}

// A path is resolved against the API: the resource (as a directory), or
// the one API origin. Without one, the error says to give a full URL.
func TestCallRelativePath(t *testing.T) {
	as, api := fixedToken(t)
	base := []string{"--allow-insecure-loopback", "--issuer", as.Issuer(), "--client-id", "x"}

	cliRun(t, nil, append(base, "--resource", api.Resource(), "call", "/things")...).want(t, 0, "GET "+api.URL()+"/things", "200 OK")
	cliRun(t, nil, append(base, "--api-origin", api.URL(), "call", "/origin-only")...).want(t, 0, "GET "+api.URL()+"/origin-only")
	// A resource with a path: "things" goes under it (the fixed token
	// is accepted: the API checks its audience, not the path).
	cliRun(t, nil, append(base, "--resource", api.URL()+"/v1", "call", "things")...).want(t, 0, "GET "+api.URL()+"/v1/things")
	var paths []string
	for _, rq := range api.Requests() {
		paths = append(paths, rq.Path)
	}
	if want := "/things /origin-only /v1/things"; strings.Join(paths, " ") != want {
		t.Fatalf("the API saw %q, want %q", paths, want)
	}

	r := cliRun(t, nil, append(base, "call", "/things")...)
	r.want(t, 2, `"/things" is not a full URL`, "no API is configured", "give the full URL, such as https://api.example.com/things")
	if strings.Contains(r.all(), "://") && strings.Contains(r.all(), ":// is not") {
		t.Fatalf("the old message is back: %s", r.all())
	}
	other := oauthtest.StartAPI(t, as, "")
	cliRun(t, nil, append(base, "--api-origin", api.URL()+","+other.URL(), "call", "/things")...).want(t, 2, "several API origins are configured")
}

// A fixed token needs no issuer or client ID (nothing is asked of a
// server), and one the API refuses says so, with a hint, instead of ending
// on the API's 401 alone.
func TestCallFixedTokenRefused(t *testing.T) {
	_, api := fixedToken(t)
	cliRun(t, nil, "--allow-insecure-loopback", "--resource", api.Resource(), "call", "/things").want(t, 0)
	t.Setenv("TOKENWARD_ACCESS_TOKEN", "not-a-token-the-api-knows")
	r := cliRun(t, nil, "--allow-insecure-loopback", "--resource", api.Resource(), "call", "/things")
	r.want(t, 1, "cli: the API did not accept the token from TOKENWARD_ACCESS_TOKEN", "hint: replace it")
}

// Without a fixed token, the missing flag is named alone.
func TestMissingClientIDNamed(t *testing.T) {
	r := cliRun(t, nil, "--issuer", "https://login.example.com", "status")
	r.want(t, 2, "cli: --client-id (or TOKENWARD_CLIENT_ID) required")
	if strings.Contains(r.all(), "cli: --issuer") {
		t.Fatalf("the issuer was given, but is named as missing: %s", r.all())
	}
}
