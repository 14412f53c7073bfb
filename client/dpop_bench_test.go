package client

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/dpop"
	"github.com/tokenward/tokenward/internal/tokenx"
	"github.com/tokenward/tokenward/transport"
)

// okBase answers every request 200 without a network, so that the
// benchmark measures what happens on this side.
type okBase struct{}

func (okBase) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		req.Body.Close()
	}
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("")), Request: req}, nil
}

// BenchmarkDPoPTransport measures an API request through the transport:
// floor with a Bearer token (no proof), sign the proof alone, tokenward a
// DPoP request as the client sends it (key looked up by thumbprint, proof
// with ath and nonce, Authorization: DPoP). sign and tokenward use an
// ES256 key, the client's default; sign-ed25519 and tokenward-ed25519 the
// same with an Ed25519 key (EdDSA), the other algorithm the client
// generates keys for, so that the two can be compared.
func BenchmarkDPoPTransport(b *testing.B) {
	const api = "https://api.example.com/v1/items"
	run := func(b *testing.B, tr http.RoundTripper) {
		b.ReportAllocs()
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, api, nil)
			for pb.Next() {
				resp, err := tr.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
			}
		})
	}
	b.Run("floor", func(b *testing.B) {
		tok := &oauth2.Token{AccessToken: "access-token-of-the-benchmark", TokenType: "Bearer"}
		tr, err := transport.New(transport.SourceFunc(func(context.Context) (*oauth2.Token, error) { return tok, nil }), func(o *transport.Options) {
			o.Base, o.Origins = okBase{}, []string{"https://api.example.com"}
		})
		if err != nil {
			b.Fatal(err)
		}
		run(b, tr)
	})
	// The ES256 names carry no suffix, so that they stay comparable with
	// the figures recorded before Ed25519 was measured.
	for _, kind := range []struct{ suffix, alg string }{{"", dpop.ES256}, {"-ed25519", dpop.EdDSA}} {
		signer, signOnce := benchSigner(b, kind.alg)
		k, err := dpop.NewKey(signer, kind.alg)
		if err != nil {
			b.Fatal(err)
		}
		hk := newHeldKey(k, "")
		// sign is one signature with the standard library over the
		// signing input of a real proof of this request (header and
		// claims, the same length), and nothing else.
		p, err := k.Proof(dpop.ProofParams{Method: "GET", URL: api, Now: time.Now(), Nonce: "nonce-of-the-api", AccessToken: "access-token-of-the-benchmark"})
		if err != nil {
			b.Fatal(err)
		}
		input := []byte(p[:strings.LastIndexByte(p, '.')])
		b.Run("sign"+kind.suffix, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					signOnce(input)
				}
			})
		})
		b.Run("tokenward"+kind.suffix, func(b *testing.B) {
			g := &grant{now: time.Now, dpop: &dpopConfig{nonces: dpop.NewNonceCache(0)}}
			g.dpop.nonces.Set("https://api.example.com", "nonce-of-the-api")
			tok := &oauth2.Token{AccessToken: "access-token-of-the-benchmark", TokenType: "DPoP"}
			bindKey(tok, hk)
			if tokenx.String(tok, tokenx.KeyDPoPJKT) != k.Thumbprint() {
				b.Fatal("the token does not name the key's thumbprint")
			}
			tr, err := transport.New(transport.SourceFunc(func(context.Context) (*oauth2.Token, error) { return tok, nil }), func(o *transport.Options) {
				o.Base, o.Origins = okBase{}, []string{"https://api.example.com"}
				o.Prepare, o.PrepareTokenTypes, o.Answered = g.prepareDPoP, []string{"DPoP"}, g.answeredDPoP
			})
			if err != nil {
				b.Fatal(err)
			}
			run(b, tr)
		})
	}
}

// benchSigner returns a new key for alg and a function that signs an
// input with it the way the standard library is usually called: SHA-256
// and ecdsa.SignASN1 for ES256, ed25519.Sign for EdDSA.
func benchSigner(b *testing.B, alg string) (crypto.Signer, func([]byte)) {
	b.Helper()
	switch alg {
	case dpop.ES256:
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		return priv, func(input []byte) {
			d := sha256.Sum256(input)
			if _, err := ecdsa.SignASN1(rand.Reader, priv, d[:]); err != nil {
				b.Fatal(err)
			}
		}
	case dpop.EdDSA:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		return priv, func(input []byte) { _ = ed25519.Sign(priv, input) }
	}
	b.Fatalf("no benchmark signer for %s", alg)
	return nil, nil
}
