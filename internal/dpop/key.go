package dpop

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"slices"
)

// JWS algorithms a Key can sign with (RFC 7518 section 3.1, RFC 8037
// section 3.1).
const (
	ES256 = "ES256"
	ES384 = "ES384"
	ES512 = "ES512"
	EdDSA = "EdDSA"
	PS256 = "PS256"
	RS256 = "RS256"
)

// minRSABits is the smallest RSA modulus accepted: RFC 7518 section 3.3
// requires 2048 bits for RS256 and PS256.
const minRSABits = 2048

var (
	// ErrUnsupportedKey means the key is not one a proof can be signed
	// with: ECDSA on P-256, P-384 or P-521, Ed25519, or RSA of at least
	// 2048 bits.
	ErrUnsupportedKey = errors.New("unsupported key (need ECDSA P-256/P-384/P-521, Ed25519 or RSA >= 2048 bits)")
	// ErrUnsupportedAlg means the algorithm is unknown here or does not
	// fit the key (ES256 needs P-256, EdDSA needs Ed25519, PS256 and RS256
	// need RSA, and so on).
	ErrUnsupportedAlg = errors.New("unsupported algorithm for this key")
	// ErrAlgNotSupportedByServer means the server's discovery document
	// lists the algorithms it accepts for proofs and the key's is not
	// among them.
	ErrAlgNotSupportedByServer = errors.New("the server does not accept the key's algorithm for DPoP proofs")
	// ErrKeyNotExportable means MarshalPKCS8 was asked for a key held
	// outside the process (a crypto.Signer that is not one of the
	// standard library's private key types).
	ErrKeyNotExportable = errors.New("the key cannot be exported")
)

// keyKind selects the signing procedure.
type keyKind uint8

const (
	kindECDSA keyKind = iota + 1
	kindEd25519
	kindRSAPSS
	kindRSAPKCS1
)

// Key is a DPoP proof key: a private key and what is precomputed from it
// once, so that each proof only encodes its claims and signs. A Key is
// immutable and safe for concurrent use. Its printed forms show only the
// algorithm and the thumbprint.
type Key struct {
	signer  crypto.Signer
	alg     string
	kind    keyKind
	hash    crypto.Hash
	sigSize int    // the signature's length in bytes, as JWS encodes it
	jwk     []byte // the public JWK, in the canonical form of RFC 7638
	jkt     string // base64url SHA-256 of jwk
	header  string // base64url of the JOSE header, followed by "."
}

// Generate creates a new key for alg: ES256 (P-256; the default when alg
// is empty), ES384, ES512 or EdDSA (Ed25519). RSA keys are not generated
// here (slow to make, large proofs); an application that needs one passes
// it to NewKey.
func Generate(alg string) (*Key, error) {
	var signer crypto.Signer
	var err error
	switch alg {
	case "", ES256:
		signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ES384:
		signer, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case ES512:
		signer, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case EdDSA:
		_, signer, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, fmt.Errorf("dpop: generate key: %q: %w", alg, ErrUnsupportedAlg)
	}
	if err != nil {
		return nil, fmt.Errorf("dpop: generate key: %w", err)
	}
	return NewKey(signer, alg)
}

// NewKey wraps an application's key. signer's public key decides the
// algorithm when alg is empty: ES256, ES384 or ES512 for ECDSA on P-256,
// P-384 or P-521, EdDSA for Ed25519, PS256 for RSA of 2048 bits or more.
// An RSA key may ask for RS256 instead, for servers that do not accept
// PS256. Any other key or algorithm fails with ErrUnsupportedKey or
// ErrUnsupportedAlg.
//
// The signer may live outside the process (a hardware token, a cloud key
// service): proofs only call its Sign method. Such a key cannot be saved
// with MarshalPKCS8.
func NewKey(signer crypto.Signer, alg string) (*Key, error) {
	k, err := newKey(signer, alg)
	if err != nil {
		return nil, fmt.Errorf("dpop: new key: %w", err)
	}
	return k, nil
}

func newKey(signer crypto.Signer, alg string) (*Key, error) {
	if signer == nil {
		return nil, ErrUnsupportedKey
	}
	k := &Key{signer: signer}
	var err error
	switch pub := signer.Public().(type) {
	case *ecdsa.PublicKey:
		err = k.setECDSA(pub, alg)
	case ed25519.PublicKey:
		err = k.setEd25519(pub, alg)
	case *rsa.PublicKey:
		err = k.setRSA(pub, alg)
	default:
		err = ErrUnsupportedKey
	}
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(k.jwk)
	k.jkt = b64(sum[:])
	hdr := make([]byte, 0, 48+len(k.jwk))
	hdr = append(hdr, `{"typ":"dpop+jwt","alg":"`...)
	hdr = append(hdr, k.alg...)
	hdr = append(hdr, `","jwk":`...)
	hdr = append(hdr, k.jwk...)
	hdr = append(hdr, '}')
	k.header = b64(hdr) + "."
	return k, nil
}

func (k *Key) setECDSA(pub *ecdsa.PublicKey, alg string) error {
	var want, crv string
	switch pub.Curve {
	case elliptic.P256():
		want, crv, k.hash = ES256, "P-256", crypto.SHA256
	case elliptic.P384():
		want, crv, k.hash = ES384, "P-384", crypto.SHA384
	case elliptic.P521():
		want, crv, k.hash = ES512, "P-521", crypto.SHA512
	default:
		return ErrUnsupportedKey
	}
	if alg != "" && alg != want {
		return fmt.Errorf("%q with an ECDSA %s key: %w", alg, crv, ErrUnsupportedAlg)
	}
	// Bytes is the uncompressed point 0x04 || X || Y, each coordinate
	// padded to the curve's size, which is what the JWK's x and y hold.
	pt, err := pub.Bytes()
	if err != nil || len(pt) < 3 || pt[0] != 4 {
		return ErrUnsupportedKey
	}
	size := (len(pt) - 1) / 2
	k.alg, k.kind, k.sigSize = want, kindECDSA, 2*size
	k.jwk = fmt.Appendf(nil, `{"crv":"%s","kty":"EC","x":"%s","y":"%s"}`, crv, b64(pt[1:1+size]), b64(pt[1+size:]))
	return nil
}

func (k *Key) setEd25519(pub ed25519.PublicKey, alg string) error {
	if len(pub) != ed25519.PublicKeySize {
		return ErrUnsupportedKey
	}
	if alg != "" && alg != EdDSA {
		return fmt.Errorf("%q with an Ed25519 key: %w", alg, ErrUnsupportedAlg)
	}
	k.alg, k.kind, k.sigSize = EdDSA, kindEd25519, ed25519.SignatureSize
	k.jwk = fmt.Appendf(nil, `{"crv":"Ed25519","kty":"OKP","x":"%s"}`, b64(pub))
	return nil
}

func (k *Key) setRSA(pub *rsa.PublicKey, alg string) error {
	if pub.N == nil || pub.N.BitLen() < minRSABits || pub.E < 2 {
		return ErrUnsupportedKey
	}
	switch alg {
	case "", PS256:
		k.alg, k.kind = PS256, kindRSAPSS
	case RS256:
		k.alg, k.kind = RS256, kindRSAPKCS1
	default:
		return fmt.Errorf("%q with an RSA key: %w", alg, ErrUnsupportedAlg)
	}
	k.hash, k.sigSize = crypto.SHA256, pub.Size()
	// JWK integers are unsigned big-endian with no leading zero octets
	// (RFC 7518 section 6.3.1), which big.Int.Bytes gives.
	e := big.NewInt(int64(pub.E)).Bytes()
	k.jwk = fmt.Appendf(nil, `{"e":"%s","kty":"RSA","n":"%s"}`, b64(e), b64(pub.N.Bytes()))
	return nil
}

// Alg returns the JWS algorithm of the key's proofs ("ES256", "EdDSA",
// "PS256", ...).
func (k *Key) Alg() string { return k.alg }

// Thumbprint returns the key's JWK SHA-256 thumbprint (RFC 7638), base64url
// without padding: the jkt value that binds tokens to the key (RFC 9449
// section 6 and 10).
func (k *Key) Thumbprint() string { return k.jkt }

// PublicJWK returns the key's public JWK as JSON, with only the members
// RFC 7638 names (so its SHA-256 is the thumbprint) and never a private
// one. The slice is a copy.
func (k *Key) PublicJWK() []byte { return bytes.Clone(k.jwk) }

// Public returns the key's public key.
func (k *Key) Public() crypto.PublicKey { return k.signer.Public() }

// MarshalPKCS8 returns the private key in PKCS #8 DER form, for storing it
// with the credential (store.Entry.KeyPair). It fails with
// ErrKeyNotExportable for a signer that is not an *ecdsa.PrivateKey,
// ed25519.PrivateKey or *rsa.PrivateKey. The bytes are a secret.
func (k *Key) MarshalPKCS8() ([]byte, error) {
	var priv any
	switch s := k.signer.(type) {
	case *ecdsa.PrivateKey, ed25519.PrivateKey, *rsa.PrivateKey:
		priv = s
	case *ed25519.PrivateKey:
		priv = *s
	default:
		return nil, fmt.Errorf("dpop: marshal key: %w", ErrKeyNotExportable)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("dpop: marshal key: %w", err)
	}
	return der, nil
}

// ParseKey reads a private key that MarshalPKCS8 wrote (or any PKCS #8
// ECDSA, Ed25519 or RSA key) and wraps it as NewKey does; alg as there.
// PKCS #8 does not record the algorithm: an RSA key used with RS256 needs
// RS256 again here, or it comes back as PS256.
func ParseKey(pkcs8 []byte, alg string) (*Key, error) {
	priv, err := x509.ParsePKCS8PrivateKey(pkcs8)
	if err != nil {
		// The parser's message describes the structure, never the key's
		// bytes, so it is safe to keep.
		return nil, fmt.Errorf("dpop: parse key: %w", err)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		// An X25519 or ECDH key: it can agree on keys but not sign.
		return nil, fmt.Errorf("dpop: parse key: %w", ErrUnsupportedKey)
	}
	k, err := newKey(signer, alg)
	if err != nil {
		return nil, fmt.Errorf("dpop: parse key: %w", err)
	}
	return k, nil
}

// Supported reports whether a server accepts the key's proofs, given the
// dpop_signing_alg_values_supported of its discovery document (RFC 9449
// section 5.1). An empty list means the server did not say, and any
// algorithm is tried. A nil key is never supported.
func Supported(k *Key, serverAlgs []string) bool {
	if k == nil {
		return false
	}
	return len(serverAlgs) == 0 || slices.Contains(serverAlgs, k.alg)
}

// CheckAlg is Supported as an error: nil, or ErrAlgNotSupportedByServer
// naming the key's algorithm and the server's.
func CheckAlg(k *Key, serverAlgs []string) error {
	if k == nil {
		return fmt.Errorf("dpop: check algorithm: %w", ErrUnsupportedKey)
	}
	if Supported(k, serverAlgs) {
		return nil
	}
	// The server's list is not repeated: it is server text, and the count
	// is enough to tell an empty list from a different one.
	return fmt.Errorf("dpop: check algorithm: %s is not among the %d the server lists: %w", k.alg, len(serverAlgs), ErrAlgNotSupportedByServer)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
