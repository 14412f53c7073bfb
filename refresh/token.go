package refresh

import (
	"maps"
	"slices"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/tokenx"
)

// token is the cache's own form of a token set. The public edges speak
// *oauth2.Token (the Upstream, the Persister, Exchange functions, Set and
// Cache.Token); inside the package every token is a *token, converted at
// those edges by fromOAuth2, (*token).oauth2 and (*token).public. A token
// is never modified once built: a change makes a new one.
type token struct {
	access    string
	typ       string // token_type as the server sent it
	refresh   string
	expiry    time.Time
	expiresIn int64 // as the server sent it; informational, Expiry is what counts
	// extra holds the token response's other members (id_token, scope,
	// device_secret, provider-specific members) and the values tokenward
	// computes under internal/tokenx's keys, by name. It never holds
	// access_token or refresh_token, which are the fields above. Shared
	// between tokens: copy it before changing anything.
	extra map[string]any
}

// knownExtras are the extra members read by name from every token, besides
// the ones internal/tokenx knows (id_token, scope, the refresh token's
// expiry, the subject).
var knownExtras = []string{"issued_token_type", "device_secret"}

// secretExtras are token response members that are credentials in their
// own right and so never reach callers through the public token: the
// refresh token, and OpenID Connect Native SSO's device_secret, which can
// be exchanged for new tokens; and the DPoP private key a client keeps with
// its credential (internal/tokenx KeyDPoPKey), which signs the proofs that
// make the tokens usable. The ID token is not a refresh credential and
// stays.
var secretExtras = map[string]bool{"refresh_token": true, "device_secret": true, tokenx.KeyDPoPKey: true}

// fromOAuth2 converts a token that crosses a public edge inward. The
// refresh token's expiry is normalised to a time.Time. It returns nil for
// nil.
func fromOAuth2(t *oauth2.Token) *token {
	if t == nil {
		return nil
	}
	m := tokenx.Extras(t, slices.Concat(tokenx.ExtraNames(t), knownExtras)...)
	for k, v := range m {
		// A form-encoded response answers "" for an absent member.
		if v == "" || k == "access_token" || k == "refresh_token" || k == tokenx.KeyExtraNames {
			delete(m, k)
		}
	}
	if rte := tokenx.RefreshTokenExpiry(t); !rte.IsZero() {
		m[tokenx.KeyRefreshTokenExpiry] = rte
	} else {
		delete(m, tokenx.KeyRefreshTokenExpiry)
	}
	if len(m) == 0 {
		m = nil
	}
	return &token{access: t.AccessToken, typ: t.TokenType, refresh: t.RefreshToken, expiry: t.Expiry, expiresIn: t.ExpiresIn, extra: m}
}

// oauth2 converts t outward, whole, for the Upstream, the Persister and
// Exchange functions: the refresh token and every extra member included.
// Each call returns a new value, so what they do with it cannot change t.
func (t *token) oauth2() *oauth2.Token {
	o := &oauth2.Token{AccessToken: t.access, TokenType: t.typ, RefreshToken: t.refresh, Expiry: t.expiry, ExpiresIn: t.expiresIn}
	return withExtras(o, t.extra, nil)
}

// public converts t outward for callers of Cache.Token: without the
// refresh token, neither as a field nor among the extras, and without the
// other secretExtras.
func (t *token) public() *oauth2.Token {
	o := &oauth2.Token{AccessToken: t.access, TokenType: t.typ, Expiry: t.expiry, ExpiresIn: t.expiresIn}
	return withExtras(o, t.extra, secretExtras)
}

// withExtras attaches a copy of extra, without the members in skip and
// with the list of the rest under tokenx.KeyExtraNames, to o.
func withExtras(o *oauth2.Token, extra map[string]any, skip map[string]bool) *oauth2.Token {
	names := make([]string, 0, len(extra))
	for k := range extra {
		if !skip[k] {
			names = append(names, k)
		}
	}
	if len(names) == 0 {
		return o
	}
	slices.Sort(names)
	m := make(map[string]any, len(names)+1)
	for _, k := range names {
		m[k] = extra[k]
	}
	m[tokenx.KeyExtraNames] = names
	return o.WithExtra(m)
}

// rtExpiry returns the refresh token's expiry, or zero when unknown.
func (t *token) rtExpiry() time.Time {
	e, _ := t.extra[tokenx.KeyRefreshTokenExpiry].(time.Time)
	return e
}

// hasExtras reports whether t carries extra members a Persister may store
// besides the refresh token's expiry and the DPoP key and its thumbprint
// (which reduced sets keep, the thumbprint as part of the key).
func (t *token) hasExtras() bool {
	for k := range t.extra {
		switch k {
		case tokenx.KeyRefreshTokenExpiry, "refresh_token_expires_in", tokenx.KeyDPoPKey, tokenx.KeyDPoPJKT:
		default:
			return true
		}
	}
	return false
}

// withRefreshToken returns t with refresh token rt, whose expiry is rtExp
// (zero when unknown): the access token and its expiry are t's.
func (t *token) withRefreshToken(rt string, rtExp time.Time) *token {
	n := *t
	n.refresh = rt
	n.extra = maps.Clone(t.extra)
	delete(n.extra, "refresh_token_expires_in") // the server's count for t's refresh token
	delete(n.extra, tokenx.KeyRefreshTokenExpiry)
	if !rtExp.IsZero() {
		if n.extra == nil {
			n.extra = map[string]any{}
		}
		n.extra[tokenx.KeyRefreshTokenExpiry] = rtExp
	}
	return &n
}

// sameToken reports whether a and b are the same credential.
func sameToken(a, b *token) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.access == b.access && a.refresh == b.refresh
}

// sameRefreshToken reports whether a and b carry the same refresh token
// (a token and a reduced stored set of it do).
func sameRefreshToken(a, b *token) bool {
	return a != nil && b != nil && a.refresh != "" && a.refresh == b.refresh
}

// secretsOf lists the secrets of the given tokens, for scrubbing messages.
func secretsOf(toks ...*token) []string {
	var out []string
	for _, t := range toks {
		if t == nil {
			continue
		}
		idt, _ := t.extra["id_token"].(string)
		ds, _ := t.extra["device_secret"].(string)
		for _, s := range []string{t.access, t.refresh, idt, ds} {
			if s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}
