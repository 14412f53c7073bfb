package client

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/internal/redact"
	"github.com/tokenward/tokenward/store"
)

// logoutDeleteTimeout bounds the local delete of Logout, which runs even
// when the caller's context has ended (revocation may have used it up).
const logoutDeleteTimeout = 30 * time.Second

// LogoutResult says what [Client.Logout] found and did. Its text fields
// name tokens ("refresh token", "access token for https://api.example"),
// never show one.
type LogoutResult struct {
	// Found reports that a login or token was stored (or held in memory);
	// when false, Logout had nothing to revoke or delete and claims neither.
	Found bool
	// Revoked names the tokens the server revoked.
	Revoked []string
	// NotRevocable names the access tokens the server declined to revoke
	// by policy (RFC 7009 unsupported_token_type, common with JWT access
	// tokens). Not a failure: they stay valid only until they expire, and
	// with the refresh token revoked no new one can be minted. Each entry
	// says when it expires, when known.
	NotRevocable []string
	// LocalDeleted reports that every local entry of the login is gone.
	LocalDeleted bool
}

// String says what Logout found and did, in one line: "nothing stored",
// or "revoked: refresh token, access token; deleted locally".
func (r *LogoutResult) String() string {
	if r == nil {
		return "<nil>"
	}
	if !r.Found {
		return "nothing stored"
	}
	var parts []string
	if len(r.Revoked) > 0 {
		parts = append(parts, "revoked: "+strings.Join(r.Revoked, ", "))
	}
	if len(r.NotRevocable) > 0 {
		parts = append(parts, "not revocable by the server's policy: "+strings.Join(r.NotRevocable, ", "))
	}
	if r.LocalDeleted {
		parts = append(parts, "deleted locally")
	} else {
		parts = append(parts, "NOT deleted locally")
	}
	return strings.Join(parts, "; ")
}

// Logout revokes the login at the server and deletes it locally: first the
// refresh token, then the access tokens (RFC 7009, when the server has a
// revocation endpoint), then every local entry of this client and profile:
// the default token's and those of Options.Resources and of every resource
// used through ForResource. The tokens revoked are the live ones (a refresh
// token whose save failed included). Revocation uses ctx; the local delete
// runs even after ctx has ended, bounded on its own, so a hanging or
// unreachable revocation endpoint never keeps tokens on disk: Logout works
// offline, and then reports what it could not revoke.
//
// The result says what was found and done. The error, a *LogoutError
// (which carries the same result), reports what failed: a token the server
// may still honour, or a local delete that did not complete. An access
// token the server declines to revoke by policy is not a failure (see
// LogoutResult.NotRevocable); nothing stored is not either.
func (c *Client) Logout(ctx context.Context) (*LogoutResult, error) {
	res := &LogoutResult{}
	if c.static != nil {
		// Nothing is stored, and the token is the application's: it goes
		// on being sent until the application stops passing it.
		return res, failure(opLogout, "a fixed access token is configured (Options.AccessToken): tokenward neither stores nor revokes it", ErrInvalidConfig)
	}
	def, err := c.defaultResource()
	if err != nil {
		return nil, err
	}
	derived, release := c.derivedResources(ctx)
	defer release()

	// The live tokens, read before anything is deleted.
	type held struct {
		what string
		tok  *oauth2.Token
	}
	var tokens []held
	var notRevoked []string
	var errs []error
	xerr := def.cache.Exchange(ctx, func(_ context.Context, full *oauth2.Token) (*oauth2.Token, error) {
		cp := *full
		tokens = append(tokens, held{"access token", &cp})
		return nil, nil
	})
	switch {
	case xerr == nil:
	case errors.Is(xerr, ErrReauthRequired):
		// No refresh token (client credentials, or a server that issues
		// none): the default entry may still hold a live access token.
		e, err := c.grant.store.Load(ctx, def.key.String())
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			res.Found = true
			notRevoked = append(notRevoked, "access token (the store could not be read)")
			errs = append(errs, err)
		default:
			tokens = append(tokens, held{"access token", e.Token()})
		}
	default:
		// The store could not be read: whatever it holds was not revoked.
		res.Found = true
		notRevoked = append(notRevoked, "the login's tokens (the store could not be read)")
		errs = append(errs, xerr)
	}
	for _, r := range derived {
		what := "access token for " + redact.Terminal(redact.URLString(r.resources[0]))
		e, err := c.grant.store.Load(ctx, r.key.String())
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			res.Found = true
			notRevoked = append(notRevoked, what+" (the store could not be read)")
			errs = append(errs, err)
		default:
			tokens = append(tokens, held{what, e.Token()})
		}
	}

	revoke := func(tok, hint, what string, expiry time.Time) {
		if tok == "" {
			return
		}
		res.Found = true
		if err := c.ready(ctx); err != nil {
			// The server is still out of reach: nothing can be revoked.
			notRevoked = append(notRevoked, what)
			errs = append(errs, err)
			return
		}
		if c.endpoints.RevocationURL == "" {
			notRevoked = append(notRevoked, what)
			return
		}
		err := c.revoke(ctx, tok, hint)
		switch {
		case err == nil:
			res.Revoked = append(res.Revoked, what)
		case hint == "access_token" && oauthCode(err) == oauthwire.CodeUnsupportedTokenType:
			if !expiry.IsZero() {
				what += " (valid until " + expiry.UTC().Format(time.RFC3339) + ")"
			}
			res.NotRevocable = append(res.NotRevocable, what)
		default:
			notRevoked = append(notRevoked, what)
			errs = append(errs, err)
		}
	}
	// The refresh token first: revoking it ends the whole grant on most
	// servers, so a failure later matters less.
	for _, h := range tokens {
		revoke(h.tok.RefreshToken, "refresh_token", "refresh token", time.Time{})
	}
	for _, h := range tokens {
		revoke(h.tok.AccessToken, "access_token", h.what, h.tok.Expiry)
	}
	if c.resolved.Load() && c.endpoints.RevocationURL == "" && res.Found {
		errs = append(errs, errNoRevocation)
	}

	delCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), logoutDeleteTimeout)
	defer cancel()
	res.LocalDeleted = true
	for _, r := range append([]*Resource{def}, derived...) {
		if err := r.cache.Clear(delCtx); err != nil {
			res.LocalDeleted = false
			errs = append(errs, err)
		}
	}
	if res.LocalDeleted {
		// The stored DPoP keys are gone with the tokens; so are the parsed
		// copies this process kept.
		for _, h := range tokens {
			c.grant.forgetCredentialKey(h.tok)
		}
		// Every derived token is gone (and no new one can be minted: the
		// login is gone), so the index of them goes too.
		if err := c.grant.store.Delete(delCtx, c.grant.derivedIndexKey()); err != nil && !errors.Is(err, store.ErrNotFound) {
			res.LocalDeleted = false
			errs = append(errs, err)
		}
	}
	if c.grant.cfg.Issuer != "" {
		// The kept discovery document goes too, so that a program that
		// logs out leaves nothing behind; it holds no secret, so a failure
		// is only logged, and another login of the issuer fetches it again
		// at its next start.
		if err := c.grant.store.Delete(delCtx, c.grant.discoveryKey()); err != nil && !errors.Is(err, store.ErrNotFound) {
			c.grant.log.Debug("client: deleting the kept discovery document failed", "error", err)
		}
	}
	res.Revoked, res.NotRevocable = dedupe(res.Revoked), dedupe(res.NotRevocable)
	c.grant.emit(Event{Kind: EventLogout, Time: c.now()})
	if len(notRevoked) == 0 && res.LocalDeleted && len(errs) == 0 {
		return res, nil
	}
	return res, &LogoutError{NotRevoked: dedupe(notRevoked), LocalDeleted: res.LocalDeleted, Result: res, Err: errors.Join(errs...)}
}

// oauthCode returns the OAuth error code of a server's answer in err's
// chain, "" when there is none.
func oauthCode(err error) string {
	var oe *oauthwire.Error
	if errors.As(err, &oe) {
		return oe.Code
	}
	return ""
}

// revoke sends one RFC 7009 revocation request. Revocation is idempotent,
// so it may be retried.
func (g *grant) revoke(ctx context.Context, tok, hint string) error {
	form := url.Values{"token": {tok}, "token_type_hint": {hint}}
	resp, err := g.ep.post(ctx, g.endpoints.RevocationURL, form, g.authFor(g.endpoints.RevocationURL), replaySafe)
	if err != nil {
		return inOp(opRevocation, err)
	}
	if resp.status == 200 {
		return nil
	}
	return g.classify(opRevocation, g.endpoints.RevocationURL, resp.status, oauthwire.ParseErrorResponse(resp.status, resp.header, resp.body))
}

// errNoRevocation: the tokens could not be revoked, for want of an
// endpoint.
var errNoRevocation = errors.New("revocation: the server has no revocation endpoint")

func dedupe(s []string) []string {
	var out []string
	for _, x := range s {
		if !contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

func contains(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

// LogoutError reports what Logout could not do. The local tokens are deleted
// even when revocation fails; NotRevoked names the tokens ("refresh token",
// "access token for https://api.example") the server may still honour. Err
// holds the causes (the revocation failures, as *EndpointError, among
// them).
type LogoutError struct {
	NotRevoked   []string
	LocalDeleted bool
	// Result is what Logout found and did, as it also returns it.
	Result *LogoutResult
	Err    error
}

// Error says what was not revoked, whether the local tokens are gone, and
// why: "client: logout: incomplete: not revoked at the server: refresh
// token; local tokens deleted (revocation: ...)".
func (e *LogoutError) Error() string {
	var parts []string
	if len(e.NotRevoked) > 0 {
		parts = append(parts, "not revoked at the server: "+strings.Join(e.NotRevoked, ", "))
	}
	if e.LocalDeleted {
		parts = append(parts, "local tokens deleted")
	} else {
		parts = append(parts, "local tokens NOT deleted")
	}
	s := "incomplete: " + strings.Join(parts, "; ")
	if e.Err != nil {
		s += " (" + plain(e.Err) + ")"
	}
	return message(opLogout, s)
}

// Unwrap returns the causes.
func (e *LogoutError) Unwrap() error { return e.Err }
