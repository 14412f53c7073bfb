package refresh

import (
	"context"
	"errors"
	"sync"
	"testing"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/tokenx"
)

// TestTokenTypes: Options.TokenTypes replaces the Bearer default, and the
// DPoP key a token carries never reaches the public token but stays in
// what the Persister gets.
func TestTokenTypes(t *testing.T) {
	up := UpstreamFunc(func(_ context.Context, _ *oauth2.Token) (*oauth2.Token, error) { return nil, errors.New("unused") })
	dpopTok := (&oauth2.Token{AccessToken: "at", TokenType: "DPoP", RefreshToken: "rt"}).WithExtra(map[string]any{
		tokenx.KeyDPoPKey: []byte("pkcs8-bytes"), tokenx.KeyDPoPJKT: "thumb",
	})
	def, err := New(t.Name()+"-default", up)
	if err != nil {
		t.Fatal(err)
	}
	defer def.Close()
	if err := def.Set(t.Context(), dpopTok); !errors.Is(err, ErrUnsupportedTokenType) {
		t.Fatalf("default cache, DPoP token: %v, want ErrUnsupportedTokenType", err)
	}

	p := &savePersister{}
	c, err := New(t.Name()+"-dpop", up, func(o *Options) { o.TokenTypes = []string{"dpop"}; o.Persister = p })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Set(t.Context(), &oauth2.Token{AccessToken: "at", TokenType: "Bearer"}); !errors.Is(err, ErrUnsupportedTokenType) {
		t.Fatalf("DPoP-only cache, Bearer token: %v, want ErrUnsupportedTokenType", err)
	}
	if err := c.Set(t.Context(), dpopTok); err != nil {
		t.Fatalf("DPoP-only cache, DPoP token: %v", err)
	}
	pub, err := c.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if tokenx.DPoPKey(pub) != nil || tokenx.String(pub, tokenx.KeyDPoPJKT) != "thumb" {
		t.Fatalf("public token: key %v, thumbprint %q; want no key and the thumbprint", tokenx.DPoPKey(pub) != nil, tokenx.String(pub, tokenx.KeyDPoPJKT))
	}
	if saved := p.last(); saved == nil || string(tokenx.DPoPKey(saved)) != "pkcs8-bytes" {
		t.Fatal("the Persister did not get the key")
	}
}

// savePersister keeps the last token saved.
type savePersister struct {
	mu  sync.Mutex
	tok *oauth2.Token
}

func (p *savePersister) Load(context.Context, string) (*oauth2.Token, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tok, nil
}

func (p *savePersister) Save(_ context.Context, _ string, t *oauth2.Token) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tok = t
	return nil
}

func (p *savePersister) Delete(context.Context, string) error { return nil }

func (p *savePersister) last() *oauth2.Token {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tok
}

// TestReducedSetsKeepDPoPKey: the smaller sets a failed save falls back to
// keep the DPoP key, without which a bound refresh token is useless.
func TestReducedSetsKeepDPoPKey(t *testing.T) {
	full := &token{access: "at", typ: "DPoP", refresh: "rt", extra: map[string]any{"id_token": "x", tokenx.KeyDPoPKey: []byte("k"), tokenx.KeyDPoPJKT: "j"}}
	sets := reducedSets(full)
	if len(sets) != 2 {
		t.Fatalf("%d reduced sets, want 2", len(sets))
	}
	for i, s := range sets {
		if _, ok := s.extra[tokenx.KeyDPoPKey]; !ok || s.extra[tokenx.KeyDPoPJKT] != "j" {
			t.Fatalf("reduced set %d lost the DPoP key", i)
		}
		if _, ok := s.extra["id_token"]; ok {
			t.Fatalf("reduced set %d kept the ID token", i)
		}
	}
}
