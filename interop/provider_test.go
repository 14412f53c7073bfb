package interop

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/oauth2"
	"golang.org/x/text/language"

	"github.com/tokenward/tokenward/client"
	"github.com/tokenward/tokenward/store"
)

// The identities the provider knows. The secrets and the password are
// canaries: each test checks that none of them reaches tokenward's log,
// its prompt output or an error message.
const (
	// nativeClientID is the public client the logins use: PKCE, no secret.
	// Its registered redirect URI is the loopback one of RFC 8252; the
	// provider matches any port, as section 7.3 asks.
	nativeClientID = "tokenward-cli"
	nativeRedirect = "http://127.0.0.1/callback"

	// jwtClientID is a native client that authenticates at the token
	// endpoint with private_key_jwt (RFC 7523 section 2.2), with the key
	// jwtKeyID of provider.jwtKey.
	jwtClientID = "tokenward-cli-jwt"
	jwtKeyID    = "interop-key-1"

	// serviceClientID and serviceSecret are the confidential client of the
	// client credentials grant. The secret holds characters that must be
	// form-encoded in HTTP Basic authentication (RFC 6749 section 2.3.1),
	// so a client that skips the encoding fails the test.
	serviceClientID = "tokenward-job"
	serviceSecret   = "canary-secret-7c41+b/9=z"

	// apiClientID and apiSecret are the resource server's own credentials,
	// used by the loopback API to introspect the tokens sent to it.
	apiClientID = "tokenward-api"
	apiSecret   = "canary-secret-api-52d0"

	// userName and userPassword sign in on the provider's login pages.
	// The user's ID is her username: the example's device pages record the
	// username as the subject of an approved device request, and the
	// storage then looks the subject up as an ID (any other ID makes the
	// device token request fail with server_error, "user not found").
	userID       = userName
	userName     = "alice"
	userPassword = "canary-password-e93b"
)

// canaries are the secrets that must never appear in what tokenward says.
var canaries = []string{serviceSecret, apiSecret, userPassword}

// provider is one zitadel OpenID provider on a random loopback port, with
// its example in-memory storage, the example server's login and device
// pages, and the clients and user above registered.
type provider struct {
	issuer string
	srv    *httptest.Server
	doc    providerMetadata
	jwtKey *rsa.PrivateKey // jwtClientID's private key
}

// providerMetadata is the part of the provider's discovery document the
// tests use directly (tokenward reads the document on its own).
type providerMetadata struct {
	Issuer                string `json:"issuer"`
	TokenEndpoint         string `json:"token_endpoint"`
	UserinfoEndpoint      string `json:"userinfo_endpoint"`
	IntrospectionEndpoint string `json:"introspection_endpoint"`
	RevocationEndpoint    string `json:"revocation_endpoint"`
}

// jwtClientKey is jwtClientID's key: RSA, since the provider accepts
// client assertions signed with RS256 only (its discovery document says
// so). One key serves every test: generating one costs more than a test.
var jwtClientKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// newProvider starts the provider for one test and stops it when the test
// ends. It is the suite's one fixture constructor: every test gets a
// provider of its own, so tests share no tokens, codes or sessions and can
// run in parallel.
func newProvider(t *testing.T) *provider {
	t.Helper()
	// The listener comes first: the issuer names its port, and the op
	// needs the issuer when it is built.
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String()

	users := userStore{
		userID: {
			ID: userID, Username: userName, Password: userPassword,
			FirstName: "Alice", LastName: "Example", Email: "alice@example.test", EmailVerified: true,
			PreferredLanguage: language.English,
		},
		// The example storage resolves the subject of every token it
		// introspects or answers userinfo for as a user, a client
		// credentials token's included (whose subject is the client), so
		// the service client is registered as a user too.
		serviceClientID: {ID: serviceClientID, Username: "service:" + serviceClientID, PreferredLanguage: language.English},
	}
	clients := map[string]*storage.Client{
		nativeClientID: storage.NativeClient(nativeClientID, nativeRedirect),
		jwtClientID:    storage.NativeClient(jwtClientID, nativeRedirect),
		apiClientID:    storage.WebClient(apiClientID, apiSecret),
	}
	jwtKey := jwtClientKey()
	st := &suiteStorage{
		Storage: storage.NewStorageWithClients(users, clients),
		// The example's NativeClient allows the authorization code and
		// refresh token grants only; the device flow is added so that one
		// public client covers both logins.
		extraGrants: map[string][]oidc.GrantType{nativeClientID: {oidc.GrantTypeDeviceCode}},
		// The example's constructors make public clients use "none" and
		// confidential ones a secret; private_key_jwt is set here.
		authMethods: map[string]oidc.AuthMethod{jwtClientID: oidc.AuthMethodPrivateKeyJWT},
		jwtKey:      &jose.JSONWebKey{KeyID: jwtKeyID, Use: "sig", Algorithm: string(jose.RS256), Key: &jwtKey.PublicKey},
		service:     storage.WebClient(serviceClientID, serviceSecret),
	}
	// A nil logger keeps exampleop from replacing the process's default
	// slog logger.
	srv.Config.Handler = exampleop.SetupServer(issuer, st, nil, false)
	srv.Start()
	t.Cleanup(srv.Close)

	p := &provider{issuer: issuer, srv: srv, jwtKey: jwtKey}
	resp, err := direct.Get(issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatalf("provider discovery: %v", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&p.doc); err != nil {
		t.Fatalf("provider discovery: %v", err)
	}
	if p.doc.Issuer != issuer {
		t.Fatalf("provider issuer %q, want %q", p.doc.Issuer, issuer)
	}
	return p
}

// userStore is the provider's user directory (storage.UserStore).
type userStore map[string]*storage.User

func (u userStore) GetUserByID(id string) *storage.User { return u[id] }

func (u userStore) GetUserByUsername(name string) *storage.User {
	for _, x := range u {
		if x.Username == name {
			return x
		}
	}
	return nil
}

// ExampleClientID names the example's JWT-profile service account, which
// this suite does not use.
func (u userStore) ExampleClientID() string { return "service" }

// suiteStorage is the example storage with changes of client
// registration only, not of protocol: a client may be granted more grant
// types, or another authentication method, than the example's
// constructors give it; the JWT client's public key is registered; and the
// client credentials grant authenticates the suite's service client (the
// example hard-codes its own service user and secret).
type suiteStorage struct {
	*storage.Storage
	extraGrants map[string][]oidc.GrantType
	authMethods map[string]oidc.AuthMethod
	jwtKey      *jose.JSONWebKey
	service     *storage.Client
}

// grantClient changes a registered client: more grant types, and an
// authentication method when method is set.
type grantClient struct {
	op.Client
	extra  []oidc.GrantType
	method oidc.AuthMethod
}

// AuthMethod returns the changed authentication method, if any.
func (c grantClient) AuthMethod() oidc.AuthMethod {
	if c.method != "" {
		return c.method
	}
	return c.Client.AuthMethod()
}

// GrantTypes returns the client's grant types and the added ones.
func (c grantClient) GrantTypes() []oidc.GrantType {
	return append(append([]oidc.GrantType(nil), c.Client.GrantTypes()...), c.extra...)
}

// GetClientByClientID returns the registered client with its added grants.
func (s *suiteStorage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil {
		return nil, err
	}
	g, m := s.extraGrants[id], s.authMethods[id]
	if len(g) > 0 || m != "" {
		return grantClient{Client: c, extra: g, method: m}, nil
	}
	return c, nil
}

// GetKeyByIDAndClientID returns the JWT client's public key, and the
// example's keys for anything else.
func (s *suiteStorage) GetKeyByIDAndClientID(ctx context.Context, keyID, clientID string) (*jose.JSONWebKey, error) {
	if clientID == jwtClientID {
		if keyID != jwtKeyID {
			return nil, errors.New("key not found")
		}
		k := *s.jwtKey
		return &k, nil
	}
	return s.Storage.GetKeyByIDAndClientID(ctx, keyID, clientID)
}

// ClientCredentials authenticates the service client.
func (s *suiteStorage) ClientCredentials(_ context.Context, id, secret string) (op.Client, error) {
	if id != serviceClientID || subtle.ConstantTimeCompare([]byte(secret), []byte(serviceSecret)) != 1 {
		return nil, errors.New("wrong client id or secret")
	}
	return grantClient{Client: s.service, extra: []oidc.GrantType{oidc.GrantTypeClientCredentials}}, nil
}

// ClientCredentialsTokenRequest describes the service client's token: its
// audience is the service and the API, so the API may introspect it.
func (s *suiteStorage) ClientCredentialsTokenRequest(_ context.Context, id string, scopes []string) (op.TokenRequest, error) {
	if id != serviceClientID {
		return nil, errors.New("unknown client")
	}
	return &oidc.JWTTokenRequest{Subject: id, Audience: []string{id, apiClientID}, Scopes: scopes}, nil
}

// testTimeout bounds each test's calls, so a flow that never completes
// fails the test instead of waiting for the provider's own expiry (the
// device code lives 5 minutes, and tokenward keeps polling through the
// provider's server errors until then).
const testTimeout = 25 * time.Second

// testContext returns the context of one test's calls.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// direct is an HTTP client for the tests' own calls to the provider and
// the API: loopback only, no proxy from the environment.
var direct = &http.Client{Transport: &http.Transport{Proxy: nil}}

// userinfo asks the provider's userinfo endpoint who tok belongs to. It
// fails unless the provider holds tok as a live access token.
func (p *provider) userinfo(ctx context.Context, tok string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.doc.UserinfoEndpoint, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	status, body, err := do(req)
	if err != nil {
		return "", err
	}
	if status != http.StatusOK {
		return "", fmt.Errorf("userinfo answered HTTP %d", status)
	}
	var info struct {
		Subject string `json:"sub"`
	}
	if err := json.Unmarshal(body, &info); err != nil {
		return "", fmt.Errorf("userinfo: %v", err)
	}
	return info.Subject, nil
}

// introspection is the part of an RFC 7662 answer the tests check.
type introspection struct {
	Active  bool   `json:"active"`
	Subject string `json:"sub"`
}

// introspect asks the provider's introspection endpoint about tok, as the
// API (the provider tells a resource server only about tokens whose
// audience includes it).
func (p *provider) introspect(ctx context.Context, tok string) (introspection, error) {
	var out introspection
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.doc.IntrospectionEndpoint,
		strings.NewReader(url.Values{"token": {tok}}.Encode()))
	if err != nil {
		return out, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(apiClientID), url.QueryEscape(apiSecret))
	status, body, err := do(req)
	if err != nil {
		return out, err
	}
	if status != http.StatusOK {
		return out, fmt.Errorf("introspection answered HTTP %d", status)
	}
	return out, json.Unmarshal(body, &out)
}

// revokeAccessToken revokes tok at the provider as the native client would
// (RFC 7009), as an administrator ending one access token without ending
// the login would: the refresh token stays valid.
func (p *provider) revokeAccessToken(ctx context.Context, tok string) error {
	form := url.Values{"token": {tok}, "token_type_hint": {"access_token"}, "client_id": {nativeClientID}}
	status, _, err := p.post(ctx, p.doc.RevocationEndpoint, form)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("revocation answered HTTP %d", status)
	}
	return nil
}

// refreshStatus presents a refresh token of the native client to the token
// endpoint directly and returns the answer's status and OAuth error code.
func (p *provider) refreshStatus(ctx context.Context, rt string) (int, string, error) {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {nativeClientID}}
	status, body, err := p.post(ctx, p.doc.TokenEndpoint, form)
	if err != nil {
		return 0, "", err
	}
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return status, e.Error, nil
}

func (p *provider) post(ctx context.Context, endpoint string, form url.Values) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return do(req)
}

func do(req *http.Request) (int, []byte, error) {
	resp, err := direct.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, body, err
}

// api is a small protected API on loopback. It takes the bearer token of
// each request, has verify check it with the provider, and answers 200
// with the token's subject, or 401 with an RFC 6750 invalid_token
// challenge when the provider does not vouch for the token.
type api struct {
	srv    *httptest.Server
	verify func(ctx context.Context, tok string) (string, error)

	mu         sync.Mutex
	seen       []string // the tokens presented, in order
	rejections []string // why tokens were refused, for failure messages
}

func newAPI(t *testing.T, verify func(ctx context.Context, tok string) (string, error)) *api {
	t.Helper()
	a := &api{verify: verify}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *api) serve(w http.ResponseWriter, r *http.Request) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="interop"`)
		http.Error(w, "no bearer token", http.StatusUnauthorized)
		return
	}
	a.mu.Lock()
	a.seen = append(a.seen, tok)
	a.mu.Unlock()
	sub, err := a.verify(r.Context(), tok)
	if err != nil {
		a.mu.Lock()
		a.rejections = append(a.rejections, err.Error())
		a.mu.Unlock()
		w.Header().Set("WWW-Authenticate", `Bearer realm="interop", error="invalid_token"`)
		http.Error(w, "token not accepted", http.StatusUnauthorized)
		return
	}
	fmt.Fprint(w, sub)
}

// tokens returns the bearer tokens the API has been sent, in order.
func (a *api) tokens() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.seen...)
}

// refusals returns why the API refused tokens, for failure messages.
func (a *api) refusals() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.rejections...)
}

// call sends GET / through hc and returns the status and body.
// callAs calls the API through c's HTTPClient and checks that it named
// caller and received exactly the token c hands out, which carries no
// refresh token. It returns that token.
func (a *api) callAs(ctx context.Context, t *testing.T, c *client.Client, caller string) *oauth2.Token {
	t.Helper()
	hc, err := c.HTTPClient(ctx)
	if err != nil {
		t.Fatalf("HTTPClient: %v", err)
	}
	if status, body := a.call(ctx, t, hc); status != 200 || body != caller {
		t.Fatalf("API answered %d %q, want 200 %q (rejections: %q)", status, body, caller, a.refusals())
	}
	tok, err := c.Token(ctx)
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	if got := a.tokens(); len(got) != 1 || got[0] != tok.AccessToken {
		t.Errorf("the API received %d token(s), want exactly the one the provider issued", len(got))
	}
	if tok.RefreshToken != "" {
		t.Errorf("Token hands out a refresh token")
	}
	return tok
}

func (a *api) call(ctx context.Context, t *testing.T, hc *http.Client) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.srv.URL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("API call: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("API call: %v", err)
	}
	return resp.StatusCode, string(body)
}

// syncBuffer is a bytes.Buffer safe for concurrent writers (the logger and
// the prompt are written from tokenward's goroutines).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// watchStore is a memory store that remembers the last entry saved under
// each name, so a test can see what tokenward kept (the rotated refresh
// token) without reaching into it.
type watchStore struct {
	store.Store
	mu    sync.Mutex
	saved map[string]store.Entry
}

func newWatchStore(t *testing.T) *watchStore {
	t.Helper()
	st, err := store.Open(t.Context(), func(o *store.Options) { o.Mode = store.ModeMemory })
	if err != nil {
		t.Fatal(err)
	}
	return &watchStore{Store: st, saved: map[string]store.Entry{}}
}

// Save stores e and remembers it.
func (w *watchStore) Save(ctx context.Context, name string, e *store.Entry) error {
	err := w.Store.Save(ctx, name, e)
	if err == nil {
		w.mu.Lock()
		w.saved[name] = *e
		w.mu.Unlock()
	}
	return err
}

// Delete removes the entry and forgets it.
func (w *watchStore) Delete(ctx context.Context, name string) error {
	err := w.Store.Delete(ctx, name)
	if err == nil {
		w.mu.Lock()
		delete(w.saved, name)
		w.mu.Unlock()
	}
	return err
}

// refreshTokens returns the refresh tokens of the entries saved and not
// deleted.
func (w *watchStore) refreshTokens() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, e := range w.saved {
		if e.RefreshToken != "" {
			out = append(out, e.RefreshToken)
		}
	}
	return out
}

// entries returns how many token entries are saved and not deleted (the
// client also keeps the provider's discovery document in the store, an
// entry without tokens, which is not counted).
func (w *watchStore) entries() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, e := range w.saved {
		if e.AccessToken != "" || e.RefreshToken != "" {
			n++
		}
	}
	return n
}

// session is what a test's tokenward Client writes to: its debug log, its
// prompt output and its events.
type session struct {
	log, prompt *syncBuffer
	store       *watchStore

	mu     sync.Mutex
	events []client.Event
}

// options returns a function setting the Options every test shares: the
// provider's issuer (discovery), http on loopback, the watched memory
// store, a debug logger and a prompt writing to buffers, and an events
// hook.
func (p *provider) options(t *testing.T) (*session, func(*client.Options)) {
	s := &session{log: &syncBuffer{}, prompt: &syncBuffer{}, store: newWatchStore(t)}
	return s, func(o *client.Options) {
		o.Issuer = p.issuer
		o.AllowInsecureLoopback = true
		o.Store = s.store
		o.Logger = slog.New(slog.NewTextHandler(s.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
		o.Prompt = s.prompt
		o.Events = func(e client.Event) {
			s.mu.Lock()
			s.events = append(s.events, e)
			s.mu.Unlock()
		}
	}
}

// count returns how many events of kind were emitted.
func (s *session) count(kind client.EventKind) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.events {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

// noLeaks fails the test if any canary or any of the given tokens appears
// in the log, the prompt output or the texts (error messages). Call it
// after the Client is done.
func (s *session) noLeaks(t *testing.T, tokens []string, texts ...string) {
	t.Helper()
	secrets := append(append([]string(nil), canaries...), tokens...)
	for _, where := range []struct{ name, text string }{
		{"log", s.log.String()},
		{"prompt", s.prompt.String()},
		{"error messages", strings.Join(texts, "\n")},
	} {
		for _, sec := range secrets {
			if sec != "" && strings.Contains(where.text, sec) {
				t.Errorf("a secret (%.6s...) appears in the %s", sec, where.name)
			}
		}
	}
	for _, e := range s.snapshot() {
		if e.Err == nil {
			continue
		}
		for _, sec := range secrets {
			if sec != "" && strings.Contains(e.Err.Error(), sec) {
				t.Errorf("a secret (%.6s...) appears in a %s event", sec, e.Kind)
			}
		}
	}
}

func (s *session) snapshot() []client.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]client.Event(nil), s.events...)
}

// browser plays the user's browser: it keeps cookies, follows redirects
// and fills in the provider's own login form, the way a person would.
type browser struct {
	hc   *http.Client
	done chan error // the outcome of each sign-in, for the test to check
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	// The timeout ends a sign-in that hangs, so its goroutine (started by
	// tokenward) does not outlive the test.
	hc := &http.Client{Jar: jar, Transport: &http.Transport{Proxy: nil}, Timeout: testTimeout}
	return &browser{hc: hc, done: make(chan error, 1)}
}

// open is Options.OpenBrowser: it signs in at authURL and follows the
// provider's redirects to tokenward's loopback listener.
func (b *browser) open(authURL string) error {
	err := b.signIn(authURL)
	b.done <- err
	return err
}

func (b *browser) signIn(authURL string) error {
	// The authorization endpoint redirects to the example's login page,
	// naming the pending request.
	resp, err := b.hc.Get(authURL)
	if err != nil {
		return fmt.Errorf("authorization request: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	loginPage := resp.Request.URL
	id := loginPage.Query().Get("authRequestID")
	if resp.StatusCode != http.StatusOK || id == "" {
		return fmt.Errorf("no login page: HTTP %d at %s", resp.StatusCode, loginPage.Path)
	}
	// The login form posts back to the same path (the example's template:
	// fields id, username, password); the provider then redirects through
	// its callback to the client's redirect URI.
	form := url.Values{"id": {id}, "username": {userName}, "password": {userPassword}}
	resp, err = b.hc.PostForm(loginPage.Scheme+"://"+loginPage.Host+loginPage.Path, form)
	if err != nil {
		return fmt.Errorf("login form: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	final := resp.Request.URL
	if final.Path != "/callback" || !strings.HasPrefix(final.Host, "127.0.0.1:") {
		return fmt.Errorf("the login ended at %s (HTTP %d), not at the loopback redirect", final.Path, resp.StatusCode)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the loopback redirect answered HTTP %d: %.200s", resp.StatusCode, body)
	}
	return nil
}

// approveDevice signs in on the provider's device pages and answers the
// request, the way a person on another device would: the code form, the
// login form, then the confirmation page with action "allowed" or
// "denied".
func (b *browser) approveDevice(ctx context.Context, d client.DeviceCode, action string) error {
	get := func(u string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		return b.hc.Do(req)
	}
	post := func(u string, form url.Values) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return b.hc.Do(req)
	}
	check := func(step string, resp *http.Response, err error, want string) error {
		if err != nil {
			return fmt.Errorf("%s: %v", step, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			return fmt.Errorf("%s: HTTP %d at %s: %.300s", step, resp.StatusCode, resp.Request.URL.Path, body)
		}
		return nil
	}
	if d.VerificationURIComplete == "" {
		return errors.New("no verification_uri_complete")
	}
	resp, err := get(d.VerificationURIComplete)
	if err := check("verification page", resp, err, d.UserCode); err != nil {
		return err
	}
	base, err := url.Parse(d.VerificationURI)
	if err != nil {
		return err
	}
	loginURL := base.ResolveReference(&url.URL{Path: "/device/login"}).String()
	resp, err = post(loginURL, url.Values{"user_code": {d.UserCode}, "username": {userName}, "password": {userPassword}})
	if err := check("device login", resp, err, nativeClientID); err != nil {
		return err
	}
	confirmURL := base.ResolveReference(&url.URL{Path: "/device/confirm"}).String()
	resp, err = post(confirmURL, url.Values{"action": {action}})
	return check("device confirmation", resp, err, "Device authorization "+action)
}
