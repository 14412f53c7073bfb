package oauthtest_test

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tokenward/tokenward/internal/canary"
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

func TestUserinfo(t *testing.T) {
	t.Parallel()
	srv := oauthtest.Start(t, oauthtest.Config{Subject: "alice"})
	tok, _ := srv.Mint(oauthtest.Grant{})
	req, _ := http.NewRequest(http.MethodGet, srv.URL(oauthtest.PathUserinfo), nil)
	req.Header.Set("Authorization", "bearer "+tok.AccessToken)
	r, _ := do(t, srv, nil, req)
	if r.status != 200 || string(r.body) != `{"sub":"alice"}` {
		t.Errorf("userinfo %d %s", r.status, r.body)
	}
	req.Header.Set("Authorization", "Bearer nope")
	if r, _ := do(t, srv, nil, req); r.status != 401 {
		t.Errorf("bad token %d", r.status)
	}
}
