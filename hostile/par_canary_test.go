package hostile

import (
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/tokenward/tokenward/client"
	"github.com/tokenward/tokenward/oauthtest"
)

// A confidential client whose logins are pushed (the server requires
// pushed authorization requests), its canary secret sent as
// client_secret_post with every push: through 503 retries of the push
// (go-retryablehttp logs), a refused secret and an access_denied whose
// descriptions echo the secret, a successful login and a token. The
// world's scan (the client's log, every error and event, the server's
// log) finds the secret nowhere, nor any token or code.
func TestCanaryScanPAR(t *testing.T) {
	t.Parallel()
	secret := canarySecret()
	w := newWorld(t, oauthtest.Config{RequirePAR: true, Clients: []oauthtest.Client{
		{ID: "web", Secret: secret, AuthMethod: oauthtest.AuthClientSecretPost, RedirectURIs: []string{"http://127.0.0.1/callback"}},
	}})
	cfg := w.config()
	cfg.ClientID, cfg.ClientSecret = "web", secret
	cfg.AuthParams = url.Values{"login_hint": {"ada@example.com"}}
	c := w.newClient(cfg)

	w.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultOAuthError, Endpoint: oauthtest.EndpointPAR, Status: 401, Code: "invalid_client",
		Description: "client_secret=" + secret + " is wrong", Times: 1})
	if err := w.rec.err(c.Login(t.Context())); !errors.Is(err, client.ErrClientRejected) {
		t.Fatalf("a refused push: %v, want ErrClientRejected", err)
	}
	w.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultOAuthError, Endpoint: oauthtest.EndpointPAR, Status: 400, Code: "access_denied",
		Description: "not for you, " + secret, Times: 1})
	if err := w.rec.err(c.Login(t.Context())); !errors.Is(err, client.ErrAccessDenied) {
		t.Fatalf("a denied push: %v, want ErrAccessDenied", err)
	}
	w.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultUnavailable, Endpoint: oauthtest.EndpointPAR, Times: 2})
	if err := w.rec.err(c.Login(t.Context())); err != nil {
		t.Fatalf("a push after two 503s: %v", err)
	}
	if err := w.rec.err(tokenEventually(t, c, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if st := w.as.Stats(); st.PushedRequests != 1 || st.Requests[oauthtest.EndpointPAR] != 5 {
		t.Errorf("PushedRequests %d, PAR requests %d; want 1 and 5", st.PushedRequests, st.Requests[oauthtest.EndpointPAR])
	}
}
