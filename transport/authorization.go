package transport

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/redact"
)

// The Authorization value is computed once per token, not once per
// request: the source hands out the same pointer while the token is
// unchanged (refresh.Cache answers from memory), so config.auth keeps the
// value of the last token pointer seen and every request with that token
// reuses it. A new pointer replaces the cached value; it is never modified.

// authValue is the precomputed header value for one token.
type authValue struct {
	tok    *oauth2.Token
	header string // "Bearer <token>"; "" when Prepare sets Authorization
	scheme string // challenge scheme that can reject this token
}

// authFor returns the precomputed Authorization value for tok, computing it
// only when the source hands out a new token pointer.
func (c *config) authFor(tok *oauth2.Token) (*authValue, error) {
	if av := c.auth.Load(); av != nil && av.tok == tok {
		return av, nil
	}
	av := &authValue{tok: tok}
	switch {
	case tok.TokenType == "" || strings.EqualFold(tok.TokenType, "bearer"):
		if !validTokenChars(tok.AccessToken) {
			return nil, errors.New("transport: access token contains characters not allowed in an Authorization header")
		}
		av.header = "Bearer " + tok.AccessToken
		av.scheme = "Bearer"
	case c.prepareHandles(tok.TokenType):
		av.scheme = tok.TokenType
	default:
		return nil, fmt.Errorf("transport: token type %q: %w", redact.Truncate(tok.TokenType, 32), ErrUnsupportedTokenType)
	}
	c.auth.Store(av)
	return av, nil
}

func (c *config) prepareHandles(typ string) bool {
	for _, s := range c.prepareTypes {
		if strings.EqualFold(s, typ) {
			return true
		}
	}
	return false
}

// validTokenChars reports whether s can go into a header value as a
// credential: visible ASCII only.
func validTokenChars(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
