package store

import (
	"errors"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzDecodeEntry: decoding never panics, fails only with ErrCorrupt (or
// ErrUnsupportedVersion, which matches it) and then returns nothing, and
// whatever decodes re-encodes to data that decodes to the same entry.
// Seeds: testdata/fuzz/FuzzDecodeEntry.
func FuzzDecodeEntry(f *testing.F) {
	f.Add("name", []byte(`{"v":1,"name":"name","access_token":"at","expiry":"2030-01-02T03:04:05Z"}`))
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		e, err := decodeEntry(name, data)
		if err != nil {
			if e != nil || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decode = (%v, %v): want nil and ErrCorrupt", e, err)
			}
			return
		}
		enc, err := encodeEntry(name, e)
		if err != nil {
			t.Fatalf("a decoded entry does not encode: %v", err)
		}
		e2, err := decodeEntry(name, enc)
		if err != nil {
			t.Fatalf("re-encoded entry does not decode: %v\n%s", err, enc)
		}
		mustEqualEntry(t, e2, e)
		if enc2, _ := encodeEntry(name, e2); string(enc2) != string(enc) {
			t.Fatalf("encoding is not stable:\n%s\n%s", enc, enc2)
		}
	})
}

// FuzzEntryRoundTrip: every entry either round-trips exactly or is refused
// with ErrInvalidEntry because it cannot be stored faithfully.
func FuzzEntryRoundTrip(f *testing.F) {
	f.Add("name", "at", "Bearer", "rt", int64(1893553445), int64(5), "openid", "idt", "sub", "k", "v", []byte("key"))
	f.Add("é../\n", "", "", "", int64(0), int64(0), "", "", "", "", "", []byte(nil))
	f.Fuzz(func(t *testing.T, name, at, typ, rt string, sec, nsec int64, scope, idt, sub, k, v string, kp []byte) {
		if !utf8.ValidString(name) || name == "" {
			return // names are checked before encoding (ErrInvalidKey)
		}
		e := &Entry{AccessToken: at, TokenType: typ, RefreshToken: rt, Scope: scope, IDToken: idt, Subject: sub,
			Extra: map[string]string{k: v}, KeyPair: kp}
		if sec != 0 || nsec != 0 {
			e.Expiry = time.Unix(sec, nsec)
			e.RefreshTokenExpiry = time.Unix(sec/2, nsec)
		}
		enc, err := encodeEntry(name, e)
		if err != nil {
			if !errors.Is(err, ErrInvalidEntry) {
				t.Fatalf("encode = %v, want ErrInvalidEntry", err)
			}
			valid := true
			for _, s := range []string{at, typ, rt, scope, idt, sub, k, v} {
				valid = valid && utf8.ValidString(s)
			}
			for _, tm := range []time.Time{e.Expiry, e.RefreshTokenExpiry} {
				if y := tm.UTC().Year(); !tm.IsZero() && (y < 1 || y > 9999) {
					valid = false
				}
			}
			if valid {
				t.Fatalf("a faithful entry was refused: %v", err)
			}
			return
		}
		got, err := decodeEntry(name, enc)
		if err != nil {
			t.Fatalf("decode: %v\n%s", err, enc)
		}
		mustEqualEntry(t, got, e)
	})
}

// FuzzParseManifest: a keychain manifest never panics the parser and is
// either accepted within its bounds or rejected as corrupt.
func FuzzParseManifest(f *testing.F) {
	f.Add(`{"v":1,"gen":3,"n":2,"len":3000,"sha256":"00","prev":{"gen":2,"n":1}}`)
	f.Add(`{"v":1,"gen":1,"n":0,"len":2,"sha256":"00","data":"YWI="}`)
	f.Add(`{"v":2}`)
	f.Fuzz(func(t *testing.T, raw string) {
		m, err := parseManifest(raw)
		if err != nil {
			if m != nil || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("parse = (%v, %v)", m, err)
			}
			return
		}
		if m.N < 0 || m.N > maxChunks || m.Len < 0 || m.Len > MaxEntrySize || m.Gen == 0 {
			t.Fatalf("out-of-range manifest accepted: %+v", m)
		}
	})
}
