package client

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/canary"
	"github.com/tokenward/tokenward/oauthtest"
)

// Canary secrets (client secret, tokens, codes, PKCE verifiers) never reach
// logs or error strings, at any level, including the go-retryablehttp
// path.
func TestCanarySecrets(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{IDToken: true}, recordWire())
	secret := canary.New("secret")
	var errs []string
	var errsMu sync.Mutex
	record := func(err error) {
		if err != nil {
			errsMu.Lock()
			errs = append(errs, err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err))
			errsMu.Unlock()
		}
	}
	// Confidential client: retries (go-retryablehttp logs), 503s, errors.
	cc := e.confidential(t, "job", secret, oauthtest.AuthClientSecretPost)
	cc.HTTP.Transport = nil // the recorder is for the login below
	cc.Events = func(ev Event) { record(ev.Err) }
	c1 := mustNew(t, cc)
	e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultUnavailable, Endpoint: oauthtest.EndpointToken, Times: 2})
	tok1, err := c1.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultUnavailable, Endpoint: oauthtest.EndpointToken})
	forceRefresh(t, c1)
	_, err = c1.Token(t.Context())
	record(err)
	e.as.ClearFaults()

	// Login: codes (from the redirects) and PKCE verifiers (from the token
	// POSTs on the wire), tokens. The first code exchange fails, so its
	// code and verifier pass through the error paths too.
	cfg := e.config()
	wire := e.wire
	type authz struct{ code, challenge string }
	captured := make(chan authz, 2)
	cfg.OpenBrowser = func(u string) error {
		redirect, err := e.as.Authorize(context.Background(), u)
		if err != nil {
			return err
		}
		pu, _ := url.Parse(u)
		captured <- authz{redirect.Query().Get("code"), pu.Query().Get("code_challenge")}
		return oauthtest.Deliver(context.Background(), redirect.String())
	}
	cfg.Events = func(ev Event) { record(ev.Err) }
	c2 := mustNew(t, cfg)
	e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultResponseLost, Endpoint: oauthtest.EndpointToken, Grant: oauthtest.GrantAuthorizationCode, Times: 1})
	err = c2.Login(t.Context())
	if !errors.Is(err, ErrNetwork) {
		t.Fatalf("Login with a lost response = %v, want ErrNetwork", err)
	}
	record(err)
	login(t, c2)
	tok2, _ := c2.Token(t.Context())
	exchanges := wire.posts(oauthtest.PathToken, oauthtest.GrantAuthorizationCode)
	if len(exchanges) != 2 {
		t.Fatalf("%d code exchanges on the wire, want 2", len(exchanges))
	}
	var codes, verifiers []string
	for i, x := range exchanges {
		a := <-captured
		code, verifier := x.form.Get("code"), x.form.Get("code_verifier")
		if code != a.code || oauth2.S256ChallengeFromVerifier(verifier) != a.challenge {
			t.Fatalf("exchange %d: the code or verifier on the wire does not match its authorization request", i)
		}
		codes, verifiers = append(codes, code), append(verifiers, verifier)
	}
	stored, _ := e.store.Load(t.Context(), c2.baseKey().String())
	// A refresh that fails with invalid_grant after a reset.
	e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultReset, Endpoint: oauthtest.EndpointToken, Times: 1})
	forceRefresh(t, c2)
	_, err = c2.Token(t.Context())
	record(err)
	e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultOAuthError, Endpoint: oauthtest.EndpointToken, Code: "invalid_grant", Description: "token " + stored.RefreshToken + " revoked", Times: 1})
	mustDefault(t, c2).cache.Invalidate(tok2)
	_, err = c2.Token(t.Context())
	record(err)
	e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultStatus500, Endpoint: oauthtest.EndpointRevocation})
	res, err := c2.Logout(t.Context())
	record(err)
	errs = append(errs, fmt.Sprintf("%+v %v", res, res))
	st, _ := c2.Status(t.Context())
	errs = append(errs, fmt.Sprintf("%+v", st))

	secrets := append([]string{secret, tok1.AccessToken, tok2.AccessToken, stored.RefreshToken, stored.IDToken}, append(codes, verifiers...)...)
	for _, s := range secrets {
		if s == "" {
			t.Fatal("a canary was not captured; the test would prove nothing")
		}
	}
	errsMu.Lock()
	haystack := e.log.String() + strings.Join(errs, "\n")
	errsMu.Unlock()
	if len(lines(e.log.String())) < 10 || !strings.Contains(e.log.String(), "level=DEBUG") {
		t.Fatalf("too little logging to prove anything:\n%s", e.log.String())
	}
	if !strings.Contains(e.log.String(), "retryablehttp") {
		t.Fatal("the go-retryablehttp path did not log")
	}
	if found := canary.Find(haystack, secrets...); len(found) != 0 {
		t.Fatalf("%d secrets leaked into logs or errors", len(found))
	}
}
