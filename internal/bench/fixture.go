package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/client"
	"github.com/tokenward/tokenward/internal/canary"
	"github.com/tokenward/tokenward/internal/redact"
	"github.com/tokenward/tokenward/oauthtest"
)

// The clients compared, as they appear in the output.
const (
	Tokenward = "tokenward"
	XOAuth2   = "x-oauth2"
)

// The grants the stampede can use.
const (
	// GrantLogin is a user login: a refresh token (rotated on every use,
	// with reuse detection) renews the access token.
	GrantLogin = "login"
	// GrantClientCredentials is a server job: a new token per lifetime.
	GrantClientCredentials = "client_credentials"
)

// jobClientID is the confidential client registered for client credentials;
// logins use oauthtest.DefaultClientID, a public client.
const jobClientID = "bench-job"

// fixture is one fake authorization server with one protected API.
type fixture struct {
	as       *oauthtest.Server
	api      *oauthtest.API
	secret   string // the job client's secret (a canary)
	inMemory bool
	conns    int // idle connections kept per host by newBase
}

// newFixture starts a server whose token endpoint answers after latency and
// issues access tokens living lifetime.
func newFixture(lifetime, latency time.Duration, inMemory bool, conns int) (*fixture, error) {
	secret := canary.New("secret")
	as, err := oauthtest.New(oauthtest.Config{
		InMemory:            inMemory,
		AccessTokenLifetime: lifetime,
		Clients: []oauthtest.Client{
			{ID: jobClientID, Secret: secret, AuthMethod: oauthtest.AuthClientSecretBasic},
			{ID: oauthtest.DefaultClientID, RedirectURIs: []string{"http://127.0.0.1/callback", "http://[::1]/callback"}},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("bench: starting the fake authorization server: %w", err)
	}
	api, err := as.NewAPI("")
	if err != nil {
		as.Close()
		return nil, fmt.Errorf("bench: starting the protected API: %w", err)
	}
	if latency > 0 {
		as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultDelay, Endpoint: oauthtest.EndpointToken, Delay: latency})
	}
	return &fixture{as: as, api: api, secret: secret, inMemory: inMemory, conns: conns}, nil
}

func (f *fixture) close() { f.as.Close() }

// newBase returns a base transport of its own for one client under test:
// the server's in-memory transport, or a clone of http.DefaultTransport
// that keeps enough idle connections for every worker (the default of 2 per
// host would open and close a connection for most requests and measure the
// kernel instead). Both clients get the same settings.
func (f *fixture) newBase() http.RoundTripper {
	if f.inMemory {
		return f.as.Transport()
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = max(f.conns, 2)
	return t
}

// target is the URL every request goes to.
func (f *fixture) target() string { return f.api.URL() + "/items" }

// jobConfig is the tokenward configuration of the client-credentials job,
// as a user would write it: discovery from the issuer, the API's origin,
// client_secret_basic.
func (f *fixture) jobConfig(base http.RoundTripper) client.Options {
	return client.Options{
		Issuer:                f.as.Issuer(),
		ClientID:              jobClientID,
		ClientSecret:          f.secret,
		AuthMethod:            client.AuthSecretBasic,
		Grant:                 client.GrantClientCredentials,
		APIOrigins:            []string{f.api.URL()},
		AllowInsecureLoopback: true,
		HTTP:                  client.HTTPSettings{Transport: base},
	}
}

// loginConfig is the tokenward configuration of the public login client.
func (f *fixture) loginConfig(base http.RoundTripper) client.Options {
	return client.Options{
		Issuer:                f.as.Issuer(),
		ClientID:              oauthtest.DefaultClientID,
		APIOrigins:            []string{f.api.URL()},
		AllowInsecureLoopback: true,
		Prompt:                io.Discard,
		HTTP:                  client.HTTPSettings{Transport: base},
	}
}

// withBase returns ctx carrying an *http.Client over base, which is how
// x/oauth2 is told which transport to use for token requests and, through
// NewClient, for the API requests.
func withBase(ctx context.Context, base http.RoundTripper) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, &http.Client{Transport: base})
}

// get sends one GET to url and reads the whole answer. Anything but 200 is
// an error.
func get(ctx context.Context, hc *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("bench: the API answered %s", resp.Status)
	}
	return err
}

// describe returns a short description of err that is safe to print: the
// OAuth error code of a token-endpoint failure (x/oauth2's error string
// carries the response body), else the error text with anything
// secret-shaped removed.
func describe(err error) string {
	if err == nil {
		return ""
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		if re.ErrorCode != "" {
			return "token endpoint: " + re.ErrorCode
		}
		if re.Response != nil {
			return "token endpoint: " + re.Response.Status
		}
	}
	return redact.Truncate(redact.String(err.Error()), 200)
}
