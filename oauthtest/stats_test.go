package oauthtest_test

import (
	"testing"

	"github.com/tokenward/tokenward/oauthtest"
)

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
