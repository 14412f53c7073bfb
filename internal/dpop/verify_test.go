package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"strings"
	"testing"
)

// verified is a proof that verifyProof accepted.
type verified struct {
	header  map[string]any
	claims  map[string]any
	jwk     map[string]string
	payload []byte
}

// verifyProof checks a proof independently of the package's code: it
// decodes the JWS with encoding/json, rebuilds the public key from the
// header's jwk alone and verifies the signature with the standard
// library's verifiers.
func verifyProof(t testing.TB, proof string) verified {
	t.Helper()
	parts := strings.Split(proof, ".")
	if len(parts) != 3 {
		t.Fatalf("proof has %d parts", len(parts))
	}
	dec := func(s string) []byte {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatalf("base64url: %v", err)
		}
		return b
	}
	var v verified
	hb := dec(parts[0])
	if err := json.Unmarshal(hb, &v.header); err != nil {
		t.Fatalf("header: %v", err)
	}
	if len(v.header) != 3 || v.header["typ"] != "dpop+jwt" {
		t.Fatalf("header %s: want exactly typ dpop+jwt, alg, jwk", hb)
	}
	raw, err := json.Marshal(v.header["jwk"])
	if err != nil || json.Unmarshal(raw, &v.jwk) != nil {
		t.Fatalf("jwk %s is not an object of strings", raw)
	}
	for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"} {
		if _, ok := v.jwk[private]; ok {
			t.Fatalf("jwk has private member %q", private)
		}
	}
	v.payload = dec(parts[1])
	if err := json.Unmarshal(v.payload, &v.claims); err != nil {
		t.Fatalf("payload %s: %v", v.payload, err)
	}
	input := []byte(parts[0] + "." + parts[1])
	sig := dec(parts[2])
	alg, _ := v.header["alg"].(string)
	if err := verifySig(alg, v.jwk, input, sig); err != nil {
		t.Fatalf("signature (%s): %v", alg, err)
	}
	return v
}

func verifySig(alg string, jwk map[string]string, input, sig []byte) error {
	b := func(name string) []byte {
		out, _ := base64.RawURLEncoding.DecodeString(jwk[name])
		return out
	}
	switch alg {
	case "ES256", "ES384", "ES512":
		curves := map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()}
		want := map[string]string{"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}[alg]
		if jwk["kty"] != "EC" || jwk["crv"] != want {
			return fmt.Errorf("jwk kty %q crv %q for %s", jwk["kty"], jwk["crv"], alg)
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(curves[want], append(append([]byte{4}, b("x")...), b("y")...))
		if err != nil {
			return err
		}
		size := (curves[want].Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return fmt.Errorf("signature is %d bytes, want raw r||s of %d", len(sig), 2*size)
		}
		var digest []byte
		switch alg {
		case "ES256":
			d := sha256.Sum256(input)
			digest = d[:]
		case "ES384":
			d := sha512.Sum384(input)
			digest = d[:]
		default:
			d := sha512.Sum512(input)
			digest = d[:]
		}
		r, s := new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:])
		if !ecdsa.Verify(pub, digest, r, s) {
			return fmt.Errorf("ecdsa.Verify failed")
		}
	case "EdDSA":
		if jwk["kty"] != "OKP" || jwk["crv"] != "Ed25519" {
			return fmt.Errorf("jwk kty %q crv %q for EdDSA", jwk["kty"], jwk["crv"])
		}
		if !ed25519.Verify(ed25519.PublicKey(b("x")), input, sig) {
			return fmt.Errorf("ed25519.Verify failed")
		}
	case "PS256", "RS256":
		if jwk["kty"] != "RSA" {
			return fmt.Errorf("jwk kty %q for %s", jwk["kty"], alg)
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(b("n")), E: int(new(big.Int).SetBytes(b("e")).Int64())}
		d := sha256.Sum256(input)
		if alg == "RS256" {
			return rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], sig)
		}
		// PS256's salt is as long as the hash (RFC 7518 section 3.5).
		return rsa.VerifyPSS(pub, crypto.SHA256, d[:], sig, &rsa.PSSOptions{SaltLength: sha256.Size})
	default:
		return fmt.Errorf("unexpected alg %q", alg)
	}
	return nil
}

// thumbprintOf computes an RFC 7638 thumbprint independently: the
// required members (json.Marshal sorts map keys), SHA-256, base64url.
func thumbprintOf(t testing.TB, jwk map[string]string) string {
	t.Helper()
	required := map[string][]string{"EC": {"crv", "kty", "x", "y"}, "OKP": {"crv", "kty", "x"}, "RSA": {"e", "kty", "n"}}[jwk["kty"]]
	m := map[string]string{}
	for _, name := range required {
		m[name] = jwk[name]
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// badSigner signs with a fixed answer: an error, or a malformed signature.
type badSigner struct {
	pub crypto.PublicKey
	sig []byte
	err error
}

func (b badSigner) Public() crypto.PublicKey { return b.pub }
func (b badSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return b.sig, b.err
}
