package oauthtest_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/oauthtest"
)

// A client-credentials token for one API, then a call to the API with it.
func Example() {
	srv, err := oauthtest.New(oauthtest.Config{Clients: []oauthtest.Client{{ID: "job", Secret: "s3cret"}}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	api, err := srv.NewAPI("https://api.example")
	if err != nil {
		fmt.Println(err)
		return
	}
	hc := srv.HTTPClient()

	req, _ := http.NewRequest(http.MethodPost, srv.TokenURL(), strings.NewReader(url.Values{
		"grant_type": {"client_credentials"}, "resource": {api.Resource()}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", oauthwire.BasicAuth("job", "s3cret"))
	sent := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, oauthwire.MaxBody+1))
	resp.Body.Close()
	if err != nil {
		fmt.Println(err)
		return
	}
	tok, err := oauthwire.ParseTokenResponse(resp.StatusCode, resp.Header, body, sent)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(tok.TokenType, tok.ExpiresIn)

	call, _ := http.NewRequest(http.MethodGet, api.URL()+"/orders", nil)
	call.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err = hc.Do(call)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, api.Stats().OK, srv.Stats().Grants["client_credentials"])
	// Output:
	// Bearer 3600
	// 200 1 1
}

// Injecting faults: two 503s, then the token endpoint answers again.
func ExampleServer_InjectFault() {
	srv, err := oauthtest.New(oauthtest.Config{Clients: []oauthtest.Client{{ID: "job", Secret: "s3cret"}}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	srv.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultUnavailable, Endpoint: oauthtest.EndpointToken, Times: 2, RetryAfter: "1"})
	hc := &http.Client{Transport: srv.Transport()} // in memory, no sockets
	for range 3 {
		req, _ := http.NewRequest(http.MethodPost, srv.TokenURL(), strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", oauthwire.BasicAuth("job", "s3cret"))
		resp, err := hc.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
		fmt.Printf("%d retry-after=%q\n", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	fmt.Println(srv.Stats().TokenPosts, srv.Stats().Faults[oauthtest.FaultUnavailable])
	// Output:
	// 503 retry-after="1"
	// 503 retry-after="1"
	// 200 retry-after=""
	// 3 2
}
