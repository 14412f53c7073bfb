package interop

import (
	"net/http"
	"testing"

	"github.com/tokenward/tokenward/client"
)

// TestRefreshRotation: the provider rotates refresh tokens (each refresh
// answers a new one and forgets the one presented). The refresh is forced
// without waiting for the access token's 5 minute lifetime: the access
// token is revoked at the provider, so the API refuses it with an RFC 6750
// invalid_token challenge, and tokenward drops it, refreshes and sends the
// request again with the new token. Done twice: the second refresh
// succeeds only if tokenward kept the rotated refresh token, and the
// provider refuses the spent one.
func TestRefreshRotation(t *testing.T) {
	t.Parallel()
	p := newProvider(t)
	ctx := testContext(t)
	a := userAPI(t, p)
	s, c := signedIn(ctx, t, p, func(o *client.Options) { o.APIOrigins = []string{a.srv.URL} })
	hc, err := c.HTTPClient(ctx)
	if err != nil {
		t.Fatalf("HTTPClient: %v", err)
	}
	if status, body := a.call(ctx, t, hc); status != 200 || body != userID {
		t.Fatalf("API answered %d %q, want 200 %q (rejections: %q)", status, body, userID, a.refusals())
	}

	var spent []string // every access and refresh token seen, for the leak scan
	for round := 1; round <= 2; round++ {
		before := a.tokens()
		old := before[len(before)-1]
		rts := s.store.refreshTokens()
		if len(rts) != 1 {
			t.Fatalf("round %d: %d refresh tokens stored, want 1", round, len(rts))
		}
		oldRT := rts[0]
		spent = append(spent, old, oldRT)
		refreshed := s.count(client.EventRefreshed)

		if err := p.revokeAccessToken(ctx, old); err != nil {
			t.Fatalf("round %d: revoking the access token: %v", round, err)
		}
		status, body := a.call(ctx, t, hc)
		if status != 200 || body != userID {
			t.Fatalf("round %d: API answered %d %q after the revocation, want 200 %q (rejections: %q)", round, status, body, userID, a.refusals())
		}
		// The API saw the revoked token once, then the new one.
		got := a.tokens()[len(before):]
		if len(got) != 2 || got[0] != old || got[1] == old {
			t.Fatalf("round %d: the API received %d token(s) after the revocation, want the revoked one then a new one", round, len(got))
		}
		if n := s.count(client.EventRefreshed) - refreshed; n != 1 {
			t.Errorf("round %d: %d refreshed events, want 1", round, n)
		}
		tok, err := c.Token(ctx)
		if err != nil || tok.AccessToken != got[1] {
			t.Fatalf("round %d: Token = err %v, same as the API's: %v; want the new token", round, err, err == nil && tok.AccessToken == got[1])
		}
		rts = s.store.refreshTokens()
		if len(rts) != 1 || rts[0] == oldRT {
			t.Fatalf("round %d: the store does not hold a rotated refresh token", round)
		}
		status, code, err := p.refreshStatus(ctx, oldRT)
		if err != nil {
			t.Fatal(err)
		}
		// The provider answers a spent refresh token with invalid_grant
		// (RFC 6749 section 5.2).
		if status != http.StatusBadRequest || code != "invalid_grant" {
			t.Errorf("round %d: the spent refresh token got HTTP %d %q, want 400 invalid_grant", round, status, code)
		}
	}
	st, err := c.Status(ctx)
	if err != nil || !st.LoggedIn {
		t.Errorf("Status after two refreshes: logged in %v, err %v", st != nil && st.LoggedIn, err)
	}
	s.noLeaks(t, append(append(spent, a.tokens()...), s.store.refreshTokens()...))
}
