package oauthwire_test

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/internal/tokenx"
)

func ExampleParseTokenResponse() {
	sent := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	h := http.Header{"Content-Type": {"application/json;charset=UTF-8"}}
	// expires_in as a float string: x/oauth2 would reject the whole response.
	body := []byte(`{"access_token":"at-1","token_type":"Bearer","expires_in":"3599.5","refresh_token":"rt-1","scope":"read"}`)
	tok, err := oauthwire.ParseTokenResponse(200, h, body, sent)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(tok.TokenType, tok.ExpiresIn, tok.Expiry.Format(time.TimeOnly), tokenx.Scope(tok))

	_, err = oauthwire.ParseTokenResponse(400, h, []byte(`{"error":"invalid_grant","error_description":"Token revoked"}`), sent)
	var oe *oauthwire.Error
	if errors.As(err, &oe) {
		fmt.Println(oe.Code, "-", err)
	}
	// Output:
	// Bearer 3599 12:59:59 read
	// invalid_grant - invalid_grant (HTTP 400): Token revoked
}

func ExampleParseErrorResponse() {
	h := http.Header{"Content-Type": {"text/html"}, "Retry-After": {"30"}}
	e := oauthwire.ParseErrorResponse(502, h, []byte("<html><head><title>502 Bad Gateway</title></head><body>...</body></html>"))
	fmt.Println(e.Temporary(), e.RetryAfter)
	fmt.Println(e)
	// Output:
	// true 30s
	// HTTP 502 (text/html): 502 Bad Gateway; retry after 30s
}

func ExampleParseDiscovery() {
	doc := []byte(`{"issuer":"https://as.example.com","token_endpoint":"https://as.example.com/token"}`)
	d, err := oauthwire.ParseDiscovery(doc, "https://as.example.com")
	fmt.Println(d.TokenEndpoint, err)
	_, err = oauthwire.ParseDiscovery(doc, "https://other.example.com")
	fmt.Println(errors.Is(err, oauthwire.ErrIssuerMismatch))
	// Output:
	// https://as.example.com/token <nil>
	// true
}
