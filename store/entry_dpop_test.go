package store

import (
	"bytes"
	"encoding/base64"
	"testing"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/tokenx"
)

// TestEntryDPoPKey: the DPoP key of a token's extras becomes KeyPair and
// comes back as the same extra, also when a JSON round trip turned the
// bytes into base64 text.
func TestEntryDPoPKey(t *testing.T) {
	der := []byte{0x30, 0x81, 0x87, 0x02, 0x01, 0x00}
	for name, v := range map[string]any{"bytes": der, "base64": base64.StdEncoding.EncodeToString(der)} {
		tok := (&oauth2.Token{AccessToken: "at", TokenType: "DPoP"}).WithExtra(map[string]any{tokenx.KeyDPoPKey: v})
		e := EntryFromToken(tok)
		if !bytes.Equal(e.KeyPair, der) {
			t.Fatalf("%s: KeyPair = %x, want %x", name, e.KeyPair, der)
		}
		if got := tokenx.DPoPKey(e.Token()); !bytes.Equal(got, der) {
			t.Fatalf("%s: Token() key = %x, want %x", name, got, der)
		}
	}
	if e := EntryFromToken(&oauth2.Token{AccessToken: "at"}); e.KeyPair != nil || tokenx.DPoPKey(e.Token()) != nil {
		t.Fatal("a token without a key gained one")
	}
}
