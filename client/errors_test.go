package client

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/internal/redact"
	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/refresh"
	"github.com/tokenward/tokenward/store"
	"github.com/tokenward/tokenward/transport"
)

// One concept, one name: every package's invalid-configuration error
// matches ErrInvalidConfig, whichever package's name the caller uses.
func TestInvalidConfigOneName(t *testing.T) {
	t.Parallel()
	_, storeErr := store.Open(t.Context(), func(o *store.Options) { o.Mode = "no-such-mode" })
	_, transportErr := transport.New(nil)
	_, refreshErr := refresh.New("", nil)
	for name, err := range map[string]error{"store.Open": storeErr, "transport.New": transportErr, "refresh.New": refreshErr} {
		for _, target := range []error{ErrInvalidConfig, store.ErrInvalidConfig, transport.ErrInvalidConfig, refresh.ErrInvalidConfig} {
			if !errors.Is(err, target) {
				t.Errorf("%s: %v does not match %v", name, err, target)
			}
		}
	}
}

// Each operation's failure says which operation failed, in one prefix
// ("client: <operation>: "), then what happened, without an internal
// package's name or a phrase repeated by nested wrapping, and still matches
// its sentinels and types.
func TestErrorMessagesNameTheOperation(t *testing.T) {
	t.Parallel()
	type outcome struct {
		err  error
		also error // a nested error with its own operation (revocation, inside logout), or nil
	}
	cases := []struct {
		name   string
		run    func(t *testing.T) outcome
		prefix string
		nested string // prefix of also
		is     []error
		as     func(error) bool
	}{
		{
			name: "discovery 404",
			run: func(t *testing.T) outcome {
				e := newFixture(t, oauthtest.Config{})
				forgetDiscovery(e.as.Issuer())
				e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultOAuthError, Status: http.StatusNotFound, Endpoint: oauthtest.EndpointDiscovery})
				c, err := New(t.Context(), with(e.config()))
				if err == nil {
					c.Close()
				}
				return outcome{err: err}
			},
			prefix: "client: discovery: ",
			is:     []error{ErrDiscovery},
			as:     isEndpointError,
		},
		{
			name: "device authorization 500",
			run: func(t *testing.T) outcome {
				e := newFixture(t, oauthtest.Config{})
				c := e.client(t)
				e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultStatus500, Endpoint: oauthtest.EndpointDeviceAuthorization})
				return outcome{err: c.Login(t.Context(), WithDevice())}
			},
			prefix: "client: device authorization: ",
			is:     []error{ErrTemporarilyUnavailable},
			as:     isEndpointError,
		},
		{
			name: "revocation 500",
			run: func(t *testing.T) outcome {
				e := newFixture(t, oauthtest.Config{})
				c := e.loggedIn(t)
				e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultStatus500, Endpoint: oauthtest.EndpointRevocation})
				_, err := c.Logout(t.Context())
				var ee *EndpointError
				if !errors.As(err, &ee) {
					t.Fatalf("Logout = %v, want it to hold the revocation's *EndpointError", err)
				}
				return outcome{err: err, also: ee}
			},
			prefix: "client: logout: ",
			nested: "client: revocation: ",
			is:     []error{ErrTemporarilyUnavailable},
			as:     func(err error) bool { var le *LogoutError; return errors.As(err, &le) && isEndpointError(err) },
		},
		{
			name: "refresh invalid_grant",
			run: func(t *testing.T) outcome {
				e := newFixture(t, oauthtest.Config{})
				c := e.loggedIn(t)
				e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultOAuthError, Endpoint: oauthtest.EndpointToken, Grant: oauthtest.GrantRefreshToken,
					Code: "invalid_grant", Description: "Token revoked"})
				forceRefresh(t, c)
				_, err := c.Token(t.Context())
				return outcome{err: err}
			},
			prefix: "client: token request (refresh_token): ",
			is:     []error{ErrReauthRequired},
			as:     isEndpointError,
		},
		{
			name: "not logged in",
			run: func(t *testing.T) outcome {
				_, err := newFixture(t, oauthtest.Config{}).client(t).Token(t.Context())
				return outcome{err: err}
			},
			prefix: "client: token request (refresh_token): ",
			is:     []error{ErrReauthRequired},
		},
		{
			name: "not logged in, another resource",
			run: func(t *testing.T) outcome {
				e := newFixture(t, oauthtest.Config{})
				apiB := oauthtest.StartAPI(t, e.as, "")
				c := e.client(t, func(o *Options) { o.Resources = append(o.Resources, apiB.Resource()) })
				r, err := c.ForResource(apiB.Resource())
				if err != nil {
					t.Fatal(err)
				}
				_, err = r.Token(t.Context())
				return outcome{err: err}
			},
			prefix: "client: token request (refresh_token): ",
			is:     []error{ErrReauthRequired},
		},
		{
			name: "client credentials invalid_client",
			run: func(t *testing.T) outcome {
				e := newFixture(t, oauthtest.Config{})
				cfg := e.confidential(t, "job", "job-secret", oauthtest.AuthClientSecretBasic)
				cfg.ClientSecret = "not-the-secret"
				_, err := mustNew(t, cfg).Token(t.Context())
				return outcome{err: err}
			},
			prefix: "client: token request (client_credentials): ",
			is:     []error{ErrClientRejected},
			as:     isEndpointError,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := tc.run(t)
			if o.err == nil {
				t.Fatal("no error")
			}
			t.Logf("%s", o.err)
			checkMessage(t, o.err.Error(), tc.prefix)
			if o.also != nil {
				checkMessage(t, o.also.Error(), tc.nested)
				if want := strings.TrimPrefix(tc.nested, "client: "); !strings.Contains(o.err.Error(), want) {
					t.Errorf("%q does not say %q", o.err, want)
				}
			}
			for _, target := range tc.is {
				if !errors.Is(o.err, target) {
					t.Errorf("%v does not match %v", o.err, target)
				}
			}
			if tc.as != nil && !tc.as(o.err) {
				t.Errorf("%v is not of the expected types", o.err)
			}
		})
	}
}

func isEndpointError(err error) bool {
	var ee *EndpointError
	return errors.As(err, &ee)
}

// checkMessage checks one error message: it starts with prefix, has no
// nested "client: " prefix, names no internal package, repeats no phrase and is safe to print
// on a terminal.
func checkMessage(t *testing.T, msg, prefix string) {
	t.Helper()
	if !strings.HasPrefix(msg, prefix) {
		t.Errorf("%q does not start with %q", msg, prefix)
	}
	for _, bad := range []string{"oauthwire", "refresh: ", "token refresh failed", "tokenward: "} {
		if strings.Contains(msg, bad) {
			t.Errorf("%q contains %q", msg, bad)
		}
	}
	for _, nested := range []string{": client: ", "; client: ", "(client: "} {
		if strings.Contains(msg, nested) {
			t.Errorf("%q repeats the client: prefix", msg)
		}
	}
	parts := strings.Split(msg, ": ")
	for i := 1; i < len(parts); i++ {
		if parts[i] == parts[i-1] {
			t.Errorf("%q repeats %q", msg, parts[i])
		}
	}
	for _, k := range append(slices.Clone(kinds), ErrDiscovery, ErrBadResponse, ErrLoginExpired, ErrAccessDenied) {
		if phrase := unprefixed(k.Error()); strings.Count(msg, phrase) > 1 {
			t.Errorf("%q repeats %q", msg, phrase)
		}
	}
	if redact.Terminal(msg) != msg {
		t.Errorf("%q holds characters a terminal could act on", msg)
	}
}

// The package documentation's error section lists every sentinel the
// package exports, so a user reading it learns every case to branch on (a
// locked keychain among them, which ErrStoreUnavailable does not match).
func TestDocListsEverySentinel(t *testing.T) {
	t.Parallel()
	fset := token.NewFileSet()
	var doc string
	var sentinels []string
	for _, name := range []string{"doc.go", "errors.go", "client.go"} {
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		if f.Doc != nil {
			doc += f.Doc.Text()
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.VAR {
				continue
			}
			for _, spec := range g.Specs {
				for _, n := range spec.(*ast.ValueSpec).Names {
					if n.IsExported() && strings.HasPrefix(n.Name, "Err") {
						sentinels = append(sentinels, n.Name)
					}
				}
			}
		}
	}
	_, section, ok := strings.Cut(doc, "# Errors")
	if !ok {
		t.Fatal("the package documentation has no Errors section")
	}
	section, _, _ = strings.Cut(section, "\n# ")
	if len(sentinels) < 10 {
		t.Fatalf("found only %d sentinels: %q", len(sentinels), sentinels)
	}
	for _, s := range sentinels {
		if !strings.Contains(section, "["+s+"]") {
			t.Errorf("the Errors section of doc.go does not list [%s]", s)
		}
	}
}

// invalid_scope and invalid_target have sentinels of their own (under
// ErrClientRejected): the fix is in Options.Scopes or Options.Resources.
func TestInvalidScopeAndTarget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		code string
		want error
		not  error
	}{
		{"invalid_scope", ErrInvalidScope, ErrInvalidTarget},
		{"invalid_target", ErrInvalidTarget, ErrInvalidScope},
	} {
		t.Run(tc.code, func(t *testing.T) {
			t.Parallel()
			e := newFixture(t, oauthtest.Config{Clients: []oauthtest.Client{{ID: "job", Secret: "job-secret"}}})
			c := e.client(t, clientCredentials("job", "job-secret"))
			e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultOAuthError, Endpoint: oauthtest.EndpointToken, Code: tc.code})
			_, err := c.Token(t.Context())
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrClientRejected) || errors.Is(err, tc.not) {
				t.Fatalf("Token = %v, want %v (and ErrClientRejected), not %v", err, tc.want, tc.not)
			}
		})
	}
}

// A server that rejects the client, when Options.AuthMethod was left empty
// and the method chosen from discovery, hears which method was used, what
// the server lists, and to set AuthMethod.
func TestInvalidClientNamesAuthMethod(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{})
	cfg := e.confidential(t, "poster", "post-secret", oauthtest.AuthClientSecretPost)
	cfg.AuthMethod = ""
	c := mustNew(t, cfg)
	e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultOAuthError, Endpoint: oauthtest.EndpointToken, Status: 401, Code: "invalid_client"})
	_, err := c.Token(t.Context())
	if !errors.Is(err, ErrClientRejected) {
		t.Fatalf("Token = %v, want ErrClientRejected", err)
	}
	listed := strings.Join(c.disco.TokenEndpointAuthMethodsSupported, ", ")
	for _, want := range []string{"authenticated with " + string(c.method), "Options.AuthMethod is empty", "the server lists " + listed, "set Options.AuthMethod"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "post-secret") {
		t.Fatal("the client secret is in the error")
	}
}

// retryAfterHinter is the method the token cache looks for in a failed
// refresh's error to learn the server's Retry-After (refresh.Upstream).
type retryAfterHinter interface{ RetryAfterHint() time.Duration }

var (
	_ retryAfterHinter = (*RateLimitError)(nil)
	_ retryAfterHinter = (*EndpointError)(nil)
)

// The server's Retry-After reaches the token cache: a *RateLimitError and
// an *EndpointError whose answer carried one report it through their
// RetryAfterHint method, also after forCache and the cache's own
// classification wrapped them.
func TestRetryAfterHintSurvivesWrapping(t *testing.T) {
	t.Parallel()
	op := opToken("refresh_token")
	answered := func(retryAfter time.Duration) error {
		return &EndpointError{Endpoint: "https://as.example/token", Status: 500,
			Err: refresh.Classify(&oauthwire.Error{StatusCode: 500, Code: "server_error", RetryAfter: retryAfter})}
	}
	for _, tc := range []struct {
		name string
		err  error
		want time.Duration
	}{
		{"rate-limit", &RateLimitError{Endpoint: "https://as.example/token", Status: 429, RetryAfter: 2 * time.Minute}, 2 * time.Minute},
		{"rate-limit-without-hint", &RateLimitError{Status: 429}, 0},
		{"endpoint-500", answered(90 * time.Second), 90 * time.Second},
		{"endpoint-without-hint", answered(0), 0},
		{"network", &EndpointError{Err: netCause(errors.New("connection reset"))}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, err := range []error{tc.err, forCache(inOp(op, tc.err)), refresh.Classify(forCache(inOp(op, tc.err)))} {
				var h retryAfterHinter
				if !errors.As(err, &h) {
					t.Fatalf("%v: no RetryAfterHinter in the chain", err)
				}
				if got := h.RetryAfterHint(); got != tc.want {
					t.Fatalf("%v: RetryAfterHint = %v, want %v", err, got, tc.want)
				}
			}
		})
	}
}

// A scope refused in the browser's callback (RFC 6749 section 4.1.2.1)
// matches ErrInvalidScope, as one refused by the token endpoint does.
func TestInvalidScopeInCallback(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{Clients: []oauthtest.Client{{ID: oauthtest.DefaultClientID, Scopes: []string{"read"}, RedirectURIs: []string{"http://127.0.0.1/callback"}}}})
	c := e.client(t, func(o *Options) { o.Scopes = []string{"admin"} })
	err := c.Login(t.Context())
	if !errors.Is(err, ErrInvalidScope) || !errors.Is(err, ErrCallbackRejected) {
		t.Fatalf("Login = %v, want ErrInvalidScope and ErrCallbackRejected", err)
	}
}

// A short client secret that the server echoes in its error description
// never reaches an error: the client knows its own secret and removes it,
// whatever its length.
func TestShortSecretEchoedByServer(t *testing.T) {
	t.Parallel()
	const secret = "pa55w0rdX"
	e := newFixture(t, oauthtest.Config{Clients: []oauthtest.Client{{ID: "job", Secret: secret}}})
	for _, code := range []string{"invalid_request", "invalid_client", "access_denied", "invalid_scope"} {
		// A Client (and token cache) per answer: a cache that has just
		// failed answers with its last error until its backoff ends.
		c := e.client(t, clientCredentials("job", secret), func(o *Options) { o.Profile = code })
		e.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultOAuthError, Endpoint: oauthtest.EndpointToken, Code: code, Description: "not for you " + secret, Times: 1})
		_, err := c.Token(t.Context())
		if err == nil {
			t.Fatalf("%s: Token succeeded", code)
		}
		for _, text := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
			if strings.Contains(text, secret) {
				t.Fatalf("%s: the client secret is in the error: %s", code, text)
			}
		}
	}
	if n := e.as.Stats().Requests[oauthtest.EndpointToken]; n != 4 {
		t.Fatalf("%d token requests, want 4 (one per answer)", n)
	}
	if strings.Contains(e.log.String(), secret) {
		t.Fatal("the client secret is in the log")
	}
}
