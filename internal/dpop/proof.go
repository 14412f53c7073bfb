package dpop

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// jtiBytes is the size of a proof's random jti: 128 bits, so that two
// proofs of one key never share one (RFC 9449 section 11.1 asks for enough
// entropy to make collisions negligible).
const jtiBytes = 16

// ErrInvalidProofParams means a proof cannot be built from the parameters:
// no time, a method that is not an HTTP token, or a nonce that is not the
// printable characters RFC 9449 section 8 allows or is longer than
// MaxNonceLen.
var ErrInvalidProofParams = errors.New("invalid DPoP proof parameters")

// ProofParams describe the request a proof is for. Its printed forms hide
// AccessToken.
type ProofParams struct {
	// Method is the request's HTTP method ("POST", "GET"), the htm claim.
	Method string
	// URL is the request's URL; HTU turns it into the htu claim.
	URL string
	// Target is the request's parsed URL, used instead of URL when set:
	// a transport has it, and the usual URL then needs no printing.
	Target *url.URL
	// Now is the proof's time, the iat claim, already corrected for the
	// server's clock skew by the caller. It must not be zero.
	Now time.Time
	// Nonce is the server's last DPoP-Nonce for the URL's origin, if any.
	Nonce string
	// AccessToken is the DPoP-bound access token sent with the request,
	// whose hash becomes the ath claim; empty for token requests.
	AccessToken string
	// ATH is AccessTokenHash(AccessToken), used instead of hashing
	// AccessToken when set: a caller sending many requests with one token
	// computes it once.
	ATH string
}

// Proof returns a signed DPoP proof JWT (RFC 9449 section 4) for one
// request: header {"typ":"dpop+jwt","alg","jwk"} and claims jti (128
// random bits), htm, htu, iat, and ath and nonce when p has them. Every
// call makes a new proof; a proof is sent once.
func (k *Key) Proof(p ProofParams) (string, error) {
	if k == nil || k.signer == nil {
		return "", fmt.Errorf("dpop: proof: %w", ErrUnsupportedKey)
	}
	if p.Now.IsZero() {
		return "", fmt.Errorf("dpop: proof: %w: no time", ErrInvalidProofParams)
	}
	if !isToken(p.Method) {
		return "", fmt.Errorf("dpop: proof: %w: method is not an HTTP token", ErrInvalidProofParams)
	}
	if p.Nonce != "" && !isNonce(p.Nonce) {
		return "", fmt.Errorf("dpop: proof: %w: nonce has characters a nonce cannot have or is too long", ErrInvalidProofParams)
	}
	htu, err := p.target()
	if err != nil {
		return "", fmt.Errorf("dpop: proof: %w", errors.Unwrap(err))
	}
	if p.ATH != "" && !isATH(p.ATH) {
		return "", fmt.Errorf("dpop: proof: %w: ath is not a base64url SHA-256", ErrInvalidProofParams)
	}

	// Both buffers live on the stack for every usual proof; they grow on
	// the heap only for an unusually long URL or nonce, or a large key.
	var payloadBuf [512]byte
	payload := appendPayload(payloadBuf[:0], p, htu)
	var inputBuf [1536]byte
	input := append(inputBuf[:0], k.header...)
	input = base64.RawURLEncoding.AppendEncode(input, payload)

	var sigBuf [132]byte // ES512's r || s, the longest but RSA's
	sig, err := k.sign(sigBuf[:0], input)
	if err != nil {
		return "", fmt.Errorf("dpop: proof: sign with %s: %w", k.alg, err)
	}
	var b strings.Builder
	b.Grow(len(input) + 1 + base64.RawURLEncoding.EncodedLen(len(sig)))
	b.Write(input)
	b.WriteByte('.')
	var sigB64 [704]byte // RSA 4096's 512 bytes, encoded
	b.Write(base64.RawURLEncoding.AppendEncode(sigB64[:0], sig))
	return b.String(), nil
}

// target returns the htu of the request p describes.
func (p *ProofParams) target() (target, error) {
	if p.Target != nil {
		if t, ok := fastTarget(p.Target); ok {
			return t, nil
		}
		htu, err := HTU(p.Target.String())
		return target{whole: htu}, err
	}
	htu, err := HTU(p.URL)
	return target{whole: htu}, err
}

// isATH reports whether s can be an ath: 43 base64url characters, the
// unpadded encoding of 32 bytes.
func isATH(s string) bool {
	if len(s) != base64.RawURLEncoding.EncodedLen(sha256.Size) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// appendPayload writes the claims as JSON. Every value but htu is known
// to need no escaping (base64url, an HTTP token, digits, a nonce of
// NQCHARs); htu is escaped anyway, since it comes from a URL.
func appendPayload(b []byte, p ProofParams, htu target) []byte {
	var jti [jtiBytes]byte
	readJTI(&jti)
	b = append(b, `{"jti":"`...)
	b = base64.RawURLEncoding.AppendEncode(b, jti[:])
	b = append(b, `","htm":"`...)
	b = append(b, p.Method...)
	b = append(b, `","htu":"`...)
	b = htu.appendTo(b)
	b = append(b, `","iat":`...)
	b = strconv.AppendInt(b, p.Now.Unix(), 10)
	switch {
	case p.ATH != "":
		b = append(b, `,"ath":"`...)
		b = append(b, p.ATH...)
		b = append(b, '"')
	case p.AccessToken != "":
		b = append(b, `,"ath":"`...)
		b = appendATH(b, p.AccessToken)
		b = append(b, '"')
	}
	if p.Nonce != "" {
		b = append(b, `,"nonce":"`...)
		b = append(b, p.Nonce...)
		b = append(b, '"')
	}
	return append(b, '}')
}

// jtiBlock holds random bytes for the jti of jtiBlockProofs proofs: one
// call to crypto/rand serves them all. A call costs about 100 ns, several
// times that when the program is built with BoringCrypto, where each one
// goes through cgo, next to a proof's few microseconds of signing. Every
// byte is handed out once: a block belongs to one caller between the
// pool's Get and Put, and a block the pool drops takes its unused bytes
// with it.
type jtiBlock struct {
	buf  [jtiBlockProofs * jtiBytes]byte
	left int // bytes not yet handed out, at the start of buf
}

const jtiBlockProofs = 32

var jtiBlocks = sync.Pool{New: func() any { return new(jtiBlock) }}

// readJTI fills jti with fresh random bytes.
func readJTI(jti *[jtiBytes]byte) {
	b := jtiBlocks.Get().(*jtiBlock)
	if b.left == 0 {
		_, _ = rand.Read(b.buf[:]) // crypto/rand.Read never fails (it crashes the program instead)
		b.left = len(b.buf)
	}
	b.left -= jtiBytes
	copy(jti[:], b.buf[b.left:])
	jtiBlocks.Put(b)
}

// AccessTokenHash returns the ath claim for an access token: base64url
// (no padding) of the SHA-256 of its ASCII octets (RFC 9449 section 4.2).
func AccessTokenHash(accessToken string) string {
	var buf [43]byte
	return string(appendATH(buf[:0], accessToken))
}

func appendATH(b []byte, accessToken string) []byte {
	sum := sha256.Sum256([]byte(accessToken))
	return base64.RawURLEncoding.AppendEncode(b, sum[:])
}

// appendJSONString appends the contents of a JSON string for s, without
// the quotes: '"', '\\' and control characters escaped.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c == 0x7f:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return b
}

// isToken reports whether s is a non-empty HTTP token (RFC 9110 section
// 5.6.2), as a method must be.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTchar(s[i]) {
			return false
		}
	}
	return true
}

func isTchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return c < 0x80 && strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
