package oauthwire

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"math/big"
	"net/url"
	"time"
)

// Client authentication methods (RFC 8414 token_endpoint_auth_methods_supported
// values).
const (
	AuthMethodNone              = "none"
	AuthMethodClientSecretBasic = "client_secret_basic"
	AuthMethodClientSecretPost  = "client_secret_post"
	AuthMethodPrivateKeyJWT     = "private_key_jwt"
)

// ClientAssertionType is the client_assertion_type of private_key_jwt
// (RFC 7523 section 2.2).
const ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// BasicAuth returns the Authorization header value for client_secret_basic:
// "Basic " + base64(urlencode(id) + ":" + urlencode(secret)), with the
// form-urlencoding RFC 6749 section 2.3.1 requires (x/oauth2 does the same).
func BasicAuth(clientID, clientSecret string) string {
	raw := url.QueryEscape(clientID) + ":" + url.QueryEscape(clientSecret)
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(raw))
}

// ErrUnsupportedKey: the signing key is not RSA (2048 bits or more) or
// ECDSA P-256/P-384/P-521.
var ErrUnsupportedKey = errors.New("unsupported client assertion key (need RSA >= 2048 bits or ECDSA P-256/P-384/P-521)")

// AssertionAlg returns the JWS algorithm used for a key: RS256 for RSA,
// ES256/ES384/ES512 for ECDSA P-256/P-384/P-521.
func AssertionAlg(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return "", ErrUnsupportedKey
		}
		return "RS256", nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "ES256", nil
		case elliptic.P384():
			return "ES384", nil
		case elliptic.P521():
			return "ES512", nil
		}
	}
	return "", ErrUnsupportedKey
}

// ClientAssertion builds a private_key_jwt client assertion (RFC 7523
// section 3, OpenID Connect Core section 9): iss = sub = clientID, aud =
// audience (the token endpoint URL), iat = now, exp = now + lifetime
// (lifetime <= 0 means 60 s), a random 128-bit jti, signed with key (an
// *rsa.PrivateKey or *ecdsa.PrivateKey). keyID, when not empty, goes into
// the header as kid. Every assertion is single use: build a new one per
// request.
func ClientAssertion(key crypto.Signer, keyID, clientID, audience string, now time.Time, lifetime time.Duration) (string, error) {
	if key == nil || clientID == "" || audience == "" {
		return "", errors.New("client assertion needs a key, a client id and an audience")
	}
	alg, err := AssertionAlg(key.Public())
	if err != nil {
		return "", err
	}
	if lifetime <= 0 {
		lifetime = 60 * time.Second
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", fmt.Errorf("client assertion: %w", err)
	}
	hdr := map[string]string{"alg": alg, "typ": "JWT"}
	if keyID != "" {
		hdr["kid"] = keyID
	}
	claims := map[string]any{
		"iss": clientID,
		"sub": clientID,
		"aud": audience,
		"iat": now.Unix(),
		"exp": now.Add(lifetime).Unix(),
		"jti": hex.EncodeToString(jti[:]),
	}
	hb, _ := json.Marshal(hdr)
	cb, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("client assertion: %w", err)
	}
	signing := b64(hb) + "." + b64(cb)
	sig, err := signJWS(key, alg, []byte(signing))
	if err != nil {
		return "", fmt.Errorf("client assertion: %w", err)
	}
	return signing + "." + b64(sig), nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func jwsHash(alg string) (crypto.Hash, hash.Hash) {
	switch alg {
	case "ES384":
		return crypto.SHA384, sha512.New384()
	case "ES512":
		return crypto.SHA512, sha512.New()
	}
	return crypto.SHA256, sha256.New()
}

func signJWS(key crypto.Signer, alg string, input []byte) ([]byte, error) {
	ch, h := jwsHash(alg)
	h.Write(input)
	digest := h.Sum(nil)
	sig, err := key.Sign(rand.Reader, digest, ch)
	if err != nil {
		return nil, err
	}
	if alg == "RS256" {
		return sig, nil
	}
	// ECDSA signers return ASN.1; JWS wants fixed-size r||s (RFC 7518 3.4).
	pub := key.Public().(*ecdsa.PublicKey)
	r, s, err := parseASN1Sig(sig)
	if err != nil {
		return nil, err
	}
	size := (pub.Curve.Params().BitSize + 7) / 8
	out := make([]byte, 2*size)
	r.FillBytes(out[:size])
	s.FillBytes(out[size:])
	return out, nil
}

// parseASN1Sig decodes an ECDSA-Sig-Value SEQUENCE { r INTEGER, s INTEGER }.
func parseASN1Sig(der []byte) (r, s *big.Int, err error) {
	var v struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(der, &v)
	if err != nil || len(rest) != 0 || v.R == nil || v.S == nil {
		return nil, nil, errors.New("malformed ECDSA signature")
	}
	return v.R, v.S, nil
}
