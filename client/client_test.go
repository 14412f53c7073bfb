package client

import (
	"errors"
	"testing"

	"github.com/tokenward/tokenward/oauthtest"
)

func TestClientCredentialsCallsAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t, oauthtest.Config{})
	c := mustNew(t, e.confidential(t, "job", "s3cret-job", oauthtest.AuthClientSecretBasic))
	hc, err := c.HTTPClient(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if code, body := get(t, hc, e.api.URL()+"/things"); code != 200 {
			t.Fatalf("API answered %d: %s", code, body)
		}
	}
	if n := e.as.Stats().Grants[oauthtest.GrantClientCredentials]; n != 1 {
		t.Fatalf("client_credentials requests = %d, want 1 for three calls", n)
	}
}

func TestBrowserLoginThenAPIAndLogout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, oauthtest.Config{IDToken: true})
	c := mustNew(t, e.config())
	if _, err := c.Token(t.Context()); !errors.Is(err, ErrReauthRequired) {
		t.Fatalf("Token before login = %v, want ErrReauthRequired", err)
	}
	if err := c.Login(t.Context()); err != nil {
		t.Fatalf("Login: %v", err)
	}
	hc, _ := c.HTTPClient(t.Context())
	if code, body := get(t, hc, e.api.URL()+"/me"); code != 200 {
		t.Fatalf("API answered %d: %s", code, body)
	}
	st, err := c.Status(t.Context())
	if err != nil || !st.LoggedIn || !st.HasRefreshToken || st.Subject != oauthtest.DefaultSubject {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	if err := c.Logout(t.Context()); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	if s := e.as.Stats(); s.Revocations < 1 {
		t.Fatalf("revocations = %d", s.Revocations)
	}
	if _, err := c.Token(t.Context()); !errors.Is(err, ErrReauthRequired) {
		t.Fatalf("Token after logout = %v, want ErrReauthRequired", err)
	}
	if st, _ := c.Status(t.Context()); st.LoggedIn {
		t.Fatal("still logged in after Logout")
	}
}

func TestDeviceLogin(t *testing.T) {
	t.Parallel()
	e := newEnv(t, oauthtest.Config{DeviceInterval: 1e9, DevicePendingPolls: 1})
	c := mustNew(t, e.config())
	if err := c.Login(t.Context(), WithDevice()); err != nil {
		t.Fatalf("Login: %v", err)
	}
	tok, err := c.Token(t.Context())
	if err != nil || tok.AccessToken == "" || tok.RefreshToken != "" {
		t.Fatalf("Token = %+v, %v", tok, err)
	}
}
