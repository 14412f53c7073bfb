package dpop

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
)

// pssOptions are the PS256 parameters of RFC 7518 section 3.5: SHA-256,
// MGF1 with SHA-256, and a salt as long as the hash. A package value, so
// that a signature does not allocate them.
var pssOptions = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}

// errBadSignature means the signer returned something that is not a
// signature of the expected form.
var errBadSignature = errors.New("the signer returned a malformed signature")

// sign signs input as JWS alg k.alg requires and appends the signature
// to dst: for ECDSA the fixed-size R || S of RFC 7518 section 3.4, not the
// ASN.1 DER that crypto.Signer returns.
func (k *Key) sign(dst, input []byte) ([]byte, error) {
	if k.kind == kindEd25519 {
		return k.signEd25519(dst, input)
	}
	var sum [sha512.Size]byte
	digest := hashInto(&sum, k.hash, input)
	switch k.kind {
	case kindECDSA:
		var der []byte
		var err error
		if priv, ok := k.signer.(*ecdsa.PrivateKey); ok {
			der, err = ecdsa.SignASN1(rand.Reader, priv, digest)
		} else {
			der, err = k.signer.Sign(rand.Reader, bytes.Clone(digest), k.hash)
		}
		if err != nil {
			return dst, err
		}
		return appendRawECDSA(dst, der, k.sigSize/2)
	case kindRSAPSS, kindRSAPKCS1:
		var opts crypto.SignerOpts = crypto.SHA256
		if k.kind == kindRSAPSS {
			opts = pssOptions
		}
		// The digest is copied so that the array above stays on the
		// stack: whatever goes through an interface call escapes.
		sig, err := k.signer.Sign(rand.Reader, bytes.Clone(digest), opts)
		if err != nil {
			return dst, err
		}
		if len(sig) != k.sigSize {
			return dst, errBadSignature
		}
		return append(dst, sig...), nil
	}
	return dst, fmt.Errorf("%s: %w", k.alg, ErrUnsupportedAlg)
}

// signEd25519 signs the message itself: Ed25519 hashes internally
// (RFC 8037 section 3.1).
func (k *Key) signEd25519(dst, input []byte) ([]byte, error) {
	var sig []byte
	if priv, ok := k.signer.(ed25519.PrivateKey); ok {
		sig = ed25519.Sign(priv, input)
	} else {
		var err error
		sig, err = k.signer.Sign(rand.Reader, bytes.Clone(input), crypto.Hash(0))
		if err != nil {
			return dst, err
		}
	}
	if len(sig) != ed25519.SignatureSize {
		return dst, errBadSignature
	}
	return append(dst, sig...), nil
}

// hashInto writes the digest of input into sum and returns it.
func hashInto(sum *[sha512.Size]byte, h crypto.Hash, input []byte) []byte {
	switch h {
	case crypto.SHA384:
		d := sha512.Sum384(input)
		return append(sum[:0], d[:]...)
	case crypto.SHA512:
		d := sha512.Sum512(input)
		return append(sum[:0], d[:]...)
	}
	d := sha256.Sum256(input)
	return append(sum[:0], d[:]...)
}

// appendRawECDSA converts an ECDSA-Sig-Value, SEQUENCE { r INTEGER, s
// INTEGER } in DER, into r || s, each left-padded to size bytes, and
// appends it to dst. It reads only what a signer produces (definite
// lengths, at most one length octet after 0x81: the largest, for P-521,
// is 139 bytes) and refuses anything else.
func appendRawECDSA(dst, der []byte, size int) ([]byte, error) {
	seq, rest, ok := derElement(der, 0x30)
	if !ok || len(rest) != 0 {
		return dst, errBadSignature
	}
	r, seq, ok := derElement(seq, 0x02)
	if !ok {
		return dst, errBadSignature
	}
	s, seq, ok := derElement(seq, 0x02)
	if !ok || len(seq) != 0 {
		return dst, errBadSignature
	}
	n := len(dst)
	dst = append(dst, make([]byte, 2*size)...)
	if !putUnsigned(dst[n:n+size], r) || !putUnsigned(dst[n+size:], s) {
		return dst[:n], errBadSignature
	}
	return dst, nil
}

// derElement reads one element with the given tag and returns its
// contents and what follows it.
func derElement(b []byte, tag byte) (content, rest []byte, ok bool) {
	if len(b) < 2 || b[0] != tag {
		return nil, nil, false
	}
	n, b := int(b[1]), b[2:]
	if n >= 0x80 {
		// Only the one-octet long form: DER uses it for 128-255 bytes.
		if n != 0x81 || len(b) < 1 || b[0] < 0x80 {
			return nil, nil, false
		}
		n, b = int(b[0]), b[1:]
	}
	if len(b) < n {
		return nil, nil, false
	}
	return b[:n], b[n:], true
}

// putUnsigned writes the positive DER INTEGER v into out, right-aligned.
// It fails for zero, a negative number, or one too large for out.
func putUnsigned(out, v []byte) bool {
	if len(v) == 0 || v[0]&0x80 != 0 {
		return false
	}
	for len(v) > 0 && v[0] == 0 {
		v = v[1:]
	}
	if len(v) == 0 || len(v) > len(out) {
		return false
	}
	clear(out[:len(out)-len(v)])
	copy(out[len(out)-len(v):], v)
	return true
}
