package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenward/tokenward/internal/canary"
	"github.com/tokenward/tokenward/oauthtest"
)

// browserURLs records the URLs a Client asks the browser to open, and
// lets the fake server play the browser for each.
type browserURLs struct {
	mu   sync.Mutex
	urls []string
}

func (b *browserURLs) opener(as *oauthtest.Server) func(*Options) {
	return func(o *Options) {
		o.OpenBrowser = func(u string) error {
			b.mu.Lock()
			b.urls = append(b.urls, u)
			b.mu.Unlock()
			go as.Browse(context.Background(), u)
			return nil
		}
	}
}

func (b *browserURLs) last(t *testing.T) *url.URL {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.urls) == 0 {
		t.Fatal("no browser was opened")
	}
	u, err := url.Parse(b.urls[len(b.urls)-1])
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// checkPushed checks that the last login was pushed: the URL the browser
// opened, and the request the authorization endpoint received, carry
// client_id and request_uri alone, and the push carried every
// authorization parameter, extra ones included.
func checkPushed(t *testing.T, as *oauthtest.Server, opened *url.URL) {
	t.Helper()
	want := []string{"client_id", "request_uri"}
	if got := paramNames(opened.Query()); !slices.Equal(got, want) {
		t.Errorf("the browser opened a URL with %v, want %v", got, want)
	}
	if got := paramNames(lastRequest(t, as, oauthtest.EndpointAuthorize, "")); !slices.Equal(got, want) {
		t.Errorf("the authorization endpoint received %v, want %v", got, want)
	}
	if !strings.HasPrefix(opened.Query().Get("request_uri"), oauthtest.RequestURIPrefix) {
		t.Errorf("request_uri %q", opened.Query().Get("request_uri"))
	}
	pushed := lastRequest(t, as, oauthtest.EndpointPAR, "")
	for _, k := range []string{"response_type", "client_id", "redirect_uri", "state", "code_challenge", "code_challenge_method", "scope", "resource", "login_hint"} {
		if !pushed.Has(k) {
			t.Errorf("the push lacks %s: %v", k, paramNames(pushed))
		}
	}
}

// A server that requires pushed authorization requests (discovery says
// so) gets them without the application asking: the login works, through
// one push, and the browser's request names only client_id and
// request_uri.
func TestLoginUsesPARWhenRequired(t *testing.T) {
	t.Parallel()
	f := newFixture(t, oauthtest.Config{RequirePAR: true})
	var b browserURLs
	c := f.client(t, b.opener(f.as), func(o *Options) { o.AuthParams = url.Values{"login_hint": {"ada"}} })
	login(t, c)
	if n := f.as.Stats().PushedRequests; n != 1 {
		t.Errorf("PushedRequests = %d, want 1", n)
	}
	checkPushed(t, f.as, b.last(t))
}

// Options.UsePAR pushes with a server that does not require it, for a
// public client and for confidential ones, whose push authenticates as
// the token request does; without UsePAR the same server gets the
// parameters in the browser's URL.
func TestLoginUsePAROptIn(t *testing.T) {
	t.Parallel()
	f := newFixture(t, oauthtest.Config{})
	var b browserURLs
	login(t, f.client(t, b.opener(f.as)))
	if n := f.as.Stats().PushedRequests; n != 0 {
		t.Errorf("pushed without UsePAR: %d", n)
	}
	if q := b.last(t).Query(); !q.Has("code_challenge") || q.Has("request_uri") {
		t.Errorf("browser URL without UsePAR: %v", paramNames(q))
	}

	for _, method := range []string{oauthtest.AuthNone, oauthtest.AuthClientSecretBasic, oauthtest.AuthClientSecretPost} {
		f := newFixture(t, oauthtest.Config{})
		secret := ""
		id := oauthtest.DefaultClientID
		if method != oauthtest.AuthNone {
			id, secret = "web-"+method, canary.New("secret")
			registerLoginClient(t, f, id, secret, method)
		}
		var b browserURLs
		c := f.client(t, b.opener(f.as), func(o *Options) {
			o.UsePAR, o.ClientID, o.ClientSecret = true, id, secret
			o.AuthParams = url.Values{"login_hint": {"ada"}}
		})
		if err := c.Login(t.Context()); err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		if st := f.as.Stats(); st.PushedRequests != 1 || st.ClientAuthFailures != 0 {
			t.Errorf("%s: PushedRequests %d, ClientAuthFailures %d", method, st.PushedRequests, st.ClientAuthFailures)
		}
		checkPushed(t, f.as, b.last(t))
	}

	// private_key_jwt: the push carries a fresh assertion, which the
	// server accepts for its PAR endpoint.
	f = newFixture(t, oauthtest.Config{})
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.as.Update(func(c *oauthtest.Config) {
		c.Clients = append(c.Clients, oauthtest.Client{ID: "web-jwt", PublicKey: &key.PublicKey, RedirectURIs: []string{"http://127.0.0.1/callback"}})
	}); err != nil {
		t.Fatal(err)
	}
	forgetDiscovery(f.as.Issuer())
	c := f.client(t, func(o *Options) { o.UsePAR, o.ClientID, o.PrivateKey = true, "web-jwt", key })
	if err := c.Login(t.Context()); err != nil {
		t.Fatalf("private_key_jwt: %v", err)
	}
	if st := f.as.Stats(); st.PushedRequests != 1 || st.ClientAuthFailures != 0 {
		t.Errorf("private_key_jwt: PushedRequests %d, ClientAuthFailures %d", st.PushedRequests, st.ClientAuthFailures)
	}
	if pushed := lastRequest(t, f.as, oauthtest.EndpointPAR, ""); pushed.Get("client_assertion") == "" {
		t.Error("the push carried no client assertion")
	}
}

// registerLoginClient registers a confidential client that logs users in
// through the browser, and forgets the discovery document New would reuse
// (it lists the authentication methods).
func registerLoginClient(t *testing.T, f *fixture, id, secret, method string) {
	t.Helper()
	if err := f.as.Update(func(c *oauthtest.Config) {
		c.Clients = append(c.Clients, oauthtest.Client{ID: id, Secret: secret, AuthMethod: method,
			RedirectURIs: []string{"http://127.0.0.1/callback"}})
	}); err != nil {
		t.Fatal(err)
	}
	forgetDiscovery(f.as.Issuer())
}

// UsePAR without an endpoint to push to is a configuration error: at New
// when no discovery can name one, at Login (before a browser opens) when
// the discovered document names none.
func TestUsePARWithoutEndpoint(t *testing.T) {
	t.Parallel()
	f := newFixture(t, oauthtest.Config{DisabledEndpoints: []string{oauthtest.EndpointPAR}})
	cfg := f.config()
	cfg.Issuer, cfg.UsePAR = "", true
	cfg.Endpoints = Endpoints{AuthURL: f.as.AuthorizeURL(), TokenURL: f.as.TokenURL()}
	if _, err := New(t.Context(), with(cfg)); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "PARURL") {
		t.Errorf("New = %v, want ErrInvalidConfig naming PARURL", err)
	}

	var b browserURLs
	c := f.client(t, b.opener(f.as), func(o *Options) { o.UsePAR = true })
	err := c.Login(t.Context())
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "UsePAR") {
		t.Errorf("Login = %v, want ErrInvalidConfig naming UsePAR", err)
	}
	if len(b.urls) != 0 || f.as.Stats().Requests[oauthtest.EndpointAuthorize] != 0 {
		t.Error("a browser was opened")
	}
}

// Error answers of the PAR endpoint name the operation and are typed: a
// 5xx is retried (the push holds no single-use credential), a refused
// client matches ErrClientRejected, access_denied ErrAccessDenied with an
// *AuthorizationError, an unusable success answer ErrBadResponse. The
// client secret appears in no error and no log line, even when the server
// echoes it.
func TestPARErrors(t *testing.T) {
	t.Parallel()
	secret := canary.New("secret")
	f := newFixture(t, oauthtest.Config{})
	registerLoginClient(t, f, "web", secret, oauthtest.AuthClientSecretPost)
	var logs syncBuffer
	c := f.client(t, func(o *Options) {
		o.ClientID, o.ClientSecret, o.UsePAR = "web", secret, true
		o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	var errs []string

	f.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultStatus500, Endpoint: oauthtest.EndpointPAR, Times: 1})
	if err := c.Login(t.Context()); err != nil {
		t.Fatalf("a push after one 500: %v", err)
	}
	if n := f.as.Stats().Requests[oauthtest.EndpointPAR]; n != 2 {
		t.Errorf("PAR requests = %d, want 2 (one retry)", n)
	}

	for _, tc := range []struct {
		name  string
		fault oauthtest.Fault
		is    []error
	}{
		{"invalid_client", oauthtest.Fault{Kind: oauthtest.FaultOAuthError, Status: 401, Code: "invalid_client", Description: "bad secret " + secret}, []error{ErrClientRejected}},
		{"access_denied", oauthtest.Fault{Kind: oauthtest.FaultOAuthError, Status: 400, Code: "access_denied", Description: "audience \x1b[31mnot allowed " + secret}, []error{ErrAccessDenied}},
		{"malformed", oauthtest.Fault{Kind: oauthtest.FaultMalformedJSON}, []error{ErrBadResponse}},
		{"unavailable", oauthtest.Fault{Kind: oauthtest.FaultUnavailable}, []error{ErrTemporarilyUnavailable}},
	} {
		f.as.ClearFaults()
		tc.fault.Endpoint = oauthtest.EndpointPAR
		f.as.InjectFault(tc.fault)
		err := c.Login(t.Context())
		if err == nil {
			t.Fatalf("%s: no error", tc.name)
		}
		errs = append(errs, err.Error())
		t.Logf("%s: %v", tc.name, err)
		checkMessage(t, err.Error(), "client: pushed authorization request: ")
		var ee *EndpointError
		if !errors.As(err, &ee) || ee.Op != opPAR {
			t.Errorf("%s: %v is not an *EndpointError of the push", tc.name, err)
		}
		for _, target := range tc.is {
			if !errors.Is(err, target) {
				t.Errorf("%s: %v does not match %v", tc.name, err, target)
			}
		}
		var ae *AuthorizationError
		if errors.As(err, &ae) != (tc.name == "access_denied") {
			t.Errorf("%s: *AuthorizationError in the chain: %v", tc.name, errors.As(err, &ae))
		}
	}
	f.as.ClearFaults()
	if found := canary.Find(strings.Join(errs, "\n")+logs.String()+f.log.String(), secret); len(found) > 0 {
		t.Errorf("the client secret leaked into errors or logs")
	}
}

// A pushed request's address expires (expires_in): the prompt says for how
// long it works, for the person who opens it by hand.
func TestPARPromptSaysHowLongTheAddressWorks(t *testing.T) {
	t.Parallel()
	f := newFixture(t, oauthtest.Config{RequirePAR: true, PARLifetime: 90 * time.Second})
	prompt := &syncBuffer{}
	c := f.client(t, func(o *Options) { o.Prompt = prompt })
	login(t, c)
	if !strings.Contains(prompt.String(), "The address works for 1m30s") {
		t.Fatalf("the prompt does not say how long the address works:\n%s", prompt.String())
	}
}
