// Package tokenx holds the conventions tokenward's packages share for data an
// *oauth2.Token carries beyond its exported fields, so that store, refresh,
// client and internal/oauthwire agree without importing each other.
//
// Extra fields travel in the token's raw map (oauth2.Token.WithExtra): the
// standard response members (id_token, scope, ...) under their own names, and
// values tokenward computes under keys starting with "tokenward.".
package tokenx

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// Keys of values tokenward computes and carries in a token's extras.
const (
	// KeyRefreshTokenExpiry holds the absolute expiry (time.Time, UTC) of the
	// refresh token, computed from refresh_token_expires_in when the server
	// sent it.
	KeyRefreshTokenExpiry = "tokenward.refresh_token_expiry"
	// KeySubject holds the subject (sub) of the ID token, when known.
	KeySubject = "tokenward.subject"
	// KeyExtraNames holds the names ([]string) of a token's other extra
	// members, so that code holding an *oauth2.Token can list them:
	// oauth2.Token offers lookup by name only. internal/oauthwire sets it
	// on every token it parses; provider-specific members (Salesforce's
	// instance_url, say) then survive the copies tokenward makes.
	KeyExtraNames = "tokenward.extra_names"
	// KeyDPoPKey holds the credential's DPoP private key (RFC 9449) in
	// PKCS #8 form: a []byte, or its standard base64 after a JSON round
	// trip. It is a secret: store.Entry keeps it in KeyPair, and the token
	// a cache hands out never carries it.
	KeyDPoPKey = "tokenward.dpop_key"
	// KeyDPoPJKT holds the RFC 7638 thumbprint (a string) of the key the
	// token is bound to, so that code holding only the public token can
	// find the key for its proofs. Not a secret.
	KeyDPoPJKT = "tokenward.dpop_jkt"
)

// DPoPKey returns the PKCS #8 bytes t carries under KeyDPoPKey, or nil.
func DPoPKey(t *oauth2.Token) []byte {
	if t == nil {
		return nil
	}
	switch v := t.Extra(KeyDPoPKey).(type) {
	case []byte:
		return v
	case string:
		if b, err := base64.StdEncoding.DecodeString(v); err == nil && len(b) > 0 {
			return b
		}
	}
	return nil
}

// ExtraNames returns the member names t lists under KeyExtraNames (a
// []string, or a []any of strings after a JSON round trip), or nil.
func ExtraNames(t *oauth2.Token) []string {
	if t == nil {
		return nil
	}
	switch v := t.Extra(KeyExtraNames).(type) {
	case []string:
		return v
	case []any:
		out := make([]string, 0, len(v))
		for _, x := range v {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// Extras returns a copy of the token's extra fields as a map. oauth2.Token
// exposes them only one key at a time, so the map is built from the known
// keys, the names the token lists under KeyExtraNames, and any key listed
// in more. The list itself is not copied: whoever builds a token from the
// map lists its keys anew.
func Extras(t *oauth2.Token, more ...string) map[string]any {
	out := map[string]any{}
	if t == nil {
		return out
	}
	keys := append([]string{"id_token", "scope", "refresh_token_expires_in", KeyRefreshTokenExpiry, KeySubject, KeyDPoPKey, KeyDPoPJKT}, more...)
	keys = append(keys, ExtraNames(t)...)
	for _, k := range keys {
		if v := t.Extra(k); v != nil {
			out[k] = v
		}
	}
	return out
}

// String returns the extra field key as a string ("" when absent or not a string).
func String(t *oauth2.Token, key string) string {
	if t == nil {
		return ""
	}
	s, _ := t.Extra(key).(string)
	return s
}

// IDToken returns the token response's id_token, if any.
func IDToken(t *oauth2.Token) string { return String(t, "id_token") }

// Scope returns the token response's scope, if any.
func Scope(t *oauth2.Token) string { return String(t, "scope") }

// RefreshTokenExpiry returns the refresh token's absolute expiry, or the zero
// time when unknown.
func RefreshTokenExpiry(t *oauth2.Token) time.Time {
	if t == nil {
		return time.Time{}
	}
	switch v := t.Extra(KeyRefreshTokenExpiry).(type) {
	case time.Time:
		return v
	case string:
		if tm, err := time.Parse(time.RFC3339Nano, v); err == nil {
			return tm
		}
	}
	return time.Time{}
}

// JWTExpiry returns the exp claim of a JWT-shaped token (header.payload.sig,
// base64url payload with a numeric "exp"), without verifying anything. The
// result is only a hint for scheduling refreshes. ok is false for anything
// that is not a JWT with a finite exp of at least one second after the Unix
// epoch.
func JWTExpiry(tok string) (exp time.Time, ok bool) {
	exp, _, ok = JWTTimes(tok)
	return exp, ok
}

// JWTTimes is [JWTExpiry] that also returns the iat (issued at) claim, or
// the zero time when it is absent or not a time like exp's. Both are in the
// issuing server's clock.
func JWTTimes(tok string) (exp, iat time.Time, ok bool) {
	first := strings.IndexByte(tok, '.')
	if first < 0 {
		return time.Time{}, time.Time{}, false
	}
	rest := tok[first+1:]
	second := strings.IndexByte(rest, '.')
	if second < 0 {
		return time.Time{}, time.Time{}, false
	}
	seg := rest[:second]
	if len(seg) > 64<<10 {
		return time.Time{}, time.Time{}, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(seg, "="))
	if err != nil {
		return time.Time{}, time.Time{}, false
	}
	var claims struct {
		Exp json.Number `json:"exp"`
		Iat json.Number `json:"iat"`
	}
	if err := json.Unmarshal(raw, &claims); err != nil {
		// A non-numeric iat must not hide a good exp: try exp alone.
		var only struct {
			Exp json.Number `json:"exp"`
		}
		if json.Unmarshal(raw, &only) != nil {
			return time.Time{}, time.Time{}, false
		}
		claims.Exp, claims.Iat = only.Exp, ""
	}
	exp, ok = unixClaim(claims.Exp)
	if !ok {
		return time.Time{}, time.Time{}, false
	}
	iat, _ = unixClaim(claims.Iat)
	return exp, iat, true
}

// unixClaim parses a NumericDate claim: a finite number of seconds from
// one second after the Unix epoch up to 2^40.
func unixClaim(n json.Number) (time.Time, bool) {
	if n == "" {
		return time.Time{}, false
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 1 || f > 1<<40 {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0).UTC(), true
}
