package dpop

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"testing"
)

// BenchmarkProof measures one resource-request proof (ath and nonce
// included) per key kind: what each API request will pay.
func BenchmarkProof(b *testing.B) {
	keys := testKeys(b)
	for _, alg := range []string{ES256, EdDSA, PS256} {
		k := keys[alg]
		p := ProofParams{Method: "GET", URL: "https://api.example.com/v1/items?page=2", Now: testNow,
			Nonce: "eyJ7S_zG.eyJH0-Z.HX4w-7v", AccessToken: "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"}
		b.Run(alg, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := k.Proof(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSign is one ES256 signature over a proof-sized input and
// nothing else, the floor under BenchmarkProof/ES256.
func BenchmarkSign(b *testing.B) {
	k := testKeys(b)[ES256]
	input := make([]byte, 330)
	_, _ = rand.Read(input)
	priv := k.signer.(*ecdsa.PrivateKey)
	b.ReportAllocs()
	for b.Loop() {
		d := sha256.Sum256(input)
		if _, err := ecdsa.SignASN1(rand.Reader, priv, d[:]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHTU is the htu of a usual URL (fast path) and of one that
// needs net/url.
func BenchmarkHTU(b *testing.B) {
	for name, u := range map[string]string{"fast": "https://api.example.com/v1/items?page=2", "slow": "https://API.example.com:443/v1/it%20ems"} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := HTU(u); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
