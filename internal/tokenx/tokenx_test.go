package tokenx

import (
	"encoding/base64"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/canary"
)

func TestJWTExpiry(t *testing.T) {
	t.Parallel()
	enc := func(p string) string {
		return "eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString([]byte(p)) + ".sig"
	}
	cases := []struct {
		tok  string
		want int64
		ok   bool
	}{
		{canary.JWT("at", 1700000000), 1700000000, true},
		{enc(`{"exp":1700000000.5}`), 1700000000, true},
		{enc(`{"exp":"1700000000"}`), 1700000000, true}, // lenient: a hint only
		{enc(`{"exp":-1}`), 0, false},
		{enc(`{"exp":1e300}`), 0, false},
		{enc(`{}`), 0, false},
		{"opaque-token", 0, false},
		{"a.b", 0, false},
		{"a.!!!.c", 0, false},
	}
	for _, c := range cases {
		got, ok := JWTExpiry(c.tok)
		if ok != c.ok || (ok && got.Unix() != c.want) {
			t.Errorf("JWTExpiry(%q) = %v, %v; want %d, %v", c.tok, got, ok, c.want, c.ok)
		}
	}
}

func TestExtras(t *testing.T) {
	t.Parallel()
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	tok := (&oauth2.Token{AccessToken: "x"}).WithExtra(map[string]any{
		"id_token": "idt", "scope": "a b", KeyRefreshTokenExpiry: exp, KeySubject: "alice",
	})
	if IDToken(tok) != "idt" || Scope(tok) != "a b" || !RefreshTokenExpiry(tok).Equal(exp) {
		t.Fatalf("accessors: %q %q %v", IDToken(tok), Scope(tok), RefreshTokenExpiry(tok))
	}
	if len(Extras(tok)) != 4 || String(tok, KeySubject) != "alice" {
		t.Fatalf("Extras = %v", Extras(tok))
	}
	str := (&oauth2.Token{}).WithExtra(map[string]any{KeyRefreshTokenExpiry: exp.Format(time.RFC3339Nano)})
	if !RefreshTokenExpiry(str).Equal(exp) || !RefreshTokenExpiry(nil).IsZero() {
		t.Fatal("string form or nil not handled")
	}
}

func FuzzJWTExpiry(f *testing.F) {
	f.Add(canary.JWT("at", 1700000000))
	f.Add("eyJ.e30.x")
	f.Fuzz(func(t *testing.T, s string) {
		if exp, ok := JWTExpiry(s); ok && exp.Unix() <= 0 {
			t.Fatalf("non-positive exp accepted: %v", exp)
		}
	})
}
