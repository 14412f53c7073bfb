package oauthtest_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tokenward/tokenward/internal/canary"
	"github.com/tokenward/tokenward/oauthtest"
)

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

// TestPrintingHidesCredentials prints every value of the package that
// holds a credential, taken from a real exchange, through fmt and slog: no
// credential may show, while the fields still hold them for the test.
// (internal/lint checks the same for every exported type with planted
// values, unexported fields included.)
func TestPrintingHidesCredentials(t *testing.T) {
	t.Parallel()
	job := confidential("job")
	srv := oauthtest.Start(t, oauthtest.Config{Clients: []oauthtest.Client{job, public("cli")}, DeviceManualApproval: true})
	api := oauthtest.StartAPI(t, srv, "")
	m, err := srv.Mint(oauthtest.Grant{ClientID: "cli"})
	if err != nil {
		t.Fatal(err)
	}
	callAPI(t, srv, api, m.AccessToken)
	tokenReq(t, srv, nil, auth{id: "cli"}, refresh(m.RefreshToken))
	d := startDevice(t, srv, "cli")
	req, _ := http.NewRequest(http.MethodGet, srv.Trap().URL()+"/x", strings.NewReader("refresh_token="+m.RefreshToken))
	req.Header.Set("Authorization", "Bearer "+m.AccessToken)
	do(t, srv, nil, req)

	reqs, pres, devs, trapped := api.Requests(), srv.RefreshPresentations(), srv.Devices(), srv.Trap().Requests()
	if len(reqs) != 1 || reqs[0].Token != m.AccessToken || len(pres) != 1 || pres[0].Token != m.RefreshToken ||
		len(devs) != 1 || devs[0].UserCode != d.UserCode || len(trapped) != 1 || trapped[0].Authorization == "" {
		t.Fatalf("the records do not hold the credentials a test compares: %d requests, %d presentations, %d devices, %d trapped",
			len(reqs), len(pres), len(devs), len(trapped))
	}
	values := map[string]any{
		"Client": job, "Config": srv.Config(), "APIRequest": reqs[0], "Presentation": pres[0],
		"DeviceInfo": devs[0], "TrapRequest": trapped[0], "Server": srv, "API": api, "Trap": srv.Trap(),
		"[]APIRequest": reqs, "*Client": &job,
	}
	secrets := []string{job.Secret, m.AccessToken, m.RefreshToken, d.UserCode}
	for name, v := range values {
		var outs []string
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
			outs = append(outs, fmt.Sprintf(verb, v))
		}
		for _, h := range []func(io.Writer) slog.Handler{
			func(w io.Writer) slog.Handler { return slog.NewTextHandler(w, nil) },
			func(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, nil) },
		} {
			var b strings.Builder
			slog.New(h(&b)).Info("value", "v", v)
			outs = append(outs, b.String())
		}
		all := strings.Join(outs, "\n")
		if found := canary.Find(all, secrets...); len(found) > 0 {
			t.Errorf("%s prints a credential: %v\n%s", name, found, all)
		}
		if !strings.Contains(all, "oauthtest.") {
			t.Errorf("%s prints no description:\n%s", name, all)
		}
	}
	if s := fmt.Sprint(reqs[0]); !strings.Contains(s, "Token:[REDACTED]") || !strings.Contains(s, "Outcome:ok") {
		t.Errorf("APIRequest prints %s", s)
	}
	if s := fmt.Sprint(srv); !strings.Contains(s, srv.Issuer()) {
		t.Errorf("Server prints %s, without its issuer", s)
	}
}
