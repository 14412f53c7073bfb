package store

import (
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/tokenx"
)

func TestEntryRoundTripKeepsEveryField(t *testing.T) {
	t.Parallel()
	in := canaryEntry()
	in.Expiry = time.Date(2030, 1, 2, 4, 4, 5, 123456789, time.FixedZone("CET", 3600)) // not UTC
	data, err := encodeEntry("name", in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := decodeEntry("name", data)
	if err != nil {
		t.Fatal(err)
	}
	mustEqualEntry(t, out, in)
	if out.Expiry.Location() != time.UTC || out.RefreshTokenExpiry.Location() != time.UTC {
		t.Errorf("times not UTC: %v, %v", out.Expiry.Location(), out.RefreshTokenExpiry.Location())
	}
	if !strings.Contains(string(data), `"expiry":"2030-01-02T03:04:05.123456789Z"`) || !strings.HasPrefix(string(data), `{"v":1,`) {
		t.Errorf("unexpected encoding: %s", data)
	}
	// Empty maps and slices come back nil; zero times stay zero.
	out, err = decodeEntry("n", mustEncode(t, "n", &Entry{Extra: map[string]string{}, KeyPair: []byte{}}))
	if err != nil || out.Extra != nil || out.KeyPair != nil || !out.Expiry.IsZero() {
		t.Errorf("empty entry came back as %+v, %v", out, err)
	}
}

func TestEntryTokenRoundTrip(t *testing.T) {
	t.Parallel()
	rtExp := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	tok := (&oauth2.Token{AccessToken: "at", TokenType: "Bearer", RefreshToken: "rt", Expiry: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}).
		WithExtra(map[string]any{"id_token": "idt", "scope": "a b", tokenx.KeyRefreshTokenExpiry: rtExp,
			tokenx.KeySubject: "sub", "issued_token_type": "urn:x", "ignored_number": 3.0})
	e := EntryFromToken(tok)
	want := &Entry{AccessToken: "at", TokenType: "Bearer", RefreshToken: "rt", Expiry: tok.Expiry, Scope: "a b", IDToken: "idt",
		RefreshTokenExpiry: rtExp, Subject: "sub", Extra: map[string]string{"issued_token_type": "urn:x"}}
	mustEqualEntry(t, e, want)

	back := e.Token()
	if back.AccessToken != "at" || back.RefreshToken != "rt" || !back.Expiry.Equal(tok.Expiry) || back.TokenType != "Bearer" {
		t.Errorf("Token() = %+v", back)
	}
	for _, k := range []string{"id_token", "scope", tokenx.KeySubject, "issued_token_type"} {
		if back.Extra(k) != tok.Extra(k) {
			t.Errorf("extra %s = %v, want %v", k, back.Extra(k), tok.Extra(k))
		}
	}
	if got := tokenx.RefreshTokenExpiry(back); !got.Equal(rtExp) {
		t.Errorf("refresh token expiry = %v", got)
	}
	mustEqualEntry(t, EntryFromToken(back), e)
	if EntryFromToken(nil) != nil || (*Entry)(nil).Token() != nil {
		t.Error("nil did not map to nil")
	}
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	good := string(mustEncode(t, "name", canaryEntry()))
	tests := []struct {
		name, data string
		want       error
	}{
		{"empty", "", ErrCorrupt},
		{"not json", "garbage", ErrCorrupt},
		{"array", "[1]", ErrCorrupt},
		{"no version", `{"name":"name"}`, ErrCorrupt},
		{"version 0", `{"v":0,"name":"name"}`, ErrCorrupt},
		{"version string", `{"v":"1","name":"name"}`, ErrCorrupt},
		{"version float", `{"v":1.0,"name":"name"}`, ErrCorrupt},
		{"newer version", `{"v":2,"name":"name","access_token":"x"}`, ErrUnsupportedVersion},
		{"huge version", `{"v":99999999999999,"name":"name"}`, ErrUnsupportedVersion},
		{"wrong name", strings.Replace(good, `"name":"name"`, `"name":"other"`, 1), ErrCorrupt},
		{"unknown field", `{"v":1,"name":"name","surprise":1}`, ErrCorrupt},
		{"trailing data", good + `{}`, ErrCorrupt},
		{"bad time", `{"v":1,"name":"name","expiry":"tomorrow"}`, ErrCorrupt},
		{"wrong type", `{"v":1,"name":"name","access_token":5}`, ErrCorrupt},
		{"too large", `{"v":1,"name":"name","access_token":"` + strings.Repeat("a", MaxEntrySize) + `"}`, ErrCorrupt},
	}
	for _, tt := range tests {
		e, err := decodeEntry("name", []byte(tt.data))
		if !errors.Is(err, tt.want) || e != nil {
			t.Errorf("%s: got (%v, %v), want %v", tt.name, e, err, tt.want)
		}
	}
	_, err := decodeEntry("name", []byte(`{"v":2}`))
	if !errors.Is(err, ErrCorrupt) {
		t.Error("ErrUnsupportedVersion does not match ErrCorrupt")
	}
	// Never half-read: every truncation of a valid entry is rejected.
	for i := range len(good) {
		if e, err := decodeEntry("name", []byte(good[:i])); err == nil || e != nil {
			t.Fatalf("prefix of %d bytes decoded", i)
		}
	}
}

func TestEncodeRejectsUnfaithful(t *testing.T) {
	t.Parallel()
	for name, e := range map[string]*Entry{
		"nil":             nil,
		"bad utf8":        {AccessToken: "\xff"},
		"bad utf8 extra":  {Extra: map[string]string{"k": "\xfe"}},
		"year 10000":      {Expiry: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		"year 0 after tz": {RefreshTokenExpiry: time.Date(1, 1, 1, 0, 30, 0, 0, time.FixedZone("x", 3600))},
	} {
		if _, err := encodeEntry("n", e); !errors.Is(err, ErrInvalidEntry) {
			t.Errorf("%s: err = %v, want ErrInvalidEntry", name, err)
		}
	}
}
