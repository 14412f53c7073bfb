package client

import (
	"context"
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
		k, err := dpop.Generate(kind.alg)
		if err != nil {
			b.Fatal(err)
		}
		hk := newHeldKey(k, "")
		b.Run("sign"+kind.suffix, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := k.Proof(dpop.ProofParams{Method: "GET", URL: api, Now: time.Now(), AccessToken: "access-token-of-the-benchmark"}); err != nil {
						b.Fatal(err)
					}
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
