package client

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokenward/tokenward/oauthtest"
)

// lastRequest returns the params of the last request endpoint received
// (with grant type grant, when not "").
func lastRequest(t *testing.T, as *oauthtest.Server, endpoint, grant string) url.Values {
	t.Helper()
	rqs := as.EndpointRequests(endpoint)
	for i := len(rqs) - 1; i >= 0; i-- {
		if grant == "" || rqs[i].Params.Get("grant_type") == grant {
			return rqs[i].Params
		}
	}
	t.Fatalf("no request to %s (grant %q)", endpoint, grant)
	return nil
}

// Options' extra parameters reach the server: the authorization request's
// in the browser's request, the device authorization request's in it, and
// the token request's in every token request of the credential
// (authorization_code, device_code, refresh_token, client_credentials).
func TestExtraParamsReachServer(t *testing.T) {
	t.Parallel()
	f := newFixture(t, oauthtest.Config{DeviceInterval: time.Second})
	params := func(o *Options) {
		o.AuthParams = url.Values{"login_hint": {"ada@example.com"}, "acr_values": {"urn:mfa phr"}, "max_age": {"0"}, "audience": {"https://api.example"}}
		o.DeviceAuthParams = url.Values{"audience": {"https://device.example"}}
		o.TokenParams = url.Values{"audience": {"https://token.example"}}
		o.DevicePrompt = waitForCancel
	}
	c := f.loggedIn(t, params)

	az := lastRequest(t, f.as, oauthtest.EndpointAuthorize, "")
	for k, want := range map[string]string{"login_hint": "ada@example.com", "acr_values": "urn:mfa phr", "max_age": "0", "audience": "https://api.example", "response_type": "code"} {
		if got := az.Get(k); got != want {
			t.Errorf("authorization request %s = %q, want %q", k, got, want)
		}
	}
	if got := lastRequest(t, f.as, oauthtest.EndpointToken, oauthtest.GrantAuthorizationCode).Get("audience"); got != "https://token.example" {
		t.Errorf("authorization_code audience = %q", got)
	}
	forceRefresh(t, c)
	if _, err := c.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := lastRequest(t, f.as, oauthtest.EndpointToken, oauthtest.GrantRefreshToken).Get("audience"); got != "https://token.example" {
		t.Errorf("refresh_token audience = %q", got)
	}

	if err := c.Login(t.Context(), WithDevice()); err != nil {
		t.Fatal(err)
	}
	da := lastRequest(t, f.as, oauthtest.EndpointDeviceAuthorization, "")
	if da.Get("audience") != "https://device.example" || da.Get("login_hint") != "" {
		t.Errorf("device authorization request %v", da)
	}
	if got := lastRequest(t, f.as, oauthtest.EndpointToken, oauthtest.GrantDeviceCode).Get("audience"); got != "https://token.example" {
		t.Errorf("device_code audience = %q", got)
	}

	cc := f.confidential(t, "job", "job-secret", oauthtest.AuthClientSecretBasic)
	forgetDiscovery(f.as.Issuer()) // the document now lists client_secret_basic
	cc.TokenParams = url.Values{"audience": {"https://job.example"}}
	if _, err := mustNew(t, cc).Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := lastRequest(t, f.as, oauthtest.EndpointToken, oauthtest.GrantClientCredentials).Get("audience"); got != "https://job.example" {
		t.Errorf("client_credentials audience = %q", got)
	}
}

// Per login, LoginOptions.AuthParams adds to Options.AuthParams and
// replaces its values (a name without values removes one), for that login
// only; the Options' values are New's copies, so changing the map
// afterwards changes nothing.
func TestPerLoginParamsOverride(t *testing.T) {
	t.Parallel()
	f := newFixture(t, oauthtest.Config{})
	cfgParams := url.Values{"prompt": {"consent"}, "ui_locales": {"fr"}}
	c := f.client(t, func(o *Options) { o.AuthParams = cfgParams })
	cfgParams.Set("prompt", "changed-after-New")

	err := c.Login(t.Context(), WithAuthParam("prompt", "login"), WithAuthParam("login_hint", "ada"),
		func(o *LoginOptions) { o.AuthParams["ui_locales"] = nil })
	if err != nil {
		t.Fatal(err)
	}
	az := lastRequest(t, f.as, oauthtest.EndpointAuthorize, "")
	if az.Get("prompt") != "login" || az.Get("login_hint") != "ada" || az.Has("ui_locales") || len(az["prompt"]) != 1 {
		t.Errorf("per-login request %v", az)
	}
	login(t, c)
	az = lastRequest(t, f.as, oauthtest.EndpointAuthorize, "")
	if az.Get("prompt") != "consent" || az.Get("ui_locales") != "fr" || az.Has("login_hint") {
		t.Errorf("next login's request %v", az)
	}
}

// The parameters tokenward sets itself are refused, in every place extra
// parameters go, whatever their case, with ErrInvalidConfig and a message
// naming the parameter (and, for scope and resource, the field to use);
// so are names and values with control characters, whose message never
// quotes the value. A refused Login sends nothing.
func TestOwnedParamsRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t, oauthtest.Config{})
	owned := []string{"state", "code_challenge", "code_challenge_method", "redirect_uri", "client_id", "grant_type",
		"code_verifier", "nonce", "response_type", "response_mode", "request_uri", "request", "client_secret", "client_assertion",
		"client_assertion_type", "code", "refresh_token", "device_code", "scope", "resource", "State", "REDIRECT_URI"}
	fields := map[string]func(*Options, url.Values){
		"AuthParams":       func(o *Options, v url.Values) { o.AuthParams = v },
		"DeviceAuthParams": func(o *Options, v url.Values) { o.DeviceAuthParams = v },
		"TokenParams":      func(o *Options, v url.Values) { o.TokenParams = v },
	}
	check := func(where, name string, err error) {
		t.Helper()
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s %q: %v, want ErrInvalidConfig", where, name, err)
			return
		}
		if !strings.Contains(err.Error(), `"`+name+`"`) {
			t.Errorf("%s %q: the message does not name it: %v", where, name, err)
		}
	}
	for field, set := range fields {
		for _, name := range owned {
			cfg := f.config()
			set(&cfg, url.Values{name: {"x"}})
			c, err := New(t.Context(), with(cfg))
			if err == nil {
				c.Close()
			}
			check(field, name, err)
			if err != nil && !strings.HasPrefix(err.Error(), "client: invalid configuration: "+field+": ") {
				t.Errorf("%s %q: %v", field, name, err)
			}
		}
	}
	c := f.client(t)
	for _, name := range owned {
		check("LoginOptions", name, c.Login(t.Context(), WithAuthParam(name, "x")))
	}
	for name, want := range map[string]string{"scope": "Options.Scopes", "resource": "Options.Resources"} {
		if err := c.Login(t.Context(), WithAuthParam(name, "x")); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v does not point to %s", name, err, want)
		}
	}
	const hidden = "hidden-value"
	for _, bad := range []url.Values{
		{"login_hint": {hidden + "\r\nX-Injected: 1"}},
		{"login_hint": {hidden + "\x1b[31m"}},
		{"login_hint": {hidden + "\u202e"}},
		{"bad\nname": {"x"}},
		{"": {"x"}},
		{"ſtate": {"x"}},        // folds to "state" in Unicode
		{"redırect_uri": {"x"}}, // dotless i
		{"request.uri": {"x"}},  // PHP reads "." as "_"
		{"request-uri": {"x"}},
		{"state ": {"x"}},
	} {
		cfg := f.config()
		cfg.AuthParams = bad
		_, err := New(t.Context(), with(cfg))
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%q: %v, want ErrInvalidConfig", bad, err)
		} else if strings.Contains(err.Error(), hidden) {
			t.Errorf("the message quotes the value: %v", err)
		}
		err = c.Login(t.Context(), func(o *LoginOptions) { o.AuthParams = bad })
		if !errors.Is(err, ErrInvalidConfig) || !strings.HasPrefix(err.Error(), "client: login: LoginOptions.AuthParams: ") {
			t.Errorf("Login %q: %v", bad, err)
		}
	}
	if st := f.as.Stats(); st.Requests[oauthtest.EndpointAuthorize] != 0 || st.Requests[oauthtest.EndpointPAR] != 0 {
		t.Errorf("a refused login reached the server: %v", st.Requests)
	}
}

// Printing Options shows the extra parameters' names, never their values
// (an id_token_hint is a credential, a login_hint personal data).
func TestOptionsPrintParamNamesOnly(t *testing.T) {
	t.Parallel()
	o := Options{AuthParams: url.Values{"id_token_hint": {"eyJsecret"}, "login_hint": {"ada@example.com"}}, TokenParams: url.Values{"audience": {"aud-value"}}}
	s := o.String()
	for _, v := range []string{"eyJsecret", "ada@example.com", "aud-value"} {
		if strings.Contains(s, v) {
			t.Errorf("%s shows %q", s, v)
		}
	}
	if !strings.Contains(s, "id_token_hint") || !strings.Contains(s, "audience") {
		t.Errorf("%s does not name the parameters", s)
	}
}
