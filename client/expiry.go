package client

import (
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/tokenx"
)

// skewThreshold is the clock difference from which tokenward reports
// EventClockSkew.
const skewThreshold = 30 * time.Second

// tokenExpiry returns when tok expires in this machine's clock: the earlier
// of what expires_in says (tok.Expiry, counted from when the request was
// sent, so it needs no clock agreement) and what the exp claim of a JWT
// access token says, whichever of the two exist (zero when neither does;
// the token cache then applies its default lifetime). A token is never
// trusted for longer than either says: some servers cut a JWT's life
// shorter than expires_in, or the other way round.
//
// exp is in the server's clock. It is converted to ours from the token's
// own lifetime, exp minus iat, counted from when the request was sent (the
// token was issued after that, so this errs early, by at most the round
// trip, and needs no clock agreement); without a usable iat, from exp minus
// the skew the Date header showed; without that, exp is taken as it is.
func tokenExpiry(tok *oauth2.Token, sent time.Time, skew time.Duration, skewOK bool) time.Time {
	exp, iat, ok := tokenx.JWTTimes(tok.AccessToken)
	if !ok {
		return tok.Expiry
	}
	if sent.IsZero() {
		sent = time.Now()
	}
	var local time.Time
	switch {
	case !iat.IsZero() && !exp.Before(iat):
		local = sent.Add(exp.Sub(iat))
	case skewOK:
		local = exp.Add(-skew)
	default:
		local = exp
	}
	if tok.Expiry.IsZero() || local.Before(tok.Expiry) {
		return local
	}
	return tok.Expiry
}
