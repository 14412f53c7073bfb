package oauthtest_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/oauthtest"
)

// This file builds DPoP proofs for the tests with the standard library
// alone, independently of any client code, so that the server's checks
// are proven against proofs written from the RFC.

// dpopKey is a proof-of-possession key pair.
type dpopKey struct {
	alg  string
	priv crypto.Signer
	jwk  map[string]any // public members only
}

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

// newDPoPKey makes a key for alg: ES256, ES384, EdDSA, RS256 or PS256.
// The RSA key is generated once per test binary, since generating one is
// slow; RS256 and PS256 keys share it.
func newDPoPKey(t *testing.T, alg string) *dpopKey {
	t.Helper()
	b64 := base64.RawURLEncoding.EncodeToString
	pad := func(b []byte, n int) []byte { return append(make([]byte, n-len(b)), b...) }
	switch alg {
	case "ES256", "ES384":
		c, crv, n := elliptic.P256(), "P-256", 32
		if alg == "ES384" {
			c, crv, n = elliptic.P384(), "P-384", 48
		}
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return &dpopKey{alg: alg, priv: k, jwk: map[string]any{"kty": "EC", "crv": crv,
			"x": b64(pad(k.X.Bytes(), n)), "y": b64(pad(k.Y.Bytes(), n))}}
	case "EdDSA":
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return &dpopKey{alg: alg, priv: priv, jwk: map[string]any{"kty": "OKP", "crv": "Ed25519", "x": b64(pub)}}
	case "RS256", "PS256":
		rsaOnce.Do(func() { rsaKey, _ = rsa.GenerateKey(rand.Reader, 2048) })
		return &dpopKey{alg: alg, priv: rsaKey, jwk: map[string]any{"kty": "RSA",
			"n": b64(rsaKey.N.Bytes()), "e": b64(big.NewInt(int64(rsaKey.E)).Bytes())}}
	}
	t.Fatalf("no key for %s", alg)
	return nil
}

// jkt is the key's RFC 7638 thumbprint, computed here from the RFC's
// rules: the required members in lexicographic order, no whitespace.
func (k *dpopKey) jkt() string {
	var members []string
	switch k.jwk["kty"] {
	case "EC":
		members = []string{"crv", "kty", "x", "y"}
	case "OKP":
		members = []string{"crv", "kty", "x"}
	default:
		members = []string{"e", "kty", "n"}
	}
	var parts []string
	for _, m := range members {
		parts = append(parts, `"`+m+`":"`+k.jwk[m].(string)+`"`)
	}
	sum := sha256.Sum256([]byte("{" + strings.Join(parts, ",") + "}"))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// proofMod changes a proof's header or claims before it is signed.
type proofMod func(hdr, claims map[string]any)

// proof returns a DPoP proof for a request of method htm to htu, made at
// iat, with a fresh jti, changed by mods. A mod that sets hdr["alg"] to
// something other than the key's algorithm gets a matching signature for
// "none" (empty) and "HS256" (a MAC), else the key's own signature.
func (k *dpopKey) proof(t *testing.T, htm, htu string, iat time.Time, mods ...proofMod) string {
	t.Helper()
	jwk := map[string]any{}
	for n, v := range k.jwk {
		jwk[n] = v
	}
	hdr := map[string]any{"typ": "dpop+jwt", "alg": k.alg, "jwk": jwk}
	claims := map[string]any{"jti": rand.Text(), "htm": htm, "htu": htu, "iat": iat.Unix()}
	for _, m := range mods {
		m(hdr, claims)
	}
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	input := enc(hdr) + "." + enc(claims)
	return input + "." + base64.RawURLEncoding.EncodeToString(k.sign(t, hdr["alg"], []byte(input)))
}

func (k *dpopKey) sign(t *testing.T, alg any, input []byte) []byte {
	t.Helper()
	switch alg {
	case "none":
		return nil
	case "HS256":
		m := hmac.New(sha256.New, []byte("a shared secret a client must never use for DPoP"))
		m.Write(input)
		return m.Sum(nil)
	}
	h := crypto.SHA256
	if k.alg == "ES384" {
		h = crypto.SHA384
	}
	var digest []byte
	switch h {
	case crypto.SHA384:
		d := sha512.Sum384(input)
		digest = d[:]
	default:
		d := sha256.Sum256(input)
		digest = d[:]
	}
	switch p := k.priv.(type) {
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, p, digest)
		if err != nil {
			t.Fatal(err)
		}
		n := (p.Curve.Params().BitSize + 7) / 8
		sig := make([]byte, 2*n)
		r.FillBytes(sig[:n])
		s.FillBytes(sig[n:])
		return sig
	case ed25519.PrivateKey:
		return ed25519.Sign(p, input)
	case *rsa.PrivateKey:
		var sig []byte
		var err error
		if k.alg == "PS256" {
			sig, err = rsa.SignPSS(rand.Reader, p, h, digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		} else {
			sig, err = rsa.SignPKCS1v15(rand.Reader, p, h, digest)
		}
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	t.Fatal("unknown key type")
	return nil
}

// withATH adds the ath claim for access token tok.
func withATH(tok string) proofMod {
	return func(_, c map[string]any) {
		sum := sha256.Sum256([]byte(tok))
		c["ath"] = base64.RawURLEncoding.EncodeToString(sum[:])
	}
}

// withNonce adds the nonce claim.
func withNonce(n string) proofMod { return func(_, c map[string]any) { c["nonce"] = n } }

// dpopPost POSTs a form to path with client authentication a and the
// given DPoP header values (none, one, or more).
func dpopPost(t *testing.T, srv *oauthtest.Server, path string, a auth, form url.Values, proofs ...string) *rawResp {
	t.Helper()
	form = cloneValues(form)
	if a.secret == "" {
		form.Set("client_id", a.id)
	}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, srv.URL(path), strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if a.secret != "" {
		req.Header.Set("Authorization", oauthwire.BasicAuth(a.id, a.secret))
	}
	for _, p := range proofs {
		req.Header.Add("DPoP", p)
	}
	r, err := do(t, srv, nil, req)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// tokenBody is the part of a token response the DPoP tests look at.
type tokenBody struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	RefreshToken string `json:"refresh_token"`
	Error        string `json:"error"`
	Description  string `json:"error_description"`
}

func parseToken(t *testing.T, r *rawResp) tokenBody {
	t.Helper()
	var tb tokenBody
	if err := json.Unmarshal(r.body, &tb); err != nil {
		t.Fatalf("token response %d %s: %v", r.status, r.body, err)
	}
	return tb
}

// mustDPoPToken expects a DPoP-bound token response.
func mustDPoPToken(t *testing.T, r *rawResp) tokenBody {
	t.Helper()
	tb := parseToken(t, r)
	if r.status != http.StatusOK || tb.TokenType != "DPoP" {
		t.Fatalf("want a DPoP token, got %d %s", r.status, r.body)
	}
	return tb
}

// wantTokenError expects a 400 token error response with code.
func wantTokenError(t *testing.T, r *rawResp, code string) tokenBody {
	t.Helper()
	tb := parseToken(t, r)
	if r.status != http.StatusBadRequest || tb.Error != code {
		t.Fatalf("want 400 %s, got %d %s", code, r.status, r.body)
	}
	return tb
}

// callAPIDPoP calls an API at path with the DPoP scheme and the given
// proofs, in memory.
func callAPIDPoP(t *testing.T, srv *oauthtest.Server, method, u, scheme, tok string, proofs ...string) *rawResp {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", scheme+" "+tok)
	}
	for _, p := range proofs {
		req.Header.Add("DPoP", p)
	}
	r, err := do(t, srv, nil, req)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// jwtClaims decodes the claims of a JWT-shaped token without checking it.
func jwtClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
