package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tokenward/tokenward/client"
	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/store"
)

// A server job: client credentials, and an *http.Client that sends the
// token only to the API's origin.
func Example_clientCredentials() {
	ctx := context.Background()
	as, _ := oauthtest.New(oauthtest.Config{Clients: []oauthtest.Client{{ID: "reports-job", Secret: "example-secret"}}})
	defer as.Close()
	api, _ := as.NewAPI("")

	mem, _ := store.Open(ctx, func(o *store.Options) { o.Mode = store.ModeMemory })
	c, err := client.New(ctx, func(o *client.Options) {
		o.Issuer = as.Issuer() // endpoints come from discovery
		o.ClientID, o.ClientSecret = "reports-job", "example-secret"
		o.Grant = client.GrantClientCredentials
		o.Resources = []string{api.Resource()} // the token's audience, and its only origin
		o.AllowInsecureLoopback = true         // the example server is http://127.0.0.1
		o.Store = mem
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	hc, _ := c.HTTPClient(ctx)
	for range 3 {
		resp, err := hc.Get(api.URL() + "/reports")
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
		fmt.Println(resp.Status)
	}
	fmt.Println("token requests:", as.Stats().Grants["client_credentials"])
	// Output:
	// 200 OK
	// 200 OK
	// 200 OK
	// token requests: 1
}

// A CLI: device login, status, logout.
func ExampleClient_Login() {
	ctx := context.Background()
	as, _ := oauthtest.New(oauthtest.Config{DeviceInterval: time.Second, IDToken: true, Subject: "ada"})
	defer as.Close()
	api, _ := as.NewAPI("")

	mem, _ := store.Open(ctx, func(o *store.Options) { o.Mode = store.ModeMemory })
	c, err := client.New(ctx, func(o *client.Options) {
		o.Issuer = as.Issuer()
		o.ClientID = oauthtest.DefaultClientID // a public client: no secret
		o.Scopes = []string{"read"}
		o.Resources = []string{api.Resource()}
		o.AllowInsecureLoopback = true
		o.Store = mem // a real CLI keeps the default: the OS keychain
		o.Prompt = io.Discard
		o.DevicePrompt = func(ctx context.Context, d client.DeviceCode) {
			fmt.Println("the user is asked to visit", d.VerificationURI[len(as.Issuer()):])
		}
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	if err := c.Login(ctx, client.WithDevice()); err != nil {
		fmt.Println(err)
		return
	}
	st, _ := c.Status(ctx)
	fmt.Println("logged in as", st.Subject, "with a refresh token:", st.HasRefreshToken)
	if err := c.Logout(ctx); err != nil {
		fmt.Println(err)
		return
	}
	_, err = c.Token(ctx)
	fmt.Println("after logout, re-authentication required:", errors.Is(err, client.ErrReauthRequired))
	// Output:
	// the user is asked to visit /device
	// logged in as ada with a refresh token: true
	// after logout, re-authentication required: true
}
