package oauthtest_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokenward/tokenward/internal/canary"
	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/internal/tokenx"
	"github.com/tokenward/tokenward/oauthtest"
)

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

	// Every shape of expires_in real servers send, parsed by the SDK's
	// token response parser: what a client must make of each.
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
