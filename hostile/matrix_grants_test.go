package hostile

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokenward/tokenward/client"
	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/store"
)

// TestLoginFaults covers the single-use authorization code at the token
// endpoint: a non-Bearer token type and a redirect fail typed, store nothing
// and send the code once. (503, 502, reset, lost response and timeout of the
// code exchange: client.TestOnePostPerSingleUseRequest.)
func TestLoginFaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		inject func(*world)
		want   error
	}{
		{"DPoP", update(func(c *oauthtest.Config) { c.TokenType = "DPoP" }), client.ErrUnsupportedTokenType},
		{"redirect", func(w *world) {
			w.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultRedirect, Endpoint: oauthtest.EndpointToken, Grant: oauthtest.GrantAuthorizationCode})
		}, client.ErrBadResponse},
		{"1GiB-body", func(w *world) {
			w.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultHugeBody, Endpoint: oauthtest.EndpointToken, Grant: oauthtest.GrantAuthorizationCode})
		}, client.ErrBadResponse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, oauthtest.Config{})
			c := w.newClient(w.config())
			tc.inject(w)
			start := time.Now()
			err := w.rec.err(c.Login(t.Context()))
			within(t, "Login", time.Since(start), 5*time.Second)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Login = %v, want %v", err, tc.want)
			}
			if _, ok := w.stored(); ok {
				t.Fatal("a failed login stored tokens")
			}
			st := w.as.Stats()
			if st.Grants[oauthtest.GrantAuthorizationCode] != 1 || st.CodeReuses != 0 {
				t.Fatalf("code exchange requests %d, code reuses %d; want 1 and 0", st.Grants[oauthtest.GrantAuthorizationCode], st.CodeReuses)
			}
			if reqs := w.as.Trap().Requests(); len(reqs) != 0 {
				t.Fatalf("the code exchange followed a redirect (%d requests at the trap)", len(reqs))
			}
		})
	}
}

// TestClientCredentialsFaults covers the retryable grant: Retry-After is
// honoured (a longer one is capped: client.TestRetryAfterCapped) and a
// redirect never carries the client secret to another origin.
func TestClientCredentialsFaults(t *testing.T) {
	t.Parallel()
	setup := func(t *testing.T, method string) (*world, client.Options, string) {
		w := newWorld(t, oauthtest.Config{})
		secret := canarySecret()
		if err := w.as.Update(func(c *oauthtest.Config) {
			c.Clients = []oauthtest.Client{{ID: "job", Secret: secret, AuthMethod: method}}
		}); err != nil {
			t.Fatal(err)
		}
		cfg := w.config()
		cfg.ClientID, cfg.ClientSecret, cfg.Grant, cfg.OpenBrowser = "job", secret, client.GrantClientCredentials, nil
		return w, cfg, secret
	}
	t.Run("429-retry-after-honoured", func(t *testing.T) {
		t.Parallel()
		w, cfg, _ := setup(t, oauthtest.AuthClientSecretBasic)
		cfg.HTTP.RetryWaitMax = 3 * time.Second
		c := w.newClient(cfg)
		w.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultRateLimited, Endpoint: oauthtest.EndpointToken, RetryAfter: "1", Times: 1})
		start := time.Now()
		if _, err := c.Token(t.Context()); err != nil {
			t.Fatalf("Token = %v", w.rec.err(err))
		}
		d := time.Since(start)
		if d < time.Second || d > 3*time.Second {
			t.Fatalf("the retry came after %v; Retry-After asked for 1 s", d)
		}
		if n := w.as.Stats().Grants[oauthtest.GrantClientCredentials]; n != 2 {
			t.Fatalf("%d token requests, want 2", n)
		}
	})
	for _, method := range []string{oauthtest.AuthClientSecretBasic, oauthtest.AuthClientSecretPost} {
		t.Run("redirect/"+method, func(t *testing.T) {
			t.Parallel()
			w, cfg, secret := setup(t, method)
			c := w.newClient(cfg)
			w.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultRedirect, Endpoint: oauthtest.EndpointToken, Status: http.StatusTemporaryRedirect})
			_, err := c.Token(t.Context())
			if !errors.Is(w.rec.err(err), client.ErrBadResponse) {
				t.Fatalf("Token = %v, want ErrBadResponse", err)
			}
			if reqs := w.as.Trap().Requests(); len(reqs) != 0 {
				t.Fatalf("the token request followed the redirect (%d at the trap)", len(reqs))
			}
			if f := findSecrets(w.log.String()+w.rec.String(), secret); len(f) != 0 {
				t.Fatalf("the client secret leaked: %v", f)
			}
		})
	}
}

// TestDiscoveryIssuerMismatch: a discovery document naming another issuer
// fails New with ErrIssuerMismatch before any token request, and nothing is
// written to the store: neither a token nor the document. (The bare error:
// client.TestDiscoveryIssuerMismatch.)
func TestDiscoveryIssuerMismatch(t *testing.T) {
	t.Parallel()
	w := newWorld(t, oauthtest.Config{DiscoveryIssuer: "https://evil.example"})
	cfg := w.config()
	dir := filepath.Join(t.TempDir(), "tokens")
	cfg.Store = nil
	cfg.StoreOptions = []func(*store.Options){func(o *store.Options) {
		o.Mode, o.Dir, o.LockDir, o.Passphrase = store.ModeEncryptedFile, dir, dir, "hostile"
	}}
	c, err := client.New(t.Context(), func(opts *client.Options) { *opts = cfg })
	if err == nil {
		c.Close()
		t.Fatal("New accepted a discovery document for another issuer")
	}
	if !errors.Is(w.rec.err(err), client.ErrIssuerMismatch) {
		t.Fatalf("New = %v, want ErrIssuerMismatch", err)
	}
	if n := w.as.Stats().TokenPosts; n != 0 {
		t.Fatalf("%d token requests after a mismatched discovery", n)
	}
	des, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	// The store is opened before discovery (it may hold the document of an
	// earlier run), so its directory may exist; it must hold nothing.
	for _, de := range des {
		t.Errorf("the store directory holds %s after a mismatched discovery", de.Name())
	}
}
