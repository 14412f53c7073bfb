package oauthtest_test

import (
	"net/http"
	"net/url"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/oauthtest"
)

// startDevice asks for a device authorization.
func startDevice(t *testing.T, srv *oauthtest.Server, cli string) *oauthwire.DeviceAuth {
	t.Helper()
	sent := time.Now()
	r, err := postForm(t, srv, nil, oauthtest.PathDeviceAuthorization, auth{id: cli}, url.Values{"scope": {"openid"}})
	if err != nil {
		t.Fatal(err)
	}
	d, err := oauthwire.ParseDeviceAuthResponse(r.status, r.header, r.body, sent)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// poll sends one device poll and returns the outcome name ("token" on
// success).
func poll(t *testing.T, srv *oauthtest.Server, cli string, d *oauthwire.DeviceAuth) string {
	t.Helper()
	_, err := tokenReq(t, srv, nil, auth{id: cli}, url.Values{"grant_type": {oauthtest.GrantDeviceCode}, "device_code": {d.DeviceCode}})
	if err == nil {
		return "token"
	}
	if c := oauthCode(err); c != "" {
		return c
	}
	t.Fatalf("poll: %v", err)
	return ""
}

func TestDeviceFlowPendingThenApproved(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		srv := oauthtest.Start(t, oauthtest.Config{InMemory: true, DevicePendingPolls: 3, DeviceInterval: 2 * time.Second})
		d := startDevice(t, srv, oauthtest.DefaultClientID)
		if d.Interval != 2*time.Second || d.ExpiresIn != 10*time.Minute || d.VerificationURI != srv.URL(oauthtest.PathDeviceVerification) ||
			d.VerificationURIComplete != srv.URL(oauthtest.PathDeviceVerification)+"?user_code="+url.QueryEscape(d.UserCode) {
			t.Fatalf("device auth %+v", d)
		}
		var got []string
		for range 4 {
			got = append(got, poll(t, srv, oauthtest.DefaultClientID, d))
			time.Sleep(d.Interval)
		}
		want := []string{"authorization_pending", "authorization_pending", "authorization_pending", "token"}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("polls %v, want %v", got, want)
			}
		}
		// The device code is single use.
		if o := poll(t, srv, oauthtest.DefaultClientID, d); o != "invalid_grant" {
			t.Errorf("reused device code: %s", o)
		}
		if st := srv.Stats(); st.DevicePolls != 5 || st.SlowDowns != 0 || st.Grants[oauthtest.GrantDeviceCode] != 5 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestDeviceFlowSlowDown(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		srv := oauthtest.Start(t, oauthtest.Config{InMemory: true, DeviceManualApproval: true})
		d := startDevice(t, srv, oauthtest.DefaultClientID)
		if d.Interval != 5*time.Second {
			t.Fatalf("interval %v", d.Interval)
		}
		poll(t, srv, oauthtest.DefaultClientID, d)
		time.Sleep(4 * time.Second) // too early
		if o := poll(t, srv, oauthtest.DefaultClientID, d); o != "slow_down" {
			t.Fatalf("early poll: %s", o)
		}
		time.Sleep(5 * time.Second) // the interval is now 10 s: still too early
		if o := poll(t, srv, oauthtest.DefaultClientID, d); o != "slow_down" {
			t.Fatalf("poll at old interval: %s", o)
		}
		time.Sleep(15 * time.Second)
		if o := poll(t, srv, oauthtest.DefaultClientID, d); o != "authorization_pending" {
			t.Fatalf("poll at new interval: %s", o)
		}
		// On demand, even when polling slowly enough.
		srv.SlowDownNext(1)
		time.Sleep(time.Minute)
		if o := poll(t, srv, oauthtest.DefaultClientID, d); o != "slow_down" {
			t.Fatalf("SlowDownNext: %s", o)
		}
		if err := srv.ApproveDevice(d.UserCode); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		if o := poll(t, srv, oauthtest.DefaultClientID, d); o != "token" {
			t.Fatalf("approved: %s", o)
		}
		if devs := srv.Devices(); len(devs) != 1 || devs[0].Interval != 20*time.Second || devs[0].State != oauthtest.DeviceConsumed {
			t.Errorf("devices %+v", devs)
		}
		if st := srv.Stats(); st.SlowDowns != 3 {
			t.Errorf("SlowDowns %d", st.SlowDowns)
		}
	})
}

func TestDeviceFlowDeniedExpiredAndPage(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		srv := oauthtest.Start(t, oauthtest.Config{InMemory: true, DeviceManualApproval: true, DeviceCodeLifetime: time.Minute, OmitDeviceInterval: true})
		cli := oauthtest.DefaultClientID

		denied := startDevice(t, srv, cli)
		if denied.Interval != 5*time.Second {
			t.Errorf("omitted interval parsed as %v", denied.Interval)
		}
		if err := srv.DenyDevice(denied.UserCode); err != nil {
			t.Fatal(err)
		}
		if o := poll(t, srv, cli, denied); o != "access_denied" {
			t.Errorf("denied: %s", o)
		}

		expired := startDevice(t, srv, cli)
		poll(t, srv, cli, expired)
		time.Sleep(time.Minute)
		if o := poll(t, srv, cli, expired); o != "expired_token" {
			t.Errorf("expired: %s", o)
		}
		forced := startDevice(t, srv, cli)
		if err := srv.ExpireDevice(forced.UserCode); err != nil {
			t.Fatal(err)
		}
		if o := poll(t, srv, cli, forced); o != "expired_token" {
			t.Errorf("ExpireDevice: %s", o)
		}
		if err := srv.ApproveDevice("NOPE-NOPE"); err != oauthtest.ErrNoDevice {
			t.Errorf("unknown user code: %v", err)
		}

		// The verification page approves.
		viaPage := startDevice(t, srv, cli)
		req, _ := http.NewRequest(http.MethodGet, viaPage.VerificationURIComplete, nil)
		if r, _ := do(t, srv, nil, req); r.status != 200 {
			t.Fatalf("page: %d", r.status)
		}
		r, _ := postForm(t, srv, nil, oauthtest.PathDeviceVerification, auth{}, url.Values{"user_code": {viaPage.UserCode}, "action": {"approve"}})
		if r.status != 200 {
			t.Fatalf("approve via page: %d", r.status)
		}
		if o := poll(t, srv, cli, viaPage); o != "token" {
			t.Errorf("approved via page: %s", o)
		}

		// Another client cannot poll someone else's device code.
		srv.Update(func(c *oauthtest.Config) { c.Clients = append(c.Clients, public("other")) })
		d := startDevice(t, srv, cli)
		if o := poll(t, srv, "other", d); o != "invalid_grant" {
			t.Errorf("foreign device code: %s", o)
		}
	})
}

func TestDeviceIntervalZero(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		srv := oauthtest.Start(t, oauthtest.Config{InMemory: true, DeviceIntervalZero: true, DevicePendingPolls: 1})
		r, _ := postForm(t, srv, nil, oauthtest.PathDeviceAuthorization, auth{id: oauthtest.DefaultClientID}, nil)
		d, err := oauthwire.ParseDeviceAuthResponse(r.status, r.header, r.body, time.Now())
		if err != nil || d.Interval != 5*time.Second {
			t.Fatalf("interval 0 parsed as %v (%v)", d.Interval, err)
		}
		poll(t, srv, oauthtest.DefaultClientID, d)
		time.Sleep(time.Second) // the server enforces 5 s although it sent 0
		if o := poll(t, srv, oauthtest.DefaultClientID, d); o != "slow_down" {
			t.Errorf("fast poll: %s", o)
		}
	})
}
