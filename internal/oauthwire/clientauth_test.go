package oauthwire

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

func TestBasicAuth(t *testing.T) {
	t.Parallel()
	got := BasicAuth("my client", "p@ss:w%rd+")
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(got, "Basic "))
	if err != nil || string(raw) != "my+client:p%40ss%3Aw%25rd%2B" {
		t.Fatalf("BasicAuth = %q (%s)", got, raw)
	}
}

// verify checks a JWS independently of the signing code.
func verify(t *testing.T, jws string, pub crypto.PublicKey) map[string]any {
	t.Helper()
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %d parts", len(parts))
	}
	var hdr map[string]string
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	if err := json.Unmarshal(hb, &hdr); err != nil {
		t.Fatal(err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	input := []byte(parts[0] + "." + parts[1])
	switch k := pub.(type) {
	case *rsa.PublicKey:
		d := sha256.Sum256(input)
		if hdr["alg"] != "RS256" || rsa.VerifyPKCS1v15(k, crypto.SHA256, d[:], sig) != nil {
			t.Fatalf("RS256 signature does not verify (alg %s)", hdr["alg"])
		}
	case *ecdsa.PublicKey:
		var digest []byte
		switch hdr["alg"] {
		case "ES256":
			d := sha256.Sum256(input)
			digest = d[:]
		case "ES384":
			d := sha512.Sum384(input)
			digest = d[:]
		case "ES512":
			d := sha512.Sum512(input)
			digest = d[:]
		}
		n := len(sig) / 2
		r, s := new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])
		if n != (k.Curve.Params().BitSize+7)/8 || !ecdsa.Verify(k, digest, r, s) {
			t.Fatalf("%s signature does not verify", hdr["alg"])
		}
	}
	var claims map[string]any
	cb, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if err := json.Unmarshal(cb, &claims); err != nil {
		t.Fatal(err)
	}
	if hdr["kid"] != "k1" || hdr["typ"] != "JWT" {
		t.Errorf("header %v", hdr)
	}
	return claims
}

func TestClientAssertion(t *testing.T) {
	t.Parallel()
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ec256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	ec521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	now := time.Unix(1900000000, 0)
	for _, key := range []crypto.Signer{rsaKey, ec256, ec384, ec521} {
		a, err := ClientAssertion(key, "k1", "cli", "https://as/token", now, 0)
		if err != nil {
			t.Fatal(err)
		}
		c := verify(t, a, key.Public())
		if c["iss"] != "cli" || c["sub"] != "cli" || c["aud"] != "https://as/token" ||
			c["iat"] != float64(now.Unix()) || c["exp"] != float64(now.Unix()+60) || len(c["jti"].(string)) != 32 {
			t.Errorf("claims %v", c)
		}
		b, _ := ClientAssertion(key, "k1", "cli", "https://as/token", now, time.Minute)
		if b == a {
			t.Error("two assertions are identical (jti must differ)")
		}
	}
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	if _, err := ClientAssertion(small, "", "cli", "aud", now, 0); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("1024-bit key: %v", err)
	}
	if _, err := ClientAssertion(rsaKey, "", "", "aud", now, 0); err == nil {
		t.Error("empty client id accepted")
	}
}
