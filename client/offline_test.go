package client

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/store"
)

// serverRequests counts every request the authorization server received:
// discovery, token, device, revocation, ...
func serverRequests(as *oauthtest.Server) int {
	n := 0
	for _, v := range as.Stats().Requests {
		n += v
	}
	return n
}

// A process that finds a valid token in the store starts and makes its
// first API call without a single request to the authorization server:
// the discovery document was kept in the store by the run that logged in.
func TestOfflineStartMakesNoServerRequests(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{})
	forgetDiscovery(e.as.Issuer())
	first := e.loggedIn(t)
	first.Close() // the last Client of the issuer: the process forgets the document

	e.as.ResetStats()
	c := e.client(t)
	hc, err := c.HTTPClient(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, hc, e.api.URL()+"/things"); code != 200 {
		t.Fatalf("API answered %d: %s", code, body)
	}
	if n := serverRequests(e.as); n != 0 {
		st := e.as.Stats()
		t.Fatalf("New and the first API call made %d requests to the authorization server (%v, discovery %v), want 0", n, st.Requests, st.Discovery)
	}
}

// With the authorization server stopped, a new process still reports its
// status, and Logout deletes the login locally and says what it could not
// revoke.
func TestStatusAndLogoutWithServerDown(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{})
	forgetDiscovery(e.as.Issuer())
	first := e.loggedIn(t)
	first.Close()
	e.as.Close()

	c := e.client(t)
	in, err := c.LoggedIn(t.Context())
	if err != nil || !in {
		t.Fatalf("LoggedIn = %v, %v with the server down; want true", in, err)
	}
	res, err := c.Logout(t.Context())
	var le *LogoutError
	if !errors.As(err, &le) || !errors.Is(err, ErrNetwork) {
		t.Fatalf("Logout = %v, want a *LogoutError matching ErrNetwork", err)
	}
	if !res.Found || !res.LocalDeleted || !le.LocalDeleted || len(res.Revoked) != 0 {
		t.Fatalf("Logout result %+v, want found, deleted locally, nothing revoked", res)
	}
	if !slices.Contains(le.NotRevoked, "refresh token") {
		t.Fatalf("NotRevoked = %q, want the refresh token named", le.NotRevoked)
	}
	st, err := c.Status(t.Context())
	if err != nil || st.LoggedIn || st.HasRefreshToken {
		t.Fatalf("Status after Logout = %+v, %v; want logged out", st, err)
	}
	if _, err := e.store.Load(t.Context(), mustDefault(t, c).key.String()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the login is still stored after an offline Logout (%v)", err)
	}
}

// A stored document older than an hour is used at once, and fetched again
// in the background for the next start; one older than a week is fetched
// before New returns, unless the server cannot be reached: then the old one
// still serves (Status, Logout), with a warning.
func TestStoredDiscoveryAge(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newFixture(t, oauthtest.Config{}, inMemory())
		forgetDiscovery(e.as.Issuer())
		c := e.client(t)
		g := c.grant
		first := g.loadDiscovery(t.Context())
		if first == nil {
			t.Fatal("New kept no discovery document in the store")
		}
		c.Close()

		time.Sleep(2 * time.Hour) // the bubble's clock
		e.as.ResetStats()
		c = e.client(t)
		if n := serverRequests(e.as); n != 0 {
			t.Fatalf("New made %d requests with a two-hour-old stored document, want 0", n)
		}
		synctest.Wait()
		if n := serverRequests(e.as); n != 0 {
			t.Fatalf("%d requests before the background revalidation was due", n)
		}
		time.Sleep(revalidateDelay)
		synctest.Wait() // the background revalidation
		if n := len(e.as.Stats().Discovery); n == 0 {
			t.Fatal("the two-hour-old document was not revalidated in the background")
		}
		if again := g.loadDiscovery(t.Context()); again == nil || !again.at.After(first.at) {
			t.Fatal("the revalidated document was not kept")
		}
		c.Close()

		time.Sleep(8 * 24 * time.Hour)
		e.as.ResetStats()
		c = e.client(t)
		if n := len(e.as.Stats().Discovery); n == 0 {
			t.Fatal("New used an eight-day-old document without asking the server")
		}
		c.Close()

		time.Sleep(8 * 24 * time.Hour)
		e.as.Close()
		c = e.client(t)
		if _, err := c.Status(t.Context()); err != nil {
			t.Fatalf("Status with the server down and an old document: %v", err)
		}
		if !strings.Contains(e.log.String(), "using the discovery document kept since") {
			t.Fatal("no warning that an old stored document is in use")
		}
	})
}

// A stored document is checked like a fetched one: one that names another
// issuer is not used, and the server is asked.
func TestStoredDiscoveryChecked(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{})
	forgetDiscovery(e.as.Issuer())
	c := e.client(t)
	key := c.grant.discoveryKey()
	ent, err := e.store.Load(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	ent.Extra[extraDocument] = strings.ReplaceAll(ent.Extra[extraDocument], e.as.Issuer(), "https://evil.example")
	if err := e.store.Save(t.Context(), key, ent); err != nil {
		t.Fatal(err)
	}
	c.Close()

	e.as.ResetStats()
	c = e.client(t)
	if n := len(e.as.Stats().Discovery); n == 0 {
		t.Fatal("New used a stored document that names another issuer")
	}
	if c.endpoints.TokenURL != e.as.TokenURL() {
		t.Fatalf("token URL %q, want the server's", c.endpoints.TokenURL)
	}
}

// Logout leaves nothing behind: the kept discovery document goes with the
// login.
func TestLogoutDeletesKeptDiscovery(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{})
	c := e.loggedIn(t)
	key := c.grant.discoveryKey()
	if _, err := e.store.Load(t.Context(), key); err != nil {
		t.Fatalf("no discovery document kept after the login: %v", err)
	}
	if _, err := c.Logout(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Load(t.Context(), key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the discovery document is still kept after Logout (%v)", err)
	}
}

// With the server unreachable and no document kept (nothing was ever
// stored), New still starts: Status and Logout answer from the store, and
// the first operation that needs the server asks for the document again,
// and works once the server is back.
func TestStartWithServerDownAndNothingKept(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{})
	forgetDiscovery(e.as.Issuer())
	e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultBadGateway, Endpoint: oauthtest.EndpointDiscovery, Times: 4})
	c := e.client(t)
	if in, err := c.LoggedIn(t.Context()); err != nil || in {
		t.Fatalf("LoggedIn = %v, %v; want false, nil", in, err)
	}
	res, err := c.Logout(t.Context())
	if err != nil || res.Found {
		t.Fatalf("Logout = %+v, %v; want nothing found, no error", res, err)
	}
	// The server is still busy: the login reports the discovery failure.
	if err := c.Login(t.Context()); !errors.Is(err, ErrDiscovery) || !errors.Is(err, ErrTemporarilyUnavailable) {
		t.Fatalf("Login with the server busy = %v, want ErrDiscovery and ErrTemporarilyUnavailable", err)
	}
	// Back: the next login fetches the document and signs in.
	login(t, c)
	if in, err := c.LoggedIn(t.Context()); err != nil || !in {
		t.Fatalf("LoggedIn after the login = %v, %v", in, err)
	}
}

// A job that starts while the server is busy gets its token once the
// server is back: the endpoints are asked for again outside the token
// cache's lock, and a failure to learn them reads as nothing sent (not as
// a token request whose answer was lost).
func TestClientCredentialsAfterServerBack(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{Clients: []oauthtest.Client{{ID: "job", Secret: "job-secret"}}})
	forgetDiscovery(e.as.Issuer())
	e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultBadGateway, Endpoint: oauthtest.EndpointDiscovery, Times: 4})
	c := e.client(t, clientCredentials("job", "job-secret"))
	hc, err := c.HTTPClient(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hc.Get(e.api.URL() + "/things"); !errors.Is(err, ErrDiscovery) {
		t.Fatalf("API call with the server busy = %v, want ErrDiscovery", err)
	}
	if n := e.as.Stats().TokenPosts; n != 0 {
		t.Fatalf("%d token requests without known endpoints", n)
	}
	// The faults are used up: the next call learns the endpoints (after
	// the cache's backoff, which a new Client of its own does not have).
	c.Close()
	c = e.client(t, clientCredentials("job", "job-secret"))
	hc, _ = c.HTTPClient(t.Context())
	if code, body := get(t, hc, e.api.URL()+"/things"); code != 200 {
		t.Fatalf("API answered %d %s once the server was back", code, body)
	}
}

// A kept document serves only the client that fetched it: another client
// ID (another application, perhaps with a transport of its own) asks the
// server.
func TestStoredDiscoveryPerClient(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{Clients: []oauthtest.Client{{ID: "job", Secret: "job-secret"}, {ID: "other", Secret: "other-secret"}}})
	forgetDiscovery(e.as.Issuer())
	e.client(t, clientCredentials("job", "job-secret")).Close()
	e.as.ResetStats()
	e.client(t, clientCredentials("job", "job-secret")).Close()
	if n := len(e.as.Stats().Discovery); n != 0 {
		t.Fatalf("the same client fetched the document again (%v)", e.as.Stats().Discovery)
	}
	e.client(t, clientCredentials("other", "other-secret")).Close()
	if n := len(e.as.Stats().Discovery); n == 0 {
		t.Fatal("another client used the document this one kept")
	}
}

// A kept document that does not fit the configuration, with the server
// down so that no current one can be fetched, fails New with both causes:
// the person can tell a server that is down from a configuration that is
// wrong.
func TestStoredDiscoveryMisfitWithServerDown(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{Clients: []oauthtest.Client{{ID: "job", Secret: "job-secret"}}})
	forgetDiscovery(e.as.Issuer())
	c := e.client(t, clientCredentials("job", "job-secret"))
	key := c.grant.discoveryKey()
	c.Close()
	ent, err := e.store.Load(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	// The kept document now lists only public clients.
	doc := ent.Extra[extraDocument]
	i := strings.Index(doc, `"token_endpoint_auth_methods_supported":[`)
	if i < 0 {
		t.Fatalf("no auth methods in the document: %s", doc)
	}
	j := i + strings.Index(doc[i:], "]")
	ent.Extra[extraDocument] = doc[:i] + `"token_endpoint_auth_methods_supported":["none"` + doc[j:]
	if err := e.store.Save(t.Context(), key, ent); err != nil {
		t.Fatal(err)
	}
	e.as.Close()
	cfg := e.config()
	clientCredentials("job", "job-secret")(&cfg)
	_, err = New(t.Context(), with(cfg))
	if !errors.Is(err, ErrInvalidConfig) || !errors.Is(err, ErrNetwork) || !errors.Is(err, ErrDiscovery) {
		t.Fatalf("New = %v; want ErrDiscovery with ErrInvalidConfig and ErrNetwork", err)
	}
	if !strings.Contains(err.Error(), "could not be reached") {
		t.Fatalf("New = %v; want it to say the server could not be reached", err)
	}
}
