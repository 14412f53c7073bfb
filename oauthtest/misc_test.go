package oauthtest_test

import (
	"crypto/rand"
	"crypto/rsa"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tokenward/tokenward/internal/canary"
	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/internal/tokenx"
	"github.com/tokenward/tokenward/oauthtest"
)

func TestAPIValidation(t *testing.T) {
	t.Parallel()
	srv := oauthtest.Start(t, oauthtest.Config{})
	api := oauthtest.StartAPI(t, srv, "")
	other := oauthtest.StartAPI(t, srv, "")
	if api.Resource() != api.URL() || api.URL() == other.URL() {
		t.Fatalf("resources %q %q", api.Resource(), other.URL())
	}
	good, _ := srv.Mint(oauthtest.Grant{Scope: "read"})
	foreign, _ := srv.Mint(oauthtest.Grant{Resources: []string{other.Resource()}})

	if r := callAPI(t, srv, api, ""); r.status != 401 || r.header.Get("WWW-Authenticate") != `Bearer realm="oauthtest"` {
		t.Errorf("no token: %d %q", r.status, r.header.Get("WWW-Authenticate"))
	}
	for name, tok := range map[string]string{"unknown": canary.JWT("at", 0), "foreign": foreign.AccessToken} {
		r := callAPI(t, srv, api, tok)
		if r.status != 401 || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), `Bearer realm="oauthtest", error="invalid_token"`) {
			t.Errorf("%s: %d %q", name, r.status, r.header.Get("WWW-Authenticate"))
		}
	}
	r := callAPI(t, srv, api, good.AccessToken)
	if r.status != 200 || !strings.Contains(string(r.body), `"sub":"oauthtest-user"`) {
		t.Fatalf("good token: %d %s", r.status, r.body)
	}
	api.SetRequiredScope("write")
	if r := callAPI(t, srv, api, good.AccessToken); r.status != 403 || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="insufficient_scope", scope="write"`) {
		t.Errorf("insufficient scope: %d %q", r.status, r.header.Get("WWW-Authenticate"))
	}
	api.SetRequiredScope("read")
	api.RejectNext(1)
	if r := callAPI(t, srv, api, good.AccessToken); r.status != 401 {
		t.Errorf("RejectNext: %d", r.status)
	}
	if r := callAPI(t, srv, api, good.AccessToken); r.status != 200 {
		t.Errorf("after RejectNext: %d", r.status)
	}
	// Network path too.
	req, _ := http.NewRequest(http.MethodGet, api.URL()+"/x", nil)
	req.Header.Set("Authorization", "Bearer "+good.AccessToken)
	if r, err := do(t, srv, srv.HTTPClient(), req); err != nil || r.status != 200 {
		t.Fatalf("network: %v", err)
	}

	var outcomes []string
	for _, rq := range api.Requests() {
		outcomes = append(outcomes, rq.Outcome)
	}
	want := []string{oauthtest.OutcomeMissing, oauthtest.OutcomeUnknown, oauthtest.OutcomeForeign, oauthtest.OutcomeOK,
		oauthtest.OutcomeInsufficientScope, oauthtest.OutcomeRejected, oauthtest.OutcomeOK, oauthtest.OutcomeOK}
	if diff := cmp.Diff(want, outcomes, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
	if st := api.Stats(); st.Calls != 8 || st.OK != 3 || st.Foreign != 1 || st.Unknown != 1 || st.Rejected != 5 {
		t.Errorf("stats %+v", st)
	}
	if other.Stats().Calls != 0 {
		t.Error("other API was called")
	}
}

func TestAPIRedirectRoutes(t *testing.T) {
	t.Parallel()
	srv := oauthtest.Start(t, oauthtest.Config{})
	api := oauthtest.StartAPI(t, srv, "")
	tok, _ := srv.Mint(oauthtest.Grant{})
	for _, code := range []int{302, 307, 308} {
		req, _ := http.NewRequest(http.MethodGet, api.URL()+"/redirect/"+strconv.Itoa(code), nil)
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		r, _ := do(t, srv, nil, req)
		if r.status != code || r.header.Get("Location") != srv.Trap().URL()+"/from-api" {
			t.Errorf("%d: %d %q", code, r.status, r.header.Get("Location"))
		}
	}
	req, _ := http.NewRequest(http.MethodGet, api.URL()+"/redirect/307?to="+url.QueryEscape("https://elsewhere.example/x"), nil)
	r, _ := do(t, srv, nil, req)
	if r.header.Get("Location") != "https://elsewhere.example/x" {
		t.Errorf("to: %q", r.header.Get("Location"))
	}
	// Plain net/http following the redirects: to the same host name on
	// another port it keeps the Authorization header (it compares host
	// names, not origins), to another host name it strips it. Both are
	// reachable over the network and in memory.
	for _, hc := range []*http.Client{{Transport: srv.Transport()}, {Transport: srv.HTTPClient().Transport}} {
		for _, to := range []string{"", srv.Trap().AltURL() + "/alt"} {
			target := api.URL() + "/redirect/302"
			if to != "" {
				target += "?to=" + url.QueryEscape(to)
			}
			req, _ = http.NewRequest(http.MethodGet, target, nil)
			req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
	}
	reqs := srv.Trap().Requests()
	if len(reqs) != 4 {
		t.Fatalf("trap saw %d requests", len(reqs))
	}
	for _, r := range reqs {
		leaked := r.Authorization != ""
		if want := r.Path == "/from-api"; leaked != want {
			t.Errorf("trap %s: Authorization present = %v, want %v", r.Path, leaked, want)
		}
	}
	if api.Requests()[0].Token != tok.AccessToken || api.Requests()[0].Outcome != oauthtest.OutcomeRedirect {
		t.Errorf("redirect not recorded with its token")
	}
}

func TestTokenShapes(t *testing.T) {
	t.Parallel()
	srv := oauthtest.Start(t, oauthtest.Config{})
	cli := auth{id: oauthtest.DefaultClientID}
	seen := map[string]bool{}
	for _, size := range []int{800, 2000} {
		srv.Update(func(c *oauthtest.Config) { c.AccessTokenSize = size })
		m, _ := srv.Mint(oauthtest.Grant{})
		if n := len(m.AccessToken); n < size*9/10 || n > size*11/10 {
			t.Errorf("size %d: token is %d bytes", size, n)
		}
		if !strings.HasPrefix(m.AccessToken, "eyJ") || strings.Count(m.AccessToken, ".") != 2 || seen[m.AccessToken] {
			t.Errorf("not a unique JWT shape")
		}
		seen[m.AccessToken] = true
		if !strings.HasPrefix(m.RefreshToken, canary.Prefix+"-rt-") {
			t.Errorf("refresh token %q", m.RefreshToken[:12])
		}
	}

	// expires_in shapes, parsed by oauthwire: the O-07 table against a server.
	cases := []struct {
		mode oauthtest.ExpiresInMode
		want int64
	}{
		{oauthtest.ExpiresInNumber, 3600}, {oauthtest.ExpiresInString, 3600}, {oauthtest.ExpiresInFloat, 3599},
		{oauthtest.ExpiresInOmit, 0}, {oauthtest.ExpiresInNull, 0}, {oauthtest.ExpiresInZero, 0},
		{oauthtest.ExpiresInNegative, 0}, {oauthtest.ExpiresInHuge, int64(oauthwire.MaxExpiresIn / time.Second)},
		{oauthtest.ExpiresInGarbage, 0},
	}
	for _, form := range []bool{false, true} {
		for _, c := range cases {
			srv.Update(func(cfg *oauthtest.Config) { cfg.ExpiresIn, cfg.FormResponse = c.mode, form })
			m, _ := srv.Mint(oauthtest.Grant{})
			tok := mustToken(t, srv, nil, cli, refresh(m.RefreshToken))
			if tok.ExpiresIn != c.want || tok.RefreshToken == "" {
				t.Errorf("mode %d form %v: ExpiresIn %d, want %d", c.mode, form, tok.ExpiresIn, c.want)
			}
			if exp, ok := tokenx.JWTExpiry(tok.AccessToken); !ok || exp.IsZero() {
				t.Errorf("mode %d: no JWT exp hint", c.mode)
			}
		}
	}
	srv.Update(func(c *oauthtest.Config) { c.ExpiresIn, c.FormResponse = oauthtest.ExpiresInNumber, false })

	for _, tt := range []string{"Bearer", "bearer", "DPoP", "N_A"} {
		srv.Update(func(c *oauthtest.Config) { c.TokenType = tt })
		m, _ := srv.Mint(oauthtest.Grant{})
		if tok := mustToken(t, srv, nil, cli, refresh(m.RefreshToken)); tok.TokenType != tt {
			t.Errorf("token_type %q", tok.TokenType)
		}
	}
	srv.Update(func(c *oauthtest.Config) { c.OmitTokenType = true; c.OmitScope = true; c.IDToken = true })
	m, _ := srv.Mint(oauthtest.Grant{Scope: "read"})
	tok := mustToken(t, srv, nil, cli, refresh(m.RefreshToken))
	if tok.TokenType != "" || tokenx.Scope(tok) != "" || tokenx.String(tok, tokenx.KeySubject) != oauthtest.DefaultSubject {
		t.Errorf("omit/id token: %q %v", tok.TokenType, tokenx.Extras(tok))
	}
}

func TestClockOffset(t *testing.T) {
	t.Parallel()
	clk := newClock()
	srv := oauthtest.Start(t, oauthtest.Config{Now: clk.Now, ClockOffset: 10 * time.Minute, AccessTokenLifetime: time.Minute})
	sent := clk.Now()
	r, _ := postForm(t, srv, nil, oauthtest.PathToken, auth{id: oauthtest.DefaultClientID}, url.Values{"grant_type": {"x"}})
	skew, ok := oauthwire.ClockSkew(r.header, sent, sent)
	if !ok || skew < 10*time.Minute-time.Second || skew > 10*time.Minute+time.Second {
		t.Errorf("skew %v %v", skew, ok)
	}
	m, _ := srv.Mint(oauthtest.Grant{})
	if exp, _ := tokenx.JWTExpiry(m.AccessToken); !exp.Equal(clk.Now().Add(11 * time.Minute)) {
		t.Errorf("exp %v, want server clock + lifetime", exp)
	}
	if !srv.Now().Equal(clk.Now().Add(10 * time.Minute)) {
		t.Error("Now ignores the offset")
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	srv := oauthtest.Start(t, oauthtest.Config{TLS: true})
	api := oauthtest.StartAPI(t, srv, "")
	if !strings.HasPrefix(srv.Issuer(), "https://127.0.0.1:") || !strings.HasPrefix(api.URL(), "https://") || srv.CertPool() == nil {
		t.Fatalf("issuer %q api %q", srv.Issuer(), api.URL())
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL(oauthwire.WellKnownOAuth), nil)
	r, err := do(t, srv, srv.HTTPClient(), req)
	if err != nil {
		t.Fatal(err)
	}
	d, err := oauthwire.ParseDiscovery(r.body, srv.Issuer())
	if err != nil || d.CheckSecure(false) != nil {
		t.Fatalf("discovery over TLS: %v", err)
	}
	// Untrusted without the pool.
	if _, err := http.Get(srv.URL(oauthwire.WellKnownOAuth)); err == nil {
		t.Error("self-signed certificate trusted by default")
	}
	// Resets work through TLS (HTTP/1.1 hijack).
	tok, _ := srv.Mint(oauthtest.Grant{})
	srv.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultResponseLost, Times: 1})
	if _, err := tokenReq(t, srv, srv.HTTPClient(), auth{id: oauthtest.DefaultClientID}, refresh(tok.RefreshToken)); err == nil {
		t.Error("lost response over TLS returned a token")
	}
}

// syncBuffer captures log output for canary scans.
type syncBuffer = canary.Log

// TestLogsHoldNoSecrets runs every flow with a debug logger and scans the
// output for every secret involved.
func TestLogsHoldNoSecrets(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	job := confidential("job")
	srv := oauthtest.Start(t, oauthtest.Config{
		Logger:  slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Clients: []oauthtest.Client{job, public("cli")}, DevicePendingPolls: 1, DeviceNoIntervalCheck: true,
	})
	api := oauthtest.StartAPI(t, srv, "")
	secrets := []string{job.Secret}
	cc := mustToken(t, srv, nil, auth{id: "job", secret: job.Secret}, url.Values{"grant_type": {"client_credentials"}})
	secrets = append(secrets, cc.AccessToken)
	callAPI(t, srv, api, cc.AccessToken)

	v, ch := pkce()
	loc, err := srv.Authorize(t.Context(), authURL(srv, "cli", "http://127.0.0.1:9/callback", "st-"+canary.New("state"), ch, nil))
	if err != nil {
		t.Fatal(err)
	}
	code := loc.Query().Get("code")
	tok := mustToken(t, srv, nil, auth{id: "cli"}, url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"code_verifier": {v}, "redirect_uri": {"http://127.0.0.1:9/callback"}})
	secrets = append(secrets, code, v, tok.AccessToken, tok.RefreshToken, loc.Query().Get("state"))
	tokenReq(t, srv, nil, auth{id: "cli"}, refresh(tok.RefreshToken))
	tokenReq(t, srv, nil, auth{id: "cli"}, refresh(tok.RefreshToken)) // reuse

	d := startDevice(t, srv, "cli")
	secrets = append(secrets, d.DeviceCode, d.UserCode)
	poll(t, srv, "cli", d)
	poll(t, srv, "cli", d)
	srv.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultResponseLost, Times: 1})
	m, _ := srv.Mint(oauthtest.Grant{ClientID: "cli"})
	secrets = append(secrets, m.RefreshToken)
	tokenReq(t, srv, nil, auth{id: "cli"}, refresh(m.RefreshToken))
	postForm(t, srv, nil, oauthtest.PathRevocation, auth{id: "cli"}, url.Values{"token": {m.AccessToken}})

	out := buf.String()
	if !strings.Contains(out, "endpoint=token") || !strings.Contains(out, "fault=response-lost") {
		t.Fatalf("log lacks request lines:\n%s", out)
	}
	if found := canary.Find(out, secrets...); len(found) > 0 {
		t.Errorf("log leaks %d secret(s):\n%s", len(found), out)
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	bad := map[string]oauthtest.Config{
		"no id":             {Clients: []oauthtest.Client{{}}},
		"duplicate":         {Clients: []oauthtest.Client{{ID: "a"}, {ID: "a"}}},
		"basic, no secret":  {Clients: []oauthtest.Client{{ID: "a", AuthMethod: oauthtest.AuthClientSecretBasic}}},
		"weak key":          {Clients: []oauthtest.Client{{ID: "a", PublicKey: &small.PublicKey}}},
		"unknown method":    {Clients: []oauthtest.Client{{ID: "a", AuthMethod: "tls_client_auth"}}},
		"relative redirect": {Clients: []oauthtest.Client{{ID: "a", RedirectURIs: []string{"/cb"}}}},
		"bad resource":      {Resources: []string{"orders"}},
	}
	for name, cfg := range bad {
		if s, err := oauthtest.New(cfg); err == nil {
			s.Close()
			t.Errorf("%s: accepted", name)
		}
	}
	srv := oauthtest.Start(t, oauthtest.Config{})
	if err := srv.Update(func(c *oauthtest.Config) { c.Clients = append(c.Clients, oauthtest.Client{}) }); err == nil {
		t.Error("Update accepted a bad client")
	}
	if got := srv.Config(); len(got.Clients) != 1 || got.Clients[0].ID != oauthtest.DefaultClientID || got.AccessTokenLifetime != time.Hour {
		t.Errorf("config after rejected update: %+v", got)
	}
	srv.Close()
	srv.Close() // idempotent
	if _, err := srv.NewAPI(""); err == nil {
		t.Error("NewAPI on a closed server")
	}
}

func TestStatsReset(t *testing.T) {
	t.Parallel()
	srv := oauthtest.Start(t, oauthtest.Config{})
	m, _ := srv.Mint(oauthtest.Grant{})
	mustToken(t, srv, nil, auth{id: oauthtest.DefaultClientID}, refresh(m.RefreshToken))
	if st := srv.Stats(); st.TokenPosts != 1 || st.AccessTokensIssued != 2 || len(srv.RefreshPresentations()) != 1 {
		t.Fatalf("stats %+v", st)
	}
	srv.ResetStats()
	if st := srv.Stats(); st.TokenPosts != 0 || st.Requests[oauthtest.EndpointToken] != 0 || len(srv.RefreshPresentations()) != 0 {
		t.Errorf("after reset %+v", st)
	}
}
