package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
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
	if _, err := c.Logout(ctx); err != nil {
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

// Branching on the error: before the first login there is no refresh
// token, Token says so with ErrReauthRequired, and the program logs in.
// Messages name the operation that failed and are safe to print as they
// are.
func Example_reauthRequired() {
	ctx := context.Background()
	as, _ := oauthtest.New(oauthtest.Config{DeviceInterval: time.Second})
	defer as.Close()
	api, _ := as.NewAPI("")

	mem, _ := store.Open(ctx, func(o *store.Options) { o.Mode = store.ModeMemory })
	c, err := client.New(ctx, func(o *client.Options) {
		o.Issuer, o.ClientID = as.Issuer(), oauthtest.DefaultClientID
		o.Resources = []string{api.Resource()}
		o.AllowInsecureLoopback = true
		o.Store = mem
		o.Prompt = io.Discard
		o.DevicePrompt = func(ctx context.Context, d client.DeviceCode) { <-ctx.Done() } // the example server approves by itself
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	_, err = c.Token(ctx)
	var rl *client.RateLimitError
	switch {
	case errors.Is(err, client.ErrReauthRequired):
		fmt.Println(err)
		if err := c.Login(ctx, client.WithDevice()); err != nil {
			fmt.Println(err)
			return
		}
	case errors.As(err, &rl):
		fmt.Println("the server asks to wait", rl.RetryAfter)
		return
	case err != nil:
		fmt.Println(err)
		return
	}
	tok, err := c.Token(ctx)
	fmt.Println("after Login, a token:", err == nil && tok.AccessToken != "")
	// Output:
	// client: token request (refresh_token): not logged in (no refresh token is stored); call Login
	// after Login, a token: true
}

// The details of a failed call to the authorization server, for programs
// that show or log them: here a server job whose secret is wrong.
func ExampleEndpointError() {
	ctx := context.Background()
	as, _ := oauthtest.New(oauthtest.Config{Clients: []oauthtest.Client{{ID: "reports-job", Secret: "example-secret"}}})
	defer as.Close()

	mem, _ := store.Open(ctx, func(o *store.Options) { o.Mode = store.ModeMemory })
	c, err := client.New(ctx, func(o *client.Options) {
		o.Issuer = as.Issuer()
		o.ClientID, o.ClientSecret = "reports-job", "not-the-secret"
		o.Grant = client.GrantClientCredentials
		o.AllowInsecureLoopback = true
		o.Store = mem
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	_, err = c.Token(ctx)
	var ee *client.EndpointError
	if errors.As(err, &ee) {
		fmt.Println("operation:", ee.Op)
		fmt.Println("HTTP status:", ee.Status)
	}
	fmt.Println("fix the registration or the secret:", errors.Is(err, client.ErrClientRejected))
	// Output:
	// operation: token request (client_credentials)
	// HTTP status: 401
	// fix the registration or the secret: true
}

// Two APIs, one login: each API gets its own access token, minted from the
// login's refresh token, and each HTTP client sends its token to its own
// API only.
func ExampleClient_ForResource() {
	ctx := context.Background()
	as, _ := oauthtest.New(oauthtest.Config{DeviceInterval: time.Second})
	defer as.Close()
	reports, _ := as.NewAPI("")
	billing, _ := as.NewAPI("")

	mem, _ := store.Open(ctx, func(o *store.Options) { o.Mode = store.ModeMemory })
	c, err := client.New(ctx, func(o *client.Options) {
		o.Issuer, o.ClientID = as.Issuer(), oauthtest.DefaultClientID
		// Every API the login must cover; each one's token comes from ForResource.
		o.Resources = []string{reports.Resource(), billing.Resource()}
		o.AllowInsecureLoopback = true
		o.Store = mem
		o.Prompt = io.Discard
		o.DevicePrompt = func(ctx context.Context, d client.DeviceCode) { <-ctx.Done() }
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
	call := func(r *client.Resource, url string) {
		hc, err := r.HTTPClient(ctx)
		if err != nil {
			fmt.Println(err)
			return
		}
		resp, err := hc.Get(url)
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
		fmt.Println(resp.Status)
	}
	r, _ := c.ForResource(reports.Resource())
	b, _ := c.ForResource(billing.Resource())
	call(r, reports.URL()+"/reports")
	call(b, billing.URL()+"/invoices")
	call(r, billing.URL()+"/invoices") // the reports token is not sent to billing
	// Output:
	// 200 OK
	// 200 OK
	// 401 Unauthorized
}

// Extra parameters: a login_hint on every login and an audience on every
// token request, and first a silent login (prompt=none), which a server
// where the user has no session answers login_required; the program then
// lets the user sign in.
func ExampleWithAuthParam() {
	ctx := context.Background()
	as, _ := oauthtest.New(oauthtest.Config{NoSession: true})
	defer as.Close()
	api, _ := as.NewAPI("")

	mem, _ := store.Open(ctx, func(o *store.Options) { o.Mode = store.ModeMemory })
	c, err := client.New(ctx, func(o *client.Options) {
		o.Issuer, o.ClientID = as.Issuer(), oauthtest.DefaultClientID
		o.Resources = []string{api.Resource()}
		o.AuthParams = url.Values{"login_hint": {"ada@example.com"}}
		o.TokenParams = url.Values{"audience": {"https://api.example.com"}}
		o.AllowInsecureLoopback = true
		o.Store = mem
		o.Prompt = io.Discard
		o.OpenBrowser = func(u string) error { go as.Browse(ctx, u); return nil } // the example server plays the browser
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	err = c.Login(ctx, client.WithAuthParam("prompt", "none"))
	fmt.Println("silent login needs the user:", errors.Is(err, client.ErrInteractionRequired))
	if errors.Is(err, client.ErrInteractionRequired) {
		err = c.Login(ctx)
	}
	fmt.Println("login error:", err)
	az := as.EndpointRequests(oauthtest.EndpointAuthorize)
	fmt.Println("login_hint sent:", az[len(az)-1].Params.Get("login_hint"))
	tr := as.EndpointRequests(oauthtest.EndpointToken)
	fmt.Println("audience sent:", tr[len(tr)-1].Params.Get("audience"))
	// Output:
	// silent login needs the user: true
	// login error: <nil>
	// login_hint sent: ada@example.com
	// audience sent: https://api.example.com
}

// A program that logs in only the first time (IfNeeded), and a logout that
// says what it found and did.
func ExampleIfNeeded() {
	ctx := context.Background()
	as, _ := oauthtest.New(oauthtest.Config{DeviceInterval: time.Second})
	defer as.Close()
	api, _ := as.NewAPI("")

	mem, _ := store.Open(ctx, func(o *store.Options) { o.Mode = store.ModeMemory })
	newClient := func() (*client.Client, error) {
		return client.New(ctx, func(o *client.Options) {
			o.Issuer = as.Issuer()
			o.ClientID = oauthtest.DefaultClientID
			o.Resources = []string{api.Resource()}
			o.AllowInsecureLoopback = true
			o.Store = mem
			o.Prompt = io.Discard
			o.DevicePrompt = func(ctx context.Context, _ client.DeviceCode) { <-ctx.Done() }
		})
	}
	for run := 1; run <= 2; run++ { // two starts of the program
		c, err := newClient()
		if err != nil {
			fmt.Println(err)
			return
		}
		if err := c.Login(ctx, client.WithDevice(), client.IfNeeded()); err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("run %d: device logins so far: %d\n", run, as.Stats().Requests[oauthtest.EndpointDeviceAuthorization])
		if run == 2 {
			res, err := c.Logout(ctx)
			fmt.Println("logout:", res, "error:", err)
		}
		c.Close()
	}
	// Output:
	// run 1: device logins so far: 1
	// run 2: device logins so far: 1
	// logout: revoked: refresh token, access token; deleted locally error: <nil>
}

// Sender-constrained tokens (DPoP, RFC 9449): one option. The token is
// bound to a key kept with the credential, every API request carries a
// fresh proof of that key, and a copy of the token is refused without it.
func Example_dPoP() {
	ctx := context.Background()
	as, _ := oauthtest.New(oauthtest.Config{DPoP: oauthtest.DPoPRequired})
	defer as.Close()
	api, _ := as.NewAPI("")

	mem, _ := store.Open(ctx, func(o *store.Options) { o.Mode = store.ModeMemory })
	c, err := client.New(ctx, func(o *client.Options) {
		o.Issuer = as.Issuer()
		o.ClientID = oauthtest.DefaultClientID
		o.Resources = []string{api.Resource()}
		o.AllowInsecureLoopback = true
		o.Store = mem
		o.Prompt = io.Discard
		o.DPoP = true // an ES256 key is made at the first login
		// The example server plays the user signing in; a real program
		// keeps the default, the system browser.
		o.OpenBrowser = func(authURL string) error { return as.Browse(ctx, authURL) }
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	if err := c.Login(ctx); err != nil {
		fmt.Println(err)
		return
	}
	hc, _ := c.HTTPClient(ctx)
	resp, err := hc.Get(api.URL() + "/items")
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println("with its proof:", resp.Status)

	// The same token sent without a proof, as a thief would.
	tok, _ := c.Token(ctx)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, api.URL()+"/items", nil)
	req.Header.Set("Authorization", "DPoP "+tok.AccessToken)
	stolen, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	stolen.Body.Close()
	fmt.Println("token type:", tok.TokenType, "- a copy without its proof:", stolen.Status)
	// Output:
	// with its proof: 200 OK
	// token type: DPoP - a copy without its proof: 401 Unauthorized
}
