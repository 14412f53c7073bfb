package oauthtest_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenward/tokenward/internal/tokenx"
	"github.com/tokenward/tokenward/oauthtest"
)

func TestRefreshRotationAndReuseDetection(t *testing.T) {
	t.Parallel()
	srv := oauthtest.Start(t, oauthtest.Config{Clients: []oauthtest.Client{public("cli")}})
	api := oauthtest.StartAPI(t, srv, "")
	tok, err := srv.Mint(oauthtest.Grant{ClientID: "cli", Scope: "read"})
	if err != nil {
		t.Fatal(err)
	}
	cli := auth{id: "cli"}
	rt0 := tok.RefreshToken
	t1 := mustToken(t, srv, nil, cli, refresh(rt0))
	if t1.RefreshToken == "" || t1.RefreshToken == rt0 {
		t.Fatal("refresh token not rotated")
	}
	t2 := mustToken(t, srv, nil, cli, refresh(t1.RefreshToken))
	if info, _ := srv.Introspect(rt0); !info.Rotated || info.Active {
		t.Errorf("old RT info %+v", info)
	}
	if r := callAPI(t, srv, api, t2.AccessToken); r.status != 200 {
		t.Fatalf("API: %d", r.status)
	}
	if st := srv.Stats(); st.RefreshTokensPresentedTwice != 0 || st.RefreshTokensPresented != 2 {
		t.Fatalf("stats before reuse %+v", st)
	}

	// Presenting rt0 again: reuse detected, the whole family is revoked.
	if _, err := tokenReq(t, srv, nil, cli, refresh(rt0)); oauthCode(err) != "invalid_grant" {
		t.Fatalf("reuse: %v", err)
	}
	if _, err := tokenReq(t, srv, nil, cli, refresh(t2.RefreshToken)); oauthCode(err) != "invalid_grant" {
		t.Errorf("newest RT survived family revocation: %v", err)
	}
	for _, at := range []string{tok.AccessToken, t1.AccessToken, t2.AccessToken} {
		if r := callAPI(t, srv, api, at); r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("revoked AT answered %d %v", r.status, r.header)
		}
	}
	st := srv.Stats()
	if st.ReuseDetections != 1 || st.FamilyRevocations != 1 || st.RefreshTokensPresentedTwice != 1 {
		t.Errorf("stats %+v", st)
	}
	var outcomes []string
	for _, p := range srv.RefreshPresentations() {
		outcomes = append(outcomes, p.Outcome)
	}
	if diff := cmp.Diff([]string{oauthtest.RefreshRotated, oauthtest.RefreshRotated, oauthtest.RefreshReuseDetected, oauthtest.RefreshRevoked}, outcomes); diff != "" {
		t.Errorf("presentations (-want +got):\n%s", diff)
	}

	// Other client's RT, unknown RT.
	if _, err := tokenReq(t, srv, nil, auth{id: oauthtest.DefaultClientID}, refresh("nope")); oauthCode(err) != "invalid_client" {
		t.Errorf("unregistered default client: %v", err)
	}
	if _, err := tokenReq(t, srv, nil, cli, refresh("nope")); oauthCode(err) != "invalid_grant" {
		t.Errorf("unknown RT: %v", err)
	}
}

func TestReuseGraceAndDetectionSwitches(t *testing.T) {
	t.Parallel()
	clk := newClock()
	srv := oauthtest.Start(t, oauthtest.Config{Now: clk.Now, ReuseGrace: 10 * time.Second})
	cli := auth{id: oauthtest.DefaultClientID}
	tok, _ := srv.Mint(oauthtest.Grant{})
	t1 := mustToken(t, srv, nil, cli, refresh(tok.RefreshToken))
	clk.Advance(10 * time.Second)
	t2 := mustToken(t, srv, nil, cli, refresh(tok.RefreshToken)) // lost response, retried in grace
	if t2.RefreshToken == t1.RefreshToken {
		t.Error("grace reuse returned the same RT")
	}
	mustToken(t, srv, nil, cli, refresh(t1.RefreshToken)) // the first successor still works
	clk.Advance(time.Second)
	if _, err := tokenReq(t, srv, nil, cli, refresh(tok.RefreshToken)); oauthCode(err) != "invalid_grant" {
		t.Errorf("reuse after grace: %v", err)
	}
	if st := srv.Stats(); st.GraceReuses != 1 || st.ReuseDetections != 1 {
		t.Errorf("stats %+v", st)
	}

	// Reuse detection off: the reused RT fails, the family lives.
	srv2 := oauthtest.Start(t, oauthtest.Config{DisableReuseDetection: true})
	tok, _ = srv2.Mint(oauthtest.Grant{})
	t1 = mustToken(t, srv2, nil, cli, refresh(tok.RefreshToken))
	if _, err := tokenReq(t, srv2, nil, cli, refresh(tok.RefreshToken)); oauthCode(err) != "invalid_grant" {
		t.Errorf("reuse: %v", err)
	}
	mustToken(t, srv2, nil, cli, refresh(t1.RefreshToken))
	if st := srv2.Stats(); st.FamilyRevocations != 0 {
		t.Errorf("family revoked although detection is off")
	}
}

func TestNonRotatingMode(t *testing.T) {
	t.Parallel()
	srv := oauthtest.Start(t, oauthtest.Config{DisableRotation: true})
	cli := auth{id: oauthtest.DefaultClientID}
	tok, _ := srv.Mint(oauthtest.Grant{})
	for range 3 {
		t1 := mustToken(t, srv, nil, cli, refresh(tok.RefreshToken))
		if t1.RefreshToken != "" {
			t.Fatal("non-rotating server sent a refresh token")
		}
	}
	srv.Update(func(c *oauthtest.Config) { c.EchoRefreshToken = true })
	if t1 := mustToken(t, srv, nil, cli, refresh(tok.RefreshToken)); t1.RefreshToken != tok.RefreshToken {
		t.Error("EchoRefreshToken did not echo")
	}
	if st := srv.Stats(); st.ReuseDetections != 0 || st.RefreshTokensPresentedTwice != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestExpiryByServerClock(t *testing.T) {
	t.Parallel()
	clk := newClock()
	srv := oauthtest.Start(t, oauthtest.Config{Now: clk.Now, AccessTokenLifetime: time.Minute,
		RefreshTokenLifetime: time.Hour, SendRefreshTokenExpiresIn: true})
	api := oauthtest.StartAPI(t, srv, "")
	cli := auth{id: oauthtest.DefaultClientID}
	tok, _ := srv.Mint(oauthtest.Grant{})
	if !tok.Expiry.Equal(clk.Now().Add(time.Minute)) {
		t.Errorf("Mint expiry %v", tok.Expiry)
	}
	if exp, ok := tokenx.JWTExpiry(tok.AccessToken); !ok || !exp.Equal(clk.Now().Add(time.Minute)) {
		t.Errorf("JWT exp %v %v", exp, ok)
	}
	t1 := mustToken(t, srv, nil, cli, refresh(tok.RefreshToken))
	if t1.ExpiresIn != 60 || tokenx.RefreshTokenExpiry(t1).IsZero() {
		t.Errorf("ExpiresIn %d, rt expiry %v", t1.ExpiresIn, tokenx.RefreshTokenExpiry(t1))
	}
	clk.Advance(59 * time.Second)
	if r := callAPI(t, srv, api, t1.AccessToken); r.status != 200 {
		t.Errorf("valid token refused: %d", r.status)
	}
	clk.Advance(time.Second)
	if r := callAPI(t, srv, api, t1.AccessToken); r.status != 401 {
		t.Errorf("expired token accepted: %d", r.status)
	}
	clk.Advance(time.Hour)
	if _, err := tokenReq(t, srv, nil, cli, refresh(t1.RefreshToken)); oauthCode(err) != "invalid_grant" {
		t.Errorf("expired RT: %v", err)
	}
	if got := api.Requests()[1].Outcome; got != oauthtest.OutcomeExpired {
		t.Errorf("outcome %q", got)
	}
}

// TestConcurrentRefreshRace: many goroutines present one refresh token at
// once over the network; exactly one wins, the rest trip reuse detection,
// and the counters add up (and -race sees the server's locking).
func TestConcurrentRefreshRace(t *testing.T) {
	t.Parallel()
	srv := oauthtest.Start(t, oauthtest.Config{})
	api := oauthtest.StartAPI(t, srv, "")
	hc := srv.HTTPClient()
	tok, _ := srv.Mint(oauthtest.Grant{})
	const n = 32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			_, err := tokenReq(t, srv, hc, auth{id: oauthtest.DefaultClientID}, refresh(tok.RefreshToken))
			errs <- err
			callAPI(t, srv, api, tok.AccessToken)
		})
	}
	wg.Wait()
	close(errs)
	wins := 0
	for err := range errs {
		if err == nil {
			wins++
		} else if oauthCode(err) != "invalid_grant" {
			t.Errorf("unexpected error %v", err)
		}
	}
	st := srv.Stats()
	if wins != 1 || st.RefreshTokensPresented != n || st.RefreshTokensPresentedTwice != 1 || st.ReuseDetections < 1 || st.FamilyRevocations != 1 {
		t.Errorf("wins %d, stats %+v", wins, st)
	}
	if api.Stats().Calls != n {
		t.Errorf("API calls %d", api.Stats().Calls)
	}
}
