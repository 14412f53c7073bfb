package interop

import (
	"net/http"
	"testing"

	"github.com/tokenward/tokenward/client"
)

// TestForResource: a login that covers two APIs (RFC 8707 resource
// indicators) gets one access token per API, each minted from the login's
// one refresh token and sent only to its own API. The provider does not
// implement RFC 8707: it ignores the resource parameter (RFC 6749 section
// 3.1 lets a server ignore parameters it does not know) and issues tokens
// whose audience is the client, which both APIs accept at userinfo. What
// it does do is rotate the refresh token on every mint, so the second
// API's token can only be minted if tokenward kept the refresh token the
// first mint rotated.
func TestForResource(t *testing.T) {
	t.Parallel()
	p := newProvider(t)
	ctx := testContext(t)
	first, second := userAPI(t, p), userAPI(t, p)
	s, c := signedIn(ctx, t, p, func(o *client.Options) { o.Resources = []string{first.srv.URL, second.srv.URL} })

	var spent []string
	for i, a := range []*api{first, second} {
		rts := s.store.refreshTokens()
		if len(rts) != 1 {
			t.Fatalf("API %d: %d refresh tokens stored, want 1", i+1, len(rts))
		}
		spent = append(spent, rts[0])
		r, err := c.ForResource(a.srv.URL)
		if err != nil {
			t.Fatalf("ForResource: %v", err)
		}
		hc, err := r.HTTPClient(ctx)
		if err != nil {
			t.Fatalf("HTTPClient: %v", err)
		}
		if status, body := a.call(ctx, t, hc); status != 200 || body != userID {
			t.Fatalf("API %d answered %d %q, want 200 %q (rejections: %q)", i+1, status, body, userID, a.refusals())
		}
		after := s.store.refreshTokens()
		if len(after) != 1 || after[0] == rts[0] {
			t.Fatalf("API %d: the login does not hold the refresh token the mint rotated", i+1)
		}
		if status, code, err := p.refreshStatus(ctx, rts[0]); err != nil || status != http.StatusBadRequest || code != "invalid_grant" {
			t.Errorf("API %d: the spent refresh token got HTTP %d %q (%v), want 400 invalid_grant", i+1, status, code, err)
		}
	}
	one, two := first.tokens(), second.tokens()
	if len(one) != 1 || len(two) != 1 || one[0] == two[0] {
		t.Errorf("the APIs received %d and %d tokens, want one each, different", len(one), len(two))
	}
	s.noLeaks(t, append(append(append(spent, one...), two...), s.store.refreshTokens()...))
}
