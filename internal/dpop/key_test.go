package dpop

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// testRSA is generated once: RSA key generation is slow.
var testRSA = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// testKeys is one key of every kind and algorithm the package supports.
func testKeys(t testing.TB) map[string]*Key {
	t.Helper()
	keys := map[string]*Key{}
	for _, alg := range []string{ES256, ES384, ES512, EdDSA} {
		k, err := Generate(alg)
		if err != nil {
			t.Fatalf("Generate(%s): %v", alg, err)
		}
		keys[alg] = k
	}
	for _, alg := range []string{PS256, RS256} {
		k, err := NewKey(testRSA(), alg)
		if err != nil {
			t.Fatalf("NewKey(RSA, %s): %v", alg, err)
		}
		keys[alg] = k
	}
	return keys
}

func TestGenerateDefaultsToES256(t *testing.T) {
	k, err := Generate("")
	if err != nil || k.Alg() != ES256 {
		t.Fatalf("Generate(\"\") = %v, %v; want an ES256 key", k, err)
	}
	if _, err := Generate("HS256"); !errors.Is(err, ErrUnsupportedAlg) {
		t.Fatalf("Generate(HS256) error = %v, want ErrUnsupportedAlg", err)
	}
}

func TestNewKeyAlgorithms(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		signer crypto.Signer
		alg    string
		want   string
		err    error
	}{
		{"P-256 default", p256, "", ES256, nil},
		{"P-256 ES256", p256, ES256, ES256, nil},
		{"P-256 asked ES384", p256, ES384, "", ErrUnsupportedAlg},
		{"P-256 asked EdDSA", p256, EdDSA, "", ErrUnsupportedAlg},
		{"Ed25519 default", ed, "", EdDSA, nil},
		{"Ed25519 asked ES256", ed, ES256, "", ErrUnsupportedAlg},
		{"RSA default", testRSA(), "", PS256, nil},
		{"RSA RS256", testRSA(), RS256, RS256, nil},
		{"RSA asked RS512", testRSA(), "RS512", "", ErrUnsupportedAlg},
		{"RSA asked ES256", testRSA(), ES256, "", ErrUnsupportedAlg},
		{"RSA 1024", small, "", "", ErrUnsupportedKey},
		{"P-224", p224, "", "", ErrUnsupportedKey},
		{"nil", nil, "", "", ErrUnsupportedKey},
		{"foreign", foreignSigner{}, "", "", ErrUnsupportedKey},
	} {
		k, err := NewKey(c.signer, c.alg)
		if c.err != nil {
			if !errors.Is(err, c.err) || k != nil || !strings.HasPrefix(err.Error(), "dpop: new key: ") {
				t.Errorf("%s: NewKey = %v, %v; want error %v", c.name, k, err, c.err)
			}
			continue
		}
		if err != nil || k.Alg() != c.want {
			t.Errorf("%s: NewKey = %v, %v; want alg %s", c.name, k, err, c.want)
		}
	}
}

// foreignSigner has a public key type the package does not know.
type foreignSigner struct{}

func (foreignSigner) Public() crypto.PublicKey { return "not a key" }
func (foreignSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("no")
}

// TestThumbprintRFC7638: the RSA key of RFC 7638 section 3.1 has the
// thumbprint the RFC gives. Only the public key matters for it.
func TestThumbprintRFC7638(t *testing.T) {
	n, _ := base64.RawURLEncoding.DecodeString("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537}
	k, err := NewKey(publicOnly{pub}, "")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := k.Thumbprint(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"; got != want {
		t.Fatalf("Thumbprint = %s, want %s (jwk %s)", got, want, k.PublicJWK())
	}
}

// TestThumbprintRFC9449: the EC key of RFC 9449 section 6.1 has the jkt
// the RFC gives.
func TestThumbprintRFC9449(t *testing.T) {
	x, _ := base64.RawURLEncoding.DecodeString("l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs")
	y, _ := base64.RawURLEncoding.DecodeString("9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA")
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewKey(publicOnly{pub}, "")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := k.Thumbprint(), "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"; got != want {
		t.Fatalf("Thumbprint = %s, want %s", got, want)
	}
}

// publicOnly is a signer that only has a public key, for known-answer
// tests of what NewKey computes from it.
type publicOnly struct{ pub crypto.PublicKey }

func (p publicOnly) Public() crypto.PublicKey { return p.pub }
func (publicOnly) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("public key only")
}

// TestPublicJWK: the JWK is exactly the RFC 7638 members, its thumbprint
// (computed independently) is Thumbprint, and it is a copy.
func TestPublicJWK(t *testing.T) {
	for alg, k := range testKeys(t) {
		raw := k.PublicJWK()
		var jwk map[string]string
		if err := json.Unmarshal(raw, &jwk); err != nil {
			t.Fatalf("%s: %s: %v", alg, raw, err)
		}
		want := map[string]int{"EC": 4, "OKP": 3, "RSA": 3}[jwk["kty"]]
		if want == 0 || len(jwk) != want {
			t.Errorf("%s: jwk %s has unexpected members", alg, raw)
		}
		if got := thumbprintOf(t, jwk); got != k.Thumbprint() {
			t.Errorf("%s: Thumbprint = %s, independent computation %s", alg, k.Thumbprint(), got)
		}
		raw[0] = 'X'
		if k.PublicJWK()[0] != '{' {
			t.Errorf("%s: PublicJWK returned the key's own slice", alg)
		}
	}
}

// TestPKCS8RoundTrip: every key kind survives MarshalPKCS8 and ParseKey
// with the same algorithm, thumbprint and a working signature.
func TestPKCS8RoundTrip(t *testing.T) {
	for alg, k := range testKeys(t) {
		der, err := k.MarshalPKCS8()
		if err != nil {
			t.Fatalf("%s: MarshalPKCS8: %v", alg, err)
		}
		askAlg := ""
		if alg == RS256 {
			askAlg = RS256 // PKCS #8 does not say which RSA algorithm
		}
		back, err := ParseKey(der, askAlg)
		if err != nil {
			t.Fatalf("%s: ParseKey: %v", alg, err)
		}
		if back.Alg() != k.Alg() || back.Thumbprint() != k.Thumbprint() || !bytes.Equal(back.PublicJWK(), k.PublicJWK()) {
			t.Errorf("%s: round trip gives %v, want %v", alg, back, k)
		}
		proof, err := back.Proof(ProofParams{Method: "POST", URL: "https://as.example/token", Now: testNow})
		if err != nil {
			t.Fatalf("%s: Proof: %v", alg, err)
		}
		verifyProof(t, proof)
	}
	// A pointer to an Ed25519 key is a Signer too.
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	k, err := NewKey(&ed, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.MarshalPKCS8(); err != nil {
		t.Errorf("MarshalPKCS8(*ed25519.PrivateKey): %v", err)
	}
}

func TestParseKeyErrors(t *testing.T) {
	if _, err := ParseKey([]byte("not DER"), ""); err == nil || !strings.HasPrefix(err.Error(), "dpop: parse key: ") {
		t.Errorf("ParseKey(garbage) error = %v", err)
	}
	x, _ := ecdh.X25519().GenerateKey(rand.Reader)
	der, err := x509.MarshalPKCS8PrivateKey(x)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseKey(der, ""); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("ParseKey(X25519) error = %v, want ErrUnsupportedKey", err)
	}
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	der, _ = x509.MarshalPKCS8PrivateKey(p224)
	if _, err := ParseKey(der, ""); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("ParseKey(P-224) error = %v, want ErrUnsupportedKey", err)
	}
	k, _ := Generate(ES256)
	der, _ = k.MarshalPKCS8()
	if _, err := ParseKey(der, EdDSA); !errors.Is(err, ErrUnsupportedAlg) {
		t.Errorf("ParseKey(P-256, EdDSA) error = %v, want ErrUnsupportedAlg", err)
	}
}

func TestMarshalPKCS8External(t *testing.T) {
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k, err := NewKey(opaqueSigner{priv}, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.MarshalPKCS8(); !errors.Is(err, ErrKeyNotExportable) {
		t.Errorf("MarshalPKCS8(opaque signer) error = %v, want ErrKeyNotExportable", err)
	}
}

// opaqueSigner hides the concrete key type, as a hardware key would, so
// that the package must go through crypto.Signer.
type opaqueSigner struct{ s crypto.Signer }

func (o opaqueSigner) Public() crypto.PublicKey { return o.s.Public() }
func (o opaqueSigner) Sign(r io.Reader, d []byte, opts crypto.SignerOpts) ([]byte, error) {
	return o.s.Sign(r, d, opts)
}

func TestCheckAlg(t *testing.T) {
	k, _ := Generate(EdDSA)
	if !Supported(k, nil) || CheckAlg(k, nil) != nil {
		t.Error("an empty server list must accept any algorithm")
	}
	if !Supported(k, []string{ES256, EdDSA}) || CheckAlg(k, []string{ES256, EdDSA}) != nil {
		t.Error("EdDSA is in the list")
	}
	err := CheckAlg(k, []string{ES256, "PS256"})
	if Supported(k, []string{ES256}) || !errors.Is(err, ErrAlgNotSupportedByServer) || !strings.HasPrefix(err.Error(), "dpop: check algorithm: ") {
		t.Errorf("CheckAlg = %v, want ErrAlgNotSupportedByServer", err)
	}
	if Supported(nil, nil) || !errors.Is(CheckAlg(nil, nil), ErrUnsupportedKey) {
		t.Error("a nil key must not be supported")
	}
}

// TestPrintedFormsHideKey: no printer shows the private key, its PKCS #8
// form, or any part of its private scalar, in any encoding.
func TestPrintedFormsHideKey(t *testing.T) {
	for alg, k := range testKeys(t) {
		der, err := k.MarshalPKCS8()
		if err != nil {
			t.Fatal(err)
		}
		secrets := privateEncodings(t, k, der)
		var outs []string
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
			outs = append(outs, fmt.Sprintf(verb, k))
			outs = append(outs, fmt.Sprintf(verb, struct{ K *Key }{k}))
		}
		for _, h := range []func(io.Writer) slog.Handler{
			func(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, nil) },
			func(w io.Writer) slog.Handler { return slog.NewTextHandler(w, nil) },
		} {
			var buf bytes.Buffer
			slog.New(h(&buf)).Info("key", "key", k, "any", any(k))
			outs = append(outs, buf.String())
		}
		for _, out := range outs {
			if !strings.Contains(out, k.Thumbprint()) {
				t.Errorf("%s: %q does not name the thumbprint", alg, out)
			}
			for _, s := range secrets {
				if strings.Contains(out, s) {
					t.Errorf("%s: %q contains private key material", alg, out)
				}
			}
		}
	}
	var nilKey *Key
	if got := fmt.Sprint(nilKey); got != "dpop.Key(nil)" {
		t.Errorf("nil key prints %q", got)
	}
}

// privateEncodings returns the private parts of k in the encodings a
// printer could use: raw bytes as hex (both cases), base64 and base64url,
// decimal for big integers.
func privateEncodings(t *testing.T, k *Key, der []byte) []string {
	t.Helper()
	var raws [][]byte
	var ints []*big.Int
	switch s := k.signer.(type) {
	case *ecdsa.PrivateKey:
		b, err := s.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		raws = append(raws, b)
		ints = append(ints, new(big.Int).SetBytes(b))
	case ed25519.PrivateKey:
		raws = append(raws, s.Seed())
	case *rsa.PrivateKey:
		ints = append(ints, s.D, s.Primes[0], s.Primes[1])
		for _, i := range ints {
			raws = append(raws, i.Bytes())
		}
	}
	raws = append(raws, der)
	var out []string
	for _, r := range raws {
		r = r[:min(len(r), 24)] // a prefix is enough to find a leak
		out = append(out, hex.EncodeToString(r), strings.ToUpper(hex.EncodeToString(r)),
			base64.StdEncoding.EncodeToString(r)[:16], base64.RawURLEncoding.EncodeToString(r)[:16],
			fmt.Sprint(r[:8])) // the %v of a byte slice: "[12 34 ...]"
	}
	for _, i := range ints {
		out = append(out, i.String()[:20])
	}
	return out
}

func TestProofParamsHideAccessToken(t *testing.T) {
	const token = "at-secret-8f2a61c94d"
	p := ProofParams{Method: "GET", URL: "https://api.example/x?access_token=q-secret-77", Now: testNow, AccessToken: token}
	target, _ := url.Parse("https://user:pw-secret-31@api.example/y?access_token=q-secret-77")
	withTarget := ProofParams{Method: "GET", Target: target, Now: testNow, ATH: AccessTokenHash(token)}
	var outs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
		outs = append(outs, fmt.Sprintf(verb, p), fmt.Sprintf(verb, &p), fmt.Sprintf(verb, withTarget))
	}
	if !strings.Contains(fmt.Sprint(withTarget), "api.example/y") {
		t.Errorf("%v does not name the target's host and path", withTarget)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("p", "p", p)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("p", "p", p)
	outs = append(outs, buf.String())
	for _, out := range outs {
		if strings.Contains(out, token) || strings.Contains(out, "q-secret-77") || strings.Contains(out, "pw-secret-31") {
			t.Errorf("%q shows a secret", out)
		}
	}
}
