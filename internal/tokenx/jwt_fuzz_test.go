package tokenx

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

// jwtWith returns a JWT-shaped token whose payload segment is payload,
// base64url-encoded without padding.
func jwtWith(payload string) string {
	return "eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".c2ln"
}

// FuzzJWTExpiryClaim checks JWTExpiry against what it promises, where
// FuzzJWTExpiry only checks that an accepted exp is positive:
//
//   - for a payload built from a fuzzed integer exp (as a JSON number, a
//     number with a fraction, a string, next to other claims), the expiry
//     is exactly time.Unix(exp, 0) in UTC when 0 < exp <= 2^40, and
//     refused otherwise;
//   - for fuzzed garbage, used as a whole token and as the payload
//     segment, it never panics and accepts only a token with a header and
//     a signature segment whose payload is valid base64url of valid JSON,
//     giving a whole second in range; the header and signature do not
//     change the answer.
func FuzzJWTExpiryClaim(f *testing.F) {
	for _, exp := range []int64{1700000000, 1, 0, -1, 1 << 40, 1<<40 + 1, -1 << 63, 1<<63 - 1} {
		f.Add(exp, "")
	}
	f.Add(int64(1700000000), base64.RawURLEncoding.EncodeToString([]byte(`{"exp":1700000000}`)))
	f.Add(int64(1700000000), base64.RawURLEncoding.EncodeToString([]byte(`{"EXP":1e9,"exp":null}`)))
	f.Add(int64(0), "e30.x.y")
	f.Add(int64(0), "!!!")
	f.Fuzz(func(t *testing.T, exp int64, garbage string) {
		want, inRange := time.Unix(exp, 0).UTC(), exp > 0 && exp <= 1<<40
		n := strconv.FormatInt(exp, 10)
		for _, tc := range []struct {
			payload string
			ok      bool
		}{
			{`{"exp":` + n + `}`, inRange},
			{`{"sub":"a","exp":` + n + `,"iat":1}`, inRange},
			{`{"exp":"` + n + `"}`, inRange}, // lenient: a hint only
			// exp + 0.5 truncates to exp; 2^40 + 0.5 is over the limit.
			{`{"exp":` + n + `.5}`, inRange && exp < 1<<40},
		} {
			got, ok := JWTExpiry(jwtWith(tc.payload))
			if ok != tc.ok || (ok && (!got.Equal(want) || got.Location() != time.UTC)) {
				t.Fatalf("JWTExpiry(payload %s) = %v, %v; want %v, %v", tc.payload, got, ok, want, tc.ok)
			}
		}

		checkGarbage(t, garbage)
		// garbage as the payload segment: the header and the signature do
		// not matter.
		got, ok := JWTExpiry("a." + garbage + ".b")
		if got2, ok2 := JWTExpiry("eyJhbGciOiJSUzI1NiJ9." + garbage + ".c2lnbmF0dXJl"); ok2 != ok || !got2.Equal(got) {
			t.Fatalf("the header or signature changed the answer for payload %q: %v, %v vs %v, %v", garbage, got, ok, got2, ok2)
		}
		checkGarbage(t, "a."+garbage+".b")
	})
}

// checkGarbage checks what JWTExpiry may accept from an arbitrary string s:
// only a header.payload.signature shape whose payload segment is valid
// base64url (padding allowed) of valid JSON, and only a whole second in
// (0, 2^40] in UTC.
func checkGarbage(t *testing.T, s string) {
	t.Helper()
	got, ok := JWTExpiry(s)
	if !ok {
		if !got.IsZero() {
			t.Fatalf("JWTExpiry(%q) refused the token but returned %v", s, got)
		}
		return
	}
	parts := strings.SplitN(s, ".", 3)
	if len(parts) < 3 {
		t.Fatalf("JWTExpiry(%q) accepted a string with fewer than three segments", s)
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil || !json.Valid(raw) {
		t.Fatalf("JWTExpiry(%q) accepted a payload that is not base64url JSON (%v)", s, err)
	}
	u := got.Unix()
	if u < 0 || u == 0 || u > 1<<40 || got.Nanosecond() != 0 || got.Location() != time.UTC {
		t.Fatalf("JWTExpiry(%q) = %v: not a whole second in (0, 2^40] in UTC", s, got)
	}
}
