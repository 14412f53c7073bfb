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
	header string // "Bearer <token>", or "<type> <token>" for a type Prepare declares
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
	case c.prepareScheme(tok.TokenType) != "":
		if !validTokenChars(tok.AccessToken) {
			return nil, errors.New("transport: access token contains characters not allowed in an Authorization header")
		}
		av.scheme = c.prepareScheme(tok.TokenType)
		av.header = av.scheme + " " + tok.AccessToken
	default:
		return nil, fmt.Errorf("transport: token type %q: %w", redact.Truncate(tok.TokenType, 32), ErrUnsupportedTokenType)
	}
	c.auth.Store(av)
	return av, nil
}

// prepareScheme returns the spelling Options.PrepareTokenTypes gives the
// token type typ (the Authorization scheme sent for it), or "" when Prepare
// does not declare it. The declared spelling is used, not the server's:
// a server may answer token_type "dpop", and some resource servers compare
// the scheme "DPoP" case-sensitively although RFC 9110 says they should not.
func (c *config) prepareScheme(typ string) string {
	for _, s := range c.prepareTypes {
		if strings.EqualFold(s, typ) {
			return s
		}
	}
	return ""
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
