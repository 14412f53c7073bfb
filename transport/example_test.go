package transport_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/transport"
)

// ExampleTransport attaches the token to the API's origin only: the same
// client reaching another origin sends no token.
func ExampleTransport() {
	const accessToken = "example-access-token" // normally from refresh.Cache
	api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+accessToken {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, "hello, authorized caller")
	}))
	defer api.Close()
	elsewhere := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "received a token: %v", r.Header.Get("Authorization") != "")
	}))
	defer elsewhere.Close()

	tok := &oauth2.Token{AccessToken: accessToken, TokenType: "Bearer"}
	src := transport.SourceFunc(func(context.Context) (*oauth2.Token, error) { return tok, nil })
	tr, err := transport.New(src, func(o *transport.Options) {
		o.Origins = []string{api.URL}   // https://127.0.0.1:port
		o.Base = api.Client().Transport // trusts the test certificate
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	client := &http.Client{Transport: tr}

	for _, u := range []string{api.URL + "/hello", elsewhere.URL + "/"} {
		resp, err := client.Get(u)
		if err != nil {
			fmt.Println(err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("%d %s\n", resp.StatusCode, body)
	}
	// Output:
	// 200 hello, authorized caller
	// 200 received a token: false
}

// ExampleNew shows the configurations New refuses.
func ExampleNew() {
	src := transport.SourceFunc(func(context.Context) (*oauth2.Token, error) {
		return &oauth2.Token{AccessToken: "t"}, nil
	})
	for _, origin := range []string{
		"https://api.example.com",
		"http://api.example.com", // plain http: refused
		"http://127.0.0.1:8080",  // loopback: only with AllowInsecureLoopback
	} {
		_, err := transport.New(src, func(o *transport.Options) { o.Origins = []string{origin} })
		fmt.Printf("%s: insecure=%v\n", origin, errors.Is(err, transport.ErrInsecureURL))
	}
	_, err := transport.New(src, func(o *transport.Options) {
		o.Origins = []string{"http://127.0.0.1:8080"}
		o.AllowInsecureLoopback = true
	})
	fmt.Println("loopback with opt-in:", err == nil)
	// Output:
	// https://api.example.com: insecure=false
	// http://api.example.com: insecure=true
	// http://127.0.0.1:8080: insecure=true
	// loopback with opt-in: true
}

// ExampleNewRetryClient layers retries outside the transport: the API is
// briefly unavailable, the GET is retried, and each attempt asks the source
// for the current token.
func ExampleNewRetryClient() {
	var calls atomic.Int32
	api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "ok")
	}))
	defer api.Close()

	var tokenCalls atomic.Int32
	src := transport.SourceFunc(func(context.Context) (*oauth2.Token, error) {
		tokenCalls.Add(1)
		return &oauth2.Token{AccessToken: "example-access-token"}, nil
	})
	tr, err := transport.New(src, func(o *transport.Options) {
		o.Origins = []string{api.URL}
		o.Base = api.Client().Transport
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	client := transport.NewRetryClient(tr, func(o *transport.RetryOptions) {
		o.MaxRetries = 3
		o.WaitMin, o.WaitMax = 10*time.Millisecond, time.Second
		o.AttemptTimeout = 10 * time.Second
	})

	resp, err := client.Get(api.URL + "/items")
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Printf("%d %s after %d attempts, %d token look-ups\n", resp.StatusCode, body, calls.Load(), tokenCalls.Load())

	// A POST is sent once unless the caller says it is safe to repeat.
	calls.Store(0)
	req, _ := http.NewRequestWithContext(transport.WithIdempotent(context.Background()),
		"POST", api.URL+"/orders", strings.NewReader(`{"id":"order-1"}`))
	resp, err = client.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Printf("marked POST: %d after %d attempts\n", resp.StatusCode, calls.Load())
	// Output:
	// 200 ok after 2 attempts, 2 token look-ups
	// marked POST: 200 after 2 attempts
}

// ExampleParseChallenges reads every challenge of a WWW-Authenticate header,
// including quoted strings with commas and challenges on several lines.
func ExampleParseChallenges() {
	h := http.Header{}
	h.Add("WWW-Authenticate", `Basic realm="files", Bearer realm="api", error="invalid_token", error_description="expired, renew it"`)
	h.Add("WWW-Authenticate", `Negotiate YII=`)
	for _, c := range transport.ParseChallenges(h) {
		fmt.Printf("%s token68=%q error=%q description=%q\n", c.Scheme, c.Token68, c.Param("error"), c.Param("ERROR_DESCRIPTION"))
	}
	// Output:
	// Basic token68="" error="" description=""
	// Bearer token68="" error="invalid_token" description="expired, renew it"
	// Negotiate token68="YII=" error="" description=""
}

// ExampleBearerErrorFrom inspects why a resource server refused a request:
// missing scope (RFC 6750) or a step-up authentication requirement
// (RFC 9470).
func ExampleBearerErrorFrom() {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/admin" {
			w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_user_authentication", acr_values="urn:example:mfa", max_age=300`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="api", error="insufficient_scope", scope="files.write"`)
		w.WriteHeader(http.StatusForbidden)
	}))
	defer api.Close()

	for _, path := range []string{"/files", "/admin"} {
		resp, err := http.Get(api.URL + path)
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
		if e, ok := transport.BearerErrorFrom(resp); ok {
			switch e.Code {
			case transport.ErrorCodeInsufficientScope:
				fmt.Println("need scopes:", e.Scopes())
			case transport.ErrorCodeInsufficientUserAuthentication:
				fmt.Println("step up to:", e.ACRs(), "within", e.MaxAge, "seconds")
			}
			fmt.Println(e)
		}
	}
	// Output:
	// need scopes: [files.write]
	// transport: resource server refused the token: 403 insufficient_scope (scope "files.write")
	// step up to: [urn:example:mfa] within 300 seconds
	// transport: resource server refused the token: 401 insufficient_user_authentication (acr_values "urn:example:mfa") (max_age 300)
}
