package oauthtest_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/tokenward/tokenward/oauthtest"
)

// A job that calls an API with a client-credentials token, tested against
// the fake server. The code under test is golang.org/x/oauth2's
// clientcredentials package here; yours would take the same URLs. The
// counters show that it fetched one token for three calls.
func Example() {
	srv, err := oauthtest.New(oauthtest.Config{
		Clients: []oauthtest.Client{{ID: "reports", Secret: "s3cret"}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	api, err := srv.NewAPI("https://reports.example")
	if err != nil {
		fmt.Println(err)
		return
	}

	cc := clientcredentials.Config{
		ClientID: "reports", ClientSecret: "s3cret", TokenURL: srv.TokenURL(),
		AuthStyle:      oauth2.AuthStyleInHeader,                 // client_secret_basic, the client's registered method
		EndpointParams: url.Values{"resource": {api.Resource()}}, // the token's audience
	}
	hc := cc.Client(context.Background())
	for range 3 {
		resp, err := hc.Get(api.URL() + "/reports")
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
		fmt.Println(resp.Status)
	}
	fmt.Println("token requests:", srv.Stats().Grants[oauthtest.GrantClientCredentials])
	fmt.Println("API calls accepted:", api.Stats().OK)
	// Output:
	// 200 OK
	// 200 OK
	// 200 OK
	// token requests: 1
	// API calls accepted: 3
}

// A login with the authorization code flow and PKCE. Authorize plays the
// browser: it sends the authorization request and returns the redirect to
// the client's callback, with the code, without following it (Browse
// would deliver it to a listening callback).
func ExampleServer_Authorize() {
	srv, err := oauthtest.New(oauthtest.Config{Subject: "ada"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	cfg := oauth2.Config{
		ClientID: oauthtest.DefaultClientID, // registered by default: public, no secret
		Endpoint: oauth2.Endpoint{AuthURL: srv.AuthorizeURL(), TokenURL: srv.TokenURL(), AuthStyle: oauth2.AuthStyleInParams},
		// A loopback redirect URI matches whatever the port.
		RedirectURL: "http://127.0.0.1:8085/callback",
		Scopes:      []string{"openid"},
	}
	ctx := context.Background()
	verifier := oauth2.GenerateVerifier()
	callback, err := srv.Authorize(ctx, cfg.AuthCodeURL("state-1", oauth2.S256ChallengeOption(verifier)))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("callback state:", callback.Query().Get("state"))

	tok, err := cfg.Exchange(ctx, callback.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		fmt.Println(err)
		return
	}
	info, _ := srv.Introspect(tok.AccessToken)
	fmt.Println("subject:", info.Subject)
	fmt.Println("refresh token:", tok.RefreshToken != "", "ID token:", tok.Extra("id_token") != nil)
	fmt.Println("codes exchanged:", srv.Stats().CodeExchanges)
	// Output:
	// callback state: state-1
	// subject: ada
	// refresh token: true ID token: true
	// codes exchanged: 1
}

// A fault: the token endpoint answers 503 with Retry-After once. The
// client under test gets an error it can inspect; the next try succeeds.
func ExampleServer_InjectFault() {
	srv, err := oauthtest.New(oauthtest.Config{Clients: []oauthtest.Client{{ID: "job", Secret: "s3cret"}}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	srv.InjectFault(oauthtest.Fault{
		Kind: oauthtest.FaultUnavailable, Endpoint: oauthtest.EndpointToken, Times: 1, RetryAfter: "5",
	})

	cc := clientcredentials.Config{ClientID: "job", ClientSecret: "s3cret", TokenURL: srv.TokenURL(), AuthStyle: oauth2.AuthStyleInHeader}
	ctx := context.Background()
	_, err = cc.Token(ctx)
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		fmt.Println("first try:", re.Response.StatusCode, re.ErrorCode, "retry after", re.Response.Header.Get("Retry-After"))
	}
	_, err = cc.Token(ctx)
	fmt.Println("second try, error:", err)

	st := srv.Stats()
	fmt.Println("token requests:", st.TokenPosts, "faults fired:", st.Faults[oauthtest.FaultUnavailable])
	// Output:
	// first try: 503 temporarily_unavailable retry after 5
	// second try, error: <nil>
	// token requests: 2 faults fired: 1
}

// Proving that code never replays a refresh token. Two copies of one
// stored login both refresh, as two processes without a shared lock
// would: the server rotates the refresh token on its first use, detects
// the second use and revokes the login. RefreshPresentations and Stats
// show what happened.
func ExampleServer_RefreshPresentations() {
	srv, err := oauthtest.New(oauthtest.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	stored, err := srv.Mint(oauthtest.Grant{}) // as if a user had logged in
	if err != nil {
		fmt.Println(err)
		return
	}
	stored.Expiry = time.Now().Add(-time.Minute) // due for a refresh

	cfg := oauth2.Config{
		ClientID: oauthtest.DefaultClientID,
		Endpoint: oauth2.Endpoint{TokenURL: srv.TokenURL(), AuthStyle: oauth2.AuthStyleInParams},
	}
	for i := range 2 {
		_, err := cfg.TokenSource(context.Background(), stored).Token()
		fmt.Printf("copy %d refreshed: %v\n", i+1, err == nil)
	}
	for _, p := range srv.RefreshPresentations() {
		fmt.Println("presentation:", p.Outcome)
	}
	st := srv.Stats()
	fmt.Println("presented twice:", st.RefreshTokensPresentedTwice, "reuse detections:", st.ReuseDetections)
	// Output:
	// copy 1 refreshed: true
	// copy 2 refreshed: false
	// presentation: rotated
	// presentation: reuse-detected
	// presented twice: 1 reuse detections: 1
}

// In memory: Transport delivers requests to the server and its APIs
// without a socket. Created with Config.InMemory inside a testing/synctest
// bubble, such a server runs on the bubble's fake clock.
func ExampleServer_Transport() {
	srv, err := oauthtest.New(oauthtest.Config{InMemory: true, Clients: []oauthtest.Client{{ID: "job", Secret: "s3cret"}}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	api, err := srv.NewAPI("")
	if err != nil {
		fmt.Println(err)
		return
	}
	hc := &http.Client{Transport: srv.Transport()}
	// x/oauth2 takes its HTTP client from the context: token requests and
	// API calls both go through the in-memory transport.
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, hc)
	cc := clientcredentials.Config{ClientID: "job", ClientSecret: "s3cret", TokenURL: srv.TokenURL(), AuthStyle: oauth2.AuthStyleInHeader}
	resp, err := cc.Client(ctx).Get(api.URL() + "/items")
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.Status)
	// Output:
	// 200 OK
}
