package client

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/store"
)

// forgetDiscovery drops issuer's entry from the process-wide discovery
// cache. oauthtest issuers are 127.0.0.1 URLs with random ports, and a port
// freed by an earlier test's server may come back: its cached document
// would make the fetch counts below 0.
func forgetDiscovery(issuer string) {
	discoveryCache.Lock()
	delete(discoveryCache.m, issuer)
	discoveryCache.Unlock()
}

// Discovery tries RFC 8414 first and falls back to OpenID Connect when it
// answers 404, and New's promise holds: Clients of one issuer open at the
// same time share one fetch, and later operations fetch nothing; after the
// last one closes, the next New fetches again.
func TestDiscoveryFallbackAndCache(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		oidcOnly bool
		want     map[string]int // fetches per well-known path
	}{
		{"rfc8414", false, map[string]int{oauthwire.WellKnownOAuth: 1}},
		{"oidc-fallback", true, map[string]int{oauthwire.WellKnownOAuth: 1, oauthwire.WellKnownOpenID: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newFixture(t, oauthtest.Config{OIDCDiscoveryOnly: tc.oidcOnly})
			forgetDiscovery(e.as.Issuer())
			cc := e.confidential(t, "job", "job-secret", oauthtest.AuthClientSecretPost)
			cc.AuthMethod = "" // chosen from the discovered document
			c1 := mustNew(t, cc)
			if diff := cmp.Diff(tc.want, e.as.Stats().Discovery); diff != "" {
				t.Fatalf("discovery fetches after New (-want +got):\n%s", diff)
			}
			wantEP := Endpoints{AuthURL: e.as.AuthorizeURL(), TokenURL: e.as.TokenURL(), DeviceAuthURL: e.as.DeviceAuthorizationURL(), RevocationURL: e.as.RevocationURL(), PARURL: e.as.PARURL()}
			if diff := cmp.Diff(wantEP, c1.endpoints); diff != "" {
				t.Fatalf("endpoints (-want +got):\n%s", diff)
			}
			hc, err := c1.HTTPClient(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if code, body := get(t, hc, e.api.URL()+"/things"); code != 200 {
				t.Fatalf("API answered %d: %s", code, body)
			}
			if n := e.as.Stats().Grants[oauthtest.GrantClientCredentials]; n != 1 {
				t.Fatalf("client_credentials POSTs = %d, want 1", n)
			}

			// More Clients for the issuer (another grant, another
			// profile) and more operations: no discovery request.
			c2 := e.client(t)
			login(t, c2)
			c3 := mustNew(t, func() Options { c := e.config(); c.Profile = "second"; return c }())
			login(t, c3)
			forceRefresh(t, c1)
			if _, err := c1.Token(t.Context()); err != nil {
				t.Fatal(err)
			}
			if _, err := c2.Logout(t.Context()); err != nil {
				t.Fatal(err)
			}
			st := e.as.Stats()
			if diff := cmp.Diff(tc.want, st.Discovery); diff != "" {
				t.Fatalf("discovery fetches after three Clients (-want +got):\n%s", diff)
			}
			if st.CodeExchanges != 2 || st.Revocations == 0 {
				t.Fatalf("code exchanges = %d, revocations = %d: the discovered endpoints were not used", st.CodeExchanges, st.Revocations)
			}

			// Closing one Client keeps the document for the others. Once
			// the last one closes, the next New would take it from the
			// store (see TestOfflineStartMakesNoServerRequests), but c2's
			// Logout deleted it there: it is fetched again.
			c1.Close()
			c2.Close()
			c4 := e.client(t)
			c4.Close()
			if diff := cmp.Diff(tc.want, e.as.Stats().Discovery); diff != "" {
				t.Fatalf("discovery fetches with one Client still open (-want +got):\n%s", diff)
			}
			c3.Close()
			e.as.ResetStats()
			e.client(t) // closed by its cleanup
			if diff := cmp.Diff(tc.want, e.as.Stats().Discovery); diff != "" {
				t.Fatalf("discovery fetches after every Client closed and a Logout (-want +got):\n%s", diff)
			}
		})
	}
}

// A failed discovery is typed (ErrDiscovery, plus the cause's own
// sentinel) and says what happened at which URL, not that a token refresh
// failed.
func TestDiscoveryErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		status int
		also   error
	}{
		{"not-found", http.StatusNotFound, nil},
		{"server-error", http.StatusBadGateway, ErrTemporarilyUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				io.WriteString(w, `{"error":"invalid_client"}`) // meaningless here
			}))
			t.Cleanup(srv.Close)
			st, _ := store.Open(t.Context(), func(o *store.Options) { o.Mode = store.ModeMemory })
			c, err := New(t.Context(), with(Options{Issuer: srv.URL, ClientID: "job", ClientSecret: "s",
				Grant: GrantClientCredentials, Resources: []string{"https://api.example/"},
				AllowInsecureLoopback: true, Store: st}))
			if tc.also != nil {
				// A busy server may be back soon: New goes on without the
				// document, and the first request that needs the server
				// asks again and reports the failure.
				if err != nil {
					t.Fatalf("New = %v, want it to start without the document", err)
				}
				defer c.Close()
				_, err = c.Token(t.Context())
			}
			if !errors.Is(err, ErrDiscovery) {
				t.Fatalf("New = %v, want ErrDiscovery", err)
			}
			if tc.also != nil && !errors.Is(err, tc.also) {
				t.Fatalf("New = %v, want it to match %v too", err, tc.also)
			}
			if errors.Is(err, ErrClientRejected) {
				t.Fatalf("New = %v: a discovery URL's error body was read as a token-endpoint error", err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "client: discovery: ") {
				t.Errorf("error %q does not start with the operation, client: discovery:", msg)
			}
			for _, want := range []string{oauthwire.WellKnownOAuth, oauthwire.WellKnownOpenID, fmt.Sprintf("HTTP %d", tc.status)} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not say %q", msg, want)
				}
			}
			if strings.Contains(msg, "refresh") {
				t.Errorf("error %q talks about a token refresh", msg)
			}
		})
	}
}

func TestDiscoveryIssuerMismatch(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{DiscoveryIssuer: "https://evil.example"})
	_, err := New(t.Context(), with(e.config()))
	if !errors.Is(err, ErrIssuerMismatch) {
		t.Fatalf("New = %v, want ErrIssuerMismatch", err)
	}
}

func TestExplicitEndpointsWithoutDiscovery(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{})
	cfg := e.confidential(t, "job", "job-secret", oauthtest.AuthClientSecretBasic)
	cfg.Issuer = ""
	cfg.Endpoints = Endpoints{TokenURL: e.as.TokenURL()}
	cfg.AuthMethod = AuthSecretBasic
	c := mustNew(t, cfg)
	if _, err := c.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := e.as.Stats().Requests[oauthtest.EndpointDiscovery]; n != 0 {
		t.Fatalf("discovery requested %d times", n)
	}
}

// With explicit endpoints (no issuer), a server that sends iss (RFC 9207)
// does not make every login fail; a discovery issuer mismatch is never
// ignored, even with explicit endpoints.
func TestIssuerChecks(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{})
	cfg := e.config()
	cfg.Issuer = ""
	cfg.Endpoints = Endpoints{AuthURL: e.as.AuthorizeURL(), TokenURL: e.as.TokenURL()}
	c := mustNew(t, cfg)
	login(t, c)

	bad := newFixture(t, oauthtest.Config{DiscoveryIssuer: "https://evil.example"})
	cfg = bad.config()
	cfg.Endpoints = Endpoints{TokenURL: bad.as.TokenURL()}
	if _, err := New(t.Context(), with(cfg)); !errors.Is(err, ErrIssuerMismatch) {
		t.Fatalf("New with a mismatched discovery issuer and explicit endpoints = %v", err)
	}
}

// A discovery the server never answers ends after Options.HTTP.Timeout
// with the same error as any other endpoint's silence:
// ErrTokenEndpointTimeout (and ErrNetwork), besides ErrDiscovery. New goes
// on without the document; the login, which needs it, reports the failure.
func TestDiscoveryTimeout(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newFixture(t, oauthtest.Config{}, inMemory())
		forgetDiscovery(e.as.Issuer())
		release := make(chan struct{})
		defer close(release)
		e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultHang, Endpoint: oauthtest.EndpointDiscovery, Release: release})
		cfg := e.config()
		cfg.HTTP.Timeout = 3 * time.Second
		c, err := New(t.Context(), with(cfg))
		if err != nil {
			t.Fatalf("New = %v, want it to start without the document", err)
		}
		defer c.Close()
		err = c.Login(t.Context(), WithDevice())
		for _, want := range []error{ErrDiscovery, ErrTokenEndpointTimeout, ErrNetwork} {
			if !errors.Is(err, want) {
				t.Errorf("New = %v, want it to match %v", err, want)
			}
		}
		if err != nil && !strings.Contains(err.Error(), "no answer within 3s") {
			t.Errorf("New = %v, want it to say how long it waited", err)
		}
	})
}
