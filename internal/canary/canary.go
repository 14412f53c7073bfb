// Package canary makes unique, recognisable secrets for tests and finds them
// (or recognisable pieces of them) in captured output, errors and logs.
//
// A canary is shaped like the secret it stands for (JWT-shaped for access
// tokens, opaque for refresh tokens and client secrets) so that redaction is
// tested on realistic input, and it carries a random core so that two tests
// never share one.
package canary

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"sync"
)

// Prefix starts the random core of every canary.
const Prefix = "twcanary"

// New returns an opaque canary secret of the given kind, such as "rt" or
// "secret": "twcanary-rt-<32 hex digits>".
func New(kind string) string {
	var b [16]byte
	rand.Read(b[:])
	return Prefix + "-" + kind + "-" + hex.EncodeToString(b[:])
}

// JWT returns a JWT-shaped canary (header.payload.signature, base64url) whose
// payload carries exp (Unix seconds, omitted when 0) and a random canary core.
func JWT(kind string, exp int64) string {
	hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	payload := `{"jti":"` + New(kind) + `"`
	if exp != 0 {
		payload += `,"exp":` + itoa(exp)
	}
	payload += `}`
	var sig [32]byte
	rand.Read(sig[:])
	return hdr + "." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." + base64.RawURLEncoding.EncodeToString(sig[:])
}

func itoa(n int64) string {
	neg := n < 0
	if neg {
		n = -n
	}
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}

// Find returns the secrets that occur in haystack, whole or as a recognisable
// fragment (any 16-byte window of the secret's last 32 bytes, which catches
// truncated or partly redacted leaks). Secrets shorter than 16 bytes are
// matched whole.
func Find(haystack string, secrets ...string) []string {
	var found []string
	for _, s := range secrets {
		if s == "" {
			continue
		}
		if leaks(haystack, s) {
			found = append(found, s)
		}
	}
	return found
}

func leaks(h, s string) bool {
	if strings.Contains(h, s) {
		return true
	}
	const w = 16
	if len(s) < w {
		return false
	}
	tail := s
	if len(tail) > 32 {
		tail = tail[len(tail)-32:]
	}
	for i := 0; i+w <= len(tail); i++ {
		if strings.Contains(h, tail[i:i+w]) {
			return true
		}
	}
	return false
}

// Log is a buffer safe for concurrent writes, for capturing log output (a
// slog handler's writer, a child process's stderr) that a test then scans
// with Find. The zero value is ready to use.
type Log struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
