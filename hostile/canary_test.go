package hostile

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenward/tokenward/client"
	"github.com/tokenward/tokenward/internal/canary"
	"github.com/tokenward/tokenward/internal/fakekeychain"
	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/store"
)

// TestCanaryScan runs representative flows with canary secrets everywhere
// (client secret, codes, PKCE verifiers, access, refresh and ID tokens,
// secrets echoed by a failing keychain and by the server's error
// descriptions) and scans every captured log line of the client, the store
// and the fake server at every level, every error in its %v, %+v and %#v
// forms, every event and the status for any of them: tokens reach logs
// through error strings, echoed request bodies and keychain tools that
// repeat their input. The examples' own output is scanned by their tests
// (examples/*/main_test.go) and their documented output by
// TestCanaryExampleOutputs.
func TestCanaryScan(t *testing.T) {
	t.Parallel()
	// A public client for the login and a confidential one with a canary
	// secret (registered up front: discovery is cached per process).
	secret := canary.New("secret")
	w := newWorld(t, oauthtest.Config{IDToken: true, Clients: []oauthtest.Client{
		{ID: oauthtest.DefaultClientID, RedirectURIs: []string{"http://127.0.0.1/callback", "http://[::1]/callback"}},
		{ID: "job", Secret: secret, AuthMethod: oauthtest.AuthClientSecretPost},
	}})
	storeLog := &syncBuffer{}
	fk := fakekeychain.NewSecretService()
	dir := t.TempDir()
	st, err := store.Open(t.Context(), func(o *store.Options) {
		o.Mode, o.Backend, o.LockDir, o.Dir, o.Timeout = store.ModeKeychain, fk, dir, dir, storeTimeout
		o.Logger = slog.New(slog.NewTextHandler(storeLog, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	if err != nil {
		t.Fatal(err)
	}
	w.st = st
	var secrets []string
	rec := w.rec.err

	// 1. Login in the browser, capturing the code and the verifier's
	// challenge from the redirect.
	cfg := w.config()
	var code, challenge string
	cfg.OpenBrowser = func(u string) error {
		go func() {
			redirect, err := w.as.Authorize(context.Background(), u)
			if err != nil {
				return
			}
			code = redirect.Query().Get("code")
			pu, _ := url.Parse(u)
			challenge = pu.Query().Get("code_challenge")
			oauthtest.Deliver(context.Background(), redirect.String())
		}()
		return nil
	}
	c := w.newClient(cfg)
	if err := rec(c.Login(t.Context())); err != nil {
		t.Fatal(err)
	}
	e0, _ := w.stored()
	secrets = append(secrets, code, challenge, e0.AccessToken, e0.RefreshToken, e0.IDToken)

	// 2. Refresh failures of every kind, each followed by recovery.
	inject := []oauthtest.Fault{
		{Kind: oauthtest.FaultStatus500}, {Kind: oauthtest.FaultBadGateway}, {Kind: oauthtest.FaultUnavailable},
		{Kind: oauthtest.FaultRateLimited, RetryAfter: "3"}, {Kind: oauthtest.FaultReset}, {Kind: oauthtest.FaultHugeBody, Size: 4 << 20},
		{Kind: oauthtest.FaultMalformedJSON, Before: true}, {Kind: oauthtest.FaultHTMLPage}, {Kind: oauthtest.FaultRedirect},
		{Kind: oauthtest.FaultOAuthError, Code: "invalid_request", Description: "bad refresh_token=" + e0.RefreshToken + " client_secret=" + e0.AccessToken},
	}
	for _, f := range inject {
		f.Endpoint, f.Grant, f.Times = oauthtest.EndpointToken, oauthtest.GrantRefreshToken, 1
		w.as.InjectFault(f)
		w.forceRefresh(c)
		rec(tokenEventually(t, c, 5*time.Second))
	}
	// 3. The keychain fails a write echoing the secret it was given (as
	// macOS security does in its error messages), after a rotation.
	fk.SetHook(func(call fakekeychain.Call) error {
		if call.Op == fakekeychain.OpSet {
			return errors.New("security: SecKeychainItemModifyContent: " + call.Secret + " could not be written")
		}
		return nil
	})
	w.forceRefresh(c)
	fk.SetHook(nil)
	rec(tokenEventually(t, c, 5*time.Second))
	// 4. A non-Bearer answer and an invalid_grant whose description repeats
	// the refresh token.
	cur, _ := w.stored()
	secrets = append(secrets, cur.AccessToken, cur.RefreshToken)
	w.as.Update(func(c *oauthtest.Config) { c.TokenType = "DPoP" })
	w.forceRefresh(c)
	rec(tokenEventually(t, c, 200*time.Millisecond))
	w.as.Update(func(c *oauthtest.Config) { c.TokenType = "Bearer" })
	w.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultOAuthError, Endpoint: oauthtest.EndpointToken, Grant: oauthtest.GrantRefreshToken, Code: "invalid_grant",
		Description: "refresh token " + cur.RefreshToken + " was revoked", Times: 1})
	w.forceRefresh(c)
	rec(tokenEventually(t, c, 200*time.Millisecond))
	st2, err := c.Status(t.Context())
	rec(err)
	// 5. Logout with a failing revocation endpoint (after a new login).
	w.as.ClearFaults()
	if err := rec(c.Login(t.Context())); err != nil {
		t.Fatal(err)
	}
	e1, _ := w.stored()
	secrets = append(secrets, e1.AccessToken, e1.RefreshToken, e1.IDToken, code, challenge)
	w.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultStatus500, Endpoint: oauthtest.EndpointRevocation})
	_, lerr := c.Logout(t.Context())
	rec(lerr)

	// 6. A confidential client with a canary secret: client_secret_post
	// through 503 retries (go-retryablehttp logs), a redirect and a rejected
	// secret.
	jc := w.config()
	jc.ClientID, jc.ClientSecret, jc.Grant, jc.OpenBrowser, jc.AuthMethod = "job", secret, client.GrantClientCredentials, nil, client.AuthSecretPost
	jc.Store = nil
	jc.StoreOptions = []func(*store.Options){func(o *store.Options) {
		o.Mode, o.Dir, o.LockDir = store.ModePlaintextFile, filepath.Join(dir, "plain"), dir
		o.Logger = slog.New(slog.NewTextHandler(storeLog, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}}
	j := w.newClient(jc)
	w.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultUnavailable, Endpoint: oauthtest.EndpointToken, Times: 2})
	jt, err := j.Token(t.Context())
	if rec(err) != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, secret, jt.AccessToken)
	hc, _ := j.HTTPClient(t.Context())
	if resp, err := hc.Get(w.api.URL() + "/job?access_token=" + jt.AccessToken); rec(err) == nil {
		resp.Body.Close()
	}
	bad := jc
	bad.ClientSecret = canary.New("secret")
	bad.Profile = "wrong-secret"
	secrets = append(secrets, bad.ClientSecret)
	b := w.newClient(bad)
	_, err = b.Token(t.Context())
	if !errors.Is(rec(err), client.ErrClientRejected) {
		t.Fatalf("a rejected client secret: %v", err)
	}
	st3, _ := j.Status(t.Context())

	for _, p := range w.as.RefreshPresentations() {
		secrets = append(secrets, p.Token)
	}
	secrets = append(secrets, w.api.Tokens()...)
	for i, s := range secrets {
		if s == "" {
			t.Fatalf("canary %d was not captured; the scan would prove nothing", i)
		}
	}
	haystack := strings.Join([]string{w.log.String(), storeLog.String(), w.asLog.String(), w.rec.String(),
		fmt.Sprintf("%+v %#v %+v", st2, st2, st3), fmt.Sprintf("%v %+v %#v", c, c, st)}, "\n")
	for _, want := range []string{"level=DEBUG", "level=WARN", "level=ERROR", "retryablehttp", "store: "} {
		if !strings.Contains(haystack, want) {
			t.Fatalf("the captured output has no %q: too little to prove anything", want)
		}
	}
	if found := findSecrets(haystack, secrets...); len(found) != 0 {
		t.Fatalf("secrets leaked into logs, errors, events or status: %v", found)
	}
	t.Logf("scanned %d bytes (%d log lines, %d error forms and events) for %d canaries: none found",
		len(haystack), strings.Count(haystack, "\n"), len(w.rec.texts), len(secrets))
}

// TestWorldScanFindsLeaks proves that the canary scan every matrix row
// runs when it ends (world.scanSecrets) can fail: a secret the server
// issued, planted whole or truncated in each scanned source, is found.
func TestWorldScanFindsLeaks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		plant func(w *world, secret string)
	}{
		{"client-log", func(w *world, s string) { fmt.Fprintf(w.log, "level=DEBUG msg=refresh token=%s\n", s) }},
		{"recorded-error", func(w *world, s string) { w.rec.err(fmt.Errorf("refresh: %w", errors.New("bad token "+s[4:]))) }},
		{"server-log", func(w *world, s string) { fmt.Fprintf(w.asLog, "level=INFO msg=token rt=%s\n", s) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, oauthtest.Config{})
			rt := w.seed()
			if found, _ := w.leaks(); len(found) != 0 {
				t.Fatalf("the scan found secrets before any were planted: %v", found)
			}
			tc.plant(w, rt)
			if found, _ := w.leaks(); len(found) == 0 {
				t.Fatal("a refresh token planted in the scanned output was not found")
			}
			// Clear the plant so that the world's own end-of-test scan passes.
			w.log, w.asLog, w.rec = &syncBuffer{}, &syncBuffer{}, &recorder{}
		})
	}
}

// TestCanaryExampleOutputs scans the documented output ("// Output:") of
// every runnable example in the module for token-shaped strings and canary
// cores: go test checks that the examples print exactly that.
func TestCanaryExampleOutputs(t *testing.T) {
	t.Parallel()
	n := 0
	err := filepath.WalkDir("..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != ".." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || !strings.HasPrefix(fn.Name.Name, "Example") {
				continue
			}
			for _, cg := range f.Comments {
				if cg.Pos() < fn.Body.Lbrace || cg.End() > fn.Body.Rbrace {
					continue
				}
				text := cg.Text()
				if i := strings.Index(text, "Output:"); i >= 0 {
					n++
					if found := findSecrets(text[i:]); len(found) != 0 {
						t.Errorf("%s: %s prints secrets: %v", path, fn.Name.Name, found)
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Fatalf("found only %d example outputs; the scan is broken", n)
	}
	t.Logf("%d example outputs scanned", n)
}

// fuzzTargets are the parsers of untrusted input and their fuzz targets.
var fuzzTargets = []struct{ parser, dir, name string }{
	{"token response", "../internal/oauthwire", "FuzzParseTokenResponse"},
	{"error response", "../internal/oauthwire", "FuzzParseErrorResponse"},
	{"discovery document", "../internal/oauthwire", "FuzzParseDiscovery"},
	{"WWW-Authenticate", "../transport", "FuzzParseChallenges"},
	{"stored entry", "../store", "FuzzDecodeEntry"},
	{"JWT payload (exp)", "../internal/tokenx", "FuzzJWTExpiry"},
}

// TestFuzzTargetsExist checks that every parser of untrusted input keeps its
// fuzz target and a seed corpus under testdata/fuzz (make fuzz runs them).
func TestFuzzTargetsExist(t *testing.T) {
	t.Parallel()
	for _, ft := range fuzzTargets {
		files, _ := filepath.Glob(filepath.Join(ft.dir, "*_test.go"))
		found := false
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), "func "+ft.name+"(f *testing.F)") {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no %s in %s", ft.parser, ft.name, ft.dir)
		}
		seeds, _ := os.ReadDir(filepath.Join(ft.dir, "testdata", "fuzz", ft.name))
		if len(seeds) == 0 {
			t.Errorf("%s: no seed corpus in %s/testdata/fuzz/%s", ft.parser, ft.dir, ft.name)
		}
	}
}
