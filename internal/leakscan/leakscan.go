// Package leakscan finds token-shaped secrets in program output: the
// canary cores that oauthtest and internal/canary put into every
// token, code and secret they make, in plain or base64 form, and
// JWT-shaped strings. The examples' tests run each program against the
// fake server and scan everything it printed.
package leakscan

import (
	"encoding/base64"
	"regexp"
	"strings"

	"github.com/tokenward/tokenward/internal/canary"
)

var jwtRe = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`)

// needles are the canary prefix and its base64 forms at every alignment
// (a JWT payload carries it base64url-encoded).
var needles = func() []string {
	out := []string{canary.Prefix}
	for pad := 0; pad < 3; pad++ {
		enc := base64.RawURLEncoding.EncodeToString([]byte(strings.Repeat("x", pad) + canary.Prefix))
		// Drop the characters that depend on the padding bytes and the
		// last, partial group.
		start := (pad*8 + 5) / 6
		end := len(enc) - 2
		if end > start+6 {
			out = append(out, enc[start:end])
		}
	}
	return out
}()

// Find returns a description of each secret-shaped string in s (empty when
// there is none). The descriptions never repeat the secret.
func Find(s string, exact ...string) []string {
	var found []string
	for _, n := range needles {
		if i := strings.Index(s, n); i >= 0 {
			found = append(found, "canary core at byte "+itoa(i))
		}
	}
	if loc := jwtRe.FindStringIndex(s); loc != nil {
		found = append(found, "JWT-shaped string at byte "+itoa(loc[0]))
	}
	if f := canary.Find(s, exact...); len(f) > 0 {
		found = append(found, itoa(len(f))+" known secret(s)")
	}
	return found
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}
