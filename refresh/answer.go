package refresh

import (
	"context"
	"errors"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/tokenward/tokenward/internal/redact"
	"github.com/tokenward/tokenward/internal/tokenx"
)

// What the protocol does with an authorization server's answer: validate
// it, keep the rotated refresh token of an answer it refuses, and handle a
// dead grant.

// validate checks an answer before it may become the cache's token: it
// needs an access token and a token type the cache accepts
// (Options.TokenTypes: by default Bearer, in any case, or none). An answer without a refresh token keeps cur's, and
// that token's expiry, as RFC 6749 section 6 allows.
func (c *core) validate(tok, cur *token) (*token, error) {
	if tok == nil || tok.access == "" {
		return nil, &Error{kind: ErrTemporarilyUnavailable, msg: "refresh: authorization server temporarily unavailable: the upstream returned no access token"}
	}
	if tt := tok.typ; !c.acceptsType(tt) {
		e := &Error{kind: ErrUnsupportedTokenType, Description: "token_type " + strconv.Quote(redact.Scrub(tt, 32, secretsOf(tok, cur)...)) +
			"; accepted: " + strings.Join(c.acceptedTypes(), " or ")}
		e.msg = e.build(secretsOf(tok, cur))
		return nil, e
	}
	if tok.refresh == "" && cur != nil && cur.refresh != "" {
		n := *tok
		n.refresh = cur.refresh
		if rte := cur.rtExpiry(); !rte.IsZero() && tok.rtExpiry().IsZero() {
			n.extra = maps.Clone(tok.extra)
			if n.extra == nil {
				n.extra = map[string]any{}
			}
			n.extra[tokenx.KeyRefreshTokenExpiry] = rte
		}
		tok = &n
	}
	return tok, nil
}

// rotatedRT handles an answer the cache refuses (no access token, or a
// token_type it cannot send) that carries a new refresh token: the server
// may have rotated, so the refresh token just presented may be spent. It
// returns cur with the new refresh token (and that token's expiry, if
// sent): the access token in use and its expiry are kept. It returns nil
// when there is nothing to keep.
func rotatedRT(tok, cur *token) *token {
	if tok == nil || tok.refresh == "" || cur == nil || cur.refresh == "" || tok.refresh == cur.refresh {
		return nil
	}
	return cur.withRefreshToken(tok.refresh, tok.rtExpiry())
}

// keepRotated saves and publishes rotated, the token in use with a new
// refresh token (rotatedRT), from an answer the cache refused or from an
// Exchange that brought no new access token for this cache. The next
// attempt presents the new refresh token, never the spent one; the access
// token served is unchanged. If the save fails the token is kept unsaved
// (or partial), as after any failed save, and f reports it.
func (c *core) keepRotated(ctx context.Context, f *flight, b basis, rotated *token) {
	now := time.Now()
	save, perr := c.saveNew(ctx, rotated, b)
	var ns *state
	for {
		s := c.cur.Load()
		if s != nil && s.full == b.cur {
			// Our token: same access token, same schedule, same public
			// token (and still invalid, if it was invalidated).
			ns = s.clone()
			ns.full, ns.rtExpiry = rotated, rotated.rtExpiry()
		} else {
			// b.cur came from the store (newer than memory).
			ns = c.newState(rotated, now, fromStore)
		}
		ns.save = save
		ns.fresh = ns.freshAt(now)
		if c.cur.CompareAndSwap(s, ns) {
			break
		}
	}
	if perr != nil {
		c.persistFailed(f, now, ns, perr)
	}
}

// markRotationLoss marks cerr, an ErrReauthRequired for refresh token rt,
// as ErrPossibleRotationLoss when an earlier attempt with rt failed in
// transit: the server probably rotated the refresh token then and the
// answer carrying the new one was lost.
func (c *core) markRotationLoss(cerr error, rt string, secrets []string) error {
	c.mu.Lock()
	suspect := rt != "" && c.suspectRT == rt
	c.mu.Unlock()
	var e *Error
	if suspect && errors.As(cerr, &e) {
		ne := *e // never modify an error the Upstream may share
		ne.rotationLoss = true
		ne.msg = ne.build(secrets)
		return &ne
	}
	return cerr
}

// reauth handles a dead grant: it deletes the dead token from the store
// (only if the store still holds it, or a reduced set of it) and stops
// background refreshes.
func (c *core) reauth(ctx context.Context, dead *token) {
	if p := c.o.Persister; p != nil {
		stored, err := c.load(ctx)
		if err == nil && stored != nil && (dead == nil || sameToken(stored, dead) || sameRefreshToken(stored, dead)) {
			if derr := p.Delete(ctx, c.key); derr != nil {
				c.o.Logger.Warn("refresh: deleting the dead token failed", "key", c.key, "error", c.wrap("deleting the stored token", derr))
			}
		}
	}
	if s := c.cur.Load(); s != nil {
		c.toReauth(s)
	}
}

// toReauth publishes s without its refresh token, marked dead. Its access
// token is still served until the mandatory window.
//
// s is the state the caller found dead, read before it waited for the
// store lock; the current state may be its twin with flags changed since
// (an Invalidate from a 401, above all), which must survive: the marking
// is a compare-and-swap on whatever is current, never a plain store of an
// older snapshot.
func (c *core) toReauth(s *state) {
	for {
		cur := c.cur.Load()
		base := s
		if cur != nil && cur.full == s.full {
			base = cur // s's token, with what happened to it since
		}
		n := base.clone()
		full := *n.full
		full.refresh = ""
		n.full, n.reauth, n.save, n.fresh = &full, true, saveState{}, false
		if c.cur.CompareAndSwap(cur, n) {
			return
		}
	}
}

// acceptedTypes returns the token types the cache accepts, for messages.
func (c *core) acceptedTypes() []string {
	if len(c.o.TokenTypes) == 0 {
		return []string{"Bearer"}
	}
	return c.o.TokenTypes
}

// acceptsType reports whether tt is among Options.TokenTypes (Bearer when
// the list is empty); "" counts as Bearer.
func (c *core) acceptsType(tt string) bool {
	if tt == "" {
		tt = "Bearer"
	}
	if len(c.o.TokenTypes) == 0 {
		return strings.EqualFold(tt, "bearer")
	}
	for _, t := range c.o.TokenTypes {
		if strings.EqualFold(tt, t) {
			return true
		}
	}
	return false
}
