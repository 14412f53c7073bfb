package oauthtest_test

import (
	"net/url"
	"testing"

	"github.com/tokenward/tokenward/oauthtest"
)

func TestRevocation(t *testing.T) {
	t.Parallel()
	srv := oauthtest.Start(t, oauthtest.Config{Clients: []oauthtest.Client{public("cli"), public("other")}})
	api := oauthtest.StartAPI(t, srv, "")
	cli := auth{id: "cli"}
	revoke := func(a auth, tok, hint string) int {
		form := url.Values{"token": {tok}}
		if hint != "" {
			form.Set("token_type_hint", hint)
		}
		r, err := postForm(t, srv, nil, oauthtest.PathRevocation, a, form)
		if err != nil {
			t.Fatal(err)
		}
		return r.status
	}
	t1, _ := srv.Mint(oauthtest.Grant{ClientID: "cli"})
	t2 := mustToken(t, srv, nil, cli, refresh(t1.RefreshToken))

	// Another client cannot revoke it (200 all the same, RFC 7009).
	if st := revoke(auth{id: "other"}, t2.AccessToken, ""); st != 200 || callAPI(t, srv, api, t2.AccessToken).status != 200 {
		t.Fatal("other client revoked the token")
	}
	// Access token with a wrong hint: only that token is revoked.
	if revoke(cli, t2.AccessToken, "refresh_token") != 200 || callAPI(t, srv, api, t2.AccessToken).status != 401 {
		t.Fatal("access token not revoked")
	}
	t3 := mustToken(t, srv, nil, cli, refresh(t2.RefreshToken))
	if callAPI(t, srv, api, t3.AccessToken).status != 200 {
		t.Fatal("family hurt by an access token revocation")
	}
	// Refresh token: the family goes.
	if revoke(cli, t3.RefreshToken, "refresh_token") != 200 {
		t.Fatal("revocation failed")
	}
	if callAPI(t, srv, api, t3.AccessToken).status != 401 {
		t.Error("family access token survived")
	}
	if _, err := tokenReq(t, srv, nil, cli, refresh(t3.RefreshToken)); oauthCode(err) != "invalid_grant" {
		t.Errorf("revoked RT: %v", err)
	}
	if revoke(cli, "unknown-token", "") != 200 {
		t.Error("unknown token not answered 200")
	}
	r, _ := postForm(t, srv, nil, oauthtest.PathRevocation, cli, url.Values{})
	if r.status != 400 {
		t.Errorf("missing token: %d", r.status)
	}
	if st := srv.Stats(); st.Revocations != 2 || st.FamilyRevocations != 1 {
		t.Errorf("stats %+v", st)
	}
	if !srv.RevokeToken(t1.AccessToken) || srv.RevokeToken("nope") {
		t.Error("RevokeToken")
	}
}
