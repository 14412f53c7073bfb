package client

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/dpop"
	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/internal/redact"
	"github.com/tokenward/tokenward/internal/tokenx"
	"github.com/tokenward/tokenward/refresh"
)

// tokenRequest posts one token request and parses the answer. Its errors
// name the request by its grant type: "client: token request
// (refresh_token): ...".
//
// With DPoP, hk is the credential's key: every attempt carries a proof of
// it, a nonce the server asks for is answered by one more request
// (postProof), and the token comes back bound to hk (bindKey).
func (g *grant) tokenRequest(ctx context.Context, form url.Values, policy replay, hk *heldKey) (*oauth2.Token, error) {
	op := opToken(form.Get("grant_type"))
	if err := g.readyNow(); err != nil {
		return nil, err
	}
	form = withParams(form, g.cfg.TokenParams)
	resp, err := g.postProof(ctx, g.endpoints.TokenURL, form, policy, hk)
	if err != nil {
		return nil, inOp(op, err)
	}
	tok, err := g.parseToken(op, resp)
	if err != nil {
		return nil, err
	}
	bindKey(tok, hk)
	return tok, nil
}

// parseToken turns a token-endpoint answer into a token: the OAuth error
// classified, and the expiry set to the earlier of expires_in and the
// token's own exp claim, in this machine's clock (tokenExpiry).
func (g *grant) parseToken(op string, resp *response) (*oauth2.Token, error) {
	tok, err := oauthwire.ParseTokenResponse(resp.status, resp.header, resp.body, resp.sent)
	if err != nil {
		return nil, g.classify(op, g.endpoints.TokenURL, resp.status, err)
	}
	// The token type is checked by the token cache (refresh), which keeps a
	// rotated refresh token even from an answer whose access token it must
	// refuse, so the spent one is never presented again.
	skew, ok := oauthwire.ClockSkew(resp.header, resp.sent, g.now())
	g.noteSkew(skew, ok)
	if ok && (skew > skewThreshold || skew < -skewThreshold) {
		g.emit(Event{Kind: EventClockSkew, Time: g.now(), Skew: skew.Round(time.Second)})
	}
	tok.Expiry = tokenExpiry(tok, resp.sent, skew, ok)
	return tok, nil
}

// classify turns an unusable answer of endpoint, to operation op, into an
// *EndpointError: an answer that is not a valid OAuth response matches
// ErrBadResponse; an OAuth error answer is classified the way the token
// cache classifies errors (ErrReauthRequired for invalid_grant,
// ErrClientRejected for invalid_client, ErrTemporarilyUnavailable for a
// 5xx, ...).
func (g *grant) classify(op, endpoint string, status int, err error) error {
	// A server may echo what it was sent, the client secret included, in its
	// error description; the text is sanitized for terminals but nothing
	// else knows this client's secret, however short it is.
	var oe *oauthwire.Error
	if errors.As(err, &oe) && len(g.cfg.ClientSecret) >= 4 {
		oe.Description = strings.ReplaceAll(oe.Description, g.cfg.ClientSecret, redact.Placeholder)
		oe.Excerpt = strings.ReplaceAll(oe.Excerpt, g.cfg.ClientSecret, redact.Placeholder)
	}
	if errors.Is(err, oauthwire.ErrBodyTooLarge) || errors.Is(err, oauthwire.ErrMalformedResponse) ||
		errors.Is(err, oauthwire.ErrUnexpectedContentType) || errors.Is(err, oauthwire.ErrMissingAccessToken) ||
		errors.Is(err, oauthwire.ErrInvalidDeviceResponse) {
		return &EndpointError{Op: op, Endpoint: redact.URLString(endpoint), Status: status, Err: badResponse(err)}
	}
	ee := &EndpointError{Op: op, Endpoint: redact.URLString(endpoint), Status: status, Err: refresh.Classify(err)}
	switch code := oauthCode(err); {
	case code == oauthwire.CodeInvalidClient || (code == "" && status == 401):
		ee.hint = g.authHint()
	case code == dpop.CodeInvalidProof && g.dpop == nil:
		// The server wants proofs this client does not send.
		ee.hint = "the server requires DPoP-bound tokens: set Options.DPoP"
	}
	return ee
}

// clientCredentials is the upstream of GrantClientCredentials. Its requests
// carry no single-use credential, so they may be retried.
//
// With DPoP the key is the one cur is bound to, or a new one for the
// first token.
func (g *grant) clientCredentials(ctx context.Context, cur *oauth2.Token, resources []string) (*oauth2.Token, error) {
	hk, err := g.dpopKeyOf(cur, false)
	if err != nil {
		return nil, forCache(inOp(opToken("client_credentials"), err))
	}
	form := url.Values{"grant_type": {"client_credentials"}}
	if len(g.cfg.Scopes) > 0 {
		form.Set("scope", strings.Join(g.cfg.Scopes, " "))
	}
	for _, r := range resources {
		form.Add("resource", r)
	}
	tok, err := g.tokenRequest(ctx, form, replaySafe, hk)
	return tok, forCache(err)
}

// refreshGrant is the upstream of a login's default token: one refresh_token
// request, never replayed once it may have reached the server.
func (g *grant) refreshGrant(ctx context.Context, cur *oauth2.Token, resources []string) (*oauth2.Token, error) {
	if cur == nil || cur.RefreshToken == "" {
		return nil, forCache(failure(opToken("refresh_token"), "not logged in (no refresh token is stored); call Login", ErrReauthRequired))
	}
	// A refresh token bound to a key (a public client's, RFC 9449 section
	// 5) is usable with that key only: the stored one.
	hk, err := g.dpopKeyOf(cur, true)
	if err != nil {
		return nil, forCache(inOp(opToken("refresh_token"), err))
	}
	tok, err := g.tokenRequest(ctx, g.refreshForm(cur.RefreshToken, resources), replayNever, hk)
	if err != nil {
		return nil, forCache(err)
	}
	keepRefreshToken(tok, cur)
	return tok, nil
}

func (g *grant) refreshForm(rt string, resources []string) url.Values {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	for _, r := range resources {
		form.Add("resource", r)
	}
	return form
}

// keepRefreshToken carries the old refresh token (and its expiry) over when
// the server did not rotate it (RFC 6749 section 6: a new one is optional).
func keepRefreshToken(tok, old *oauth2.Token) {
	if tok.RefreshToken != "" || old == nil {
		return
	}
	tok.RefreshToken = old.RefreshToken
	if rtExp := tokenx.RefreshTokenExpiry(old); !rtExp.IsZero() && tokenx.RefreshTokenExpiry(tok).IsZero() {
		*tok = *tok.WithExtra(withExtra(tok, tokenx.KeyRefreshTokenExpiry, rtExp))
	}
}

// withExtra returns tok's extras plus key=v, for oauth2.Token.WithExtra.
func withExtra(tok *oauth2.Token, key string, v any) map[string]any {
	m := tokenx.Extras(tok)
	m[key] = v
	return m
}

// mintForResource is the upstream of a resource other than the default: it
// presents the login's refresh token (held by the default token's cache) for
// an access token to the resource. It runs inside the default cache's
// Exchange, so no refresh of the login and no other mint, in this process or
// another, presents the same refresh token meanwhile, the freshest refresh
// token is used (even one whose save failed), and a rotated refresh token is
// saved before the minted access token is used.
func (g *grant) mintForResource(ctx context.Context, resources []string) (*oauth2.Token, error) {
	op := opToken("refresh_token")
	login, err := g.loginCache()
	if err != nil {
		return nil, forCache(inOp(op, err))
	}
	defer login.Close()
	var minted *oauth2.Token
	err = login.Exchange(ctx, func(ctx context.Context, full *oauth2.Token) (*oauth2.Token, error) {
		// Listed before the mint, so that a later Login or Logout finds
		// and drops the token even if this process is gone by then.
		if err := g.recordDerived(ctx, resources); err != nil {
			return nil, forCache(inOp(op, err))
		}
		hk, err := g.dpopKeyOf(full, true)
		if err != nil {
			return nil, forCache(inOp(op, err))
		}
		tok, err := g.tokenRequest(ctx, g.refreshForm(full.RefreshToken, resources), replayNever, hk)
		if err != nil {
			return nil, forCache(err)
		}
		minted = tok
		if tok.RefreshToken == "" || tok.RefreshToken == full.RefreshToken {
			return nil, nil // not rotated: the login is unchanged
		}
		// Rotated: the login keeps its access token and takes the new
		// refresh token (and its expiry).
		rotated := &oauth2.Token{RefreshToken: tok.RefreshToken}
		if exp := tokenx.RefreshTokenExpiry(tok); !exp.IsZero() {
			rotated = rotated.WithExtra(map[string]any{tokenx.KeyRefreshTokenExpiry: exp})
		}
		return rotated, nil
	})
	if minted == nil {
		// The login's cache reports its own failures (not logged in, the
		// store unreadable) in its words; they are this request's.
		return nil, forCache(inOp(op, err))
	}
	if err != nil && !errors.Is(err, refresh.ErrPersistFailed) {
		return nil, forCache(inOp(op, err))
	}
	// With ErrPersistFailed the rotated refresh token is kept in memory by
	// the login's cache and saved on its next access, before anything else
	// uses it; the minted access token is good. The resource's own entry
	// never holds the login's refresh token.
	out := *minted
	out.RefreshToken = ""
	return &out, nil
}

// dpopKeyOf returns the DPoP key of the credential cur belongs to (see
// credentialKey), or nil without DPoP; refresh says the request presents
// cur's refresh token.
func (g *grant) dpopKeyOf(cur *oauth2.Token, refresh bool) (*heldKey, error) {
	if g.dpop == nil {
		return nil, nil
	}
	hk, err := g.credentialKey(cur, refresh)
	if err != nil {
		return nil, failure("DPoP key", plain(err), ErrReauthRequired)
	}
	return hk, nil
}
