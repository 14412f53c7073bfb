package transport_test

import (
	"net/http"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

// floorTransport does the unavoidable work of any correct injecting
// transport: copy the request and its header map, set one precomputed
// value, call the base.
type floorTransport struct {
	base  http.RoundTripper
	value []string
}

func (f *floorTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	out := new(http.Request)
	*out = *req
	h := make(http.Header, len(req.Header)+1)
	for k, v := range req.Header {
		h[k] = v
	}
	h["Authorization"] = f.value
	out.Header = h
	return f.base.RoundTrip(out)
}

// BenchmarkTransport/{floor,tokenward,x-oauth2}: attaching the token must
// cost next to nothing over the work any correct transport does. Targets:
// tokenward <= 1.15x floor and <= 0.55x x-oauth2 in ns/op and B/op.
func BenchmarkTransport(b *testing.B) {
	// An 800-byte token of base64url characters.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	var sb strings.Builder
	for i := range 800 {
		sb.WriteByte(alphabet[(i*7+3)%len(alphabet)])
	}
	tok := &oauth2.Token{AccessToken: sb.String(), TokenType: "Bearer"}

	// The base answers in memory with one preallocated response.
	resp := &http.Response{StatusCode: 200, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"application/json"}}, Body: http.NoBody}
	base := roundTripFunc(func(*http.Request) (*http.Response, error) { return resp, nil })

	req, err := http.NewRequest("GET", "https://api.example.com/v1/items?page=2", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "tokenward-bench/1.0")

	src := &atomicSource{}
	src.p.Store(tok)
	tw := mustNew(b, src, toAPI(base))

	for _, bc := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"floor", &floorTransport{base: base, value: []string{"Bearer " + tok.AccessToken}}},
		{"tokenward", tw},
		{"x-oauth2", &oauth2.Transport{Source: oauth2.ReuseTokenSource(nil, oauth2.StaticTokenSource(tok)), Base: base}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					r, err := bc.rt.RoundTrip(req)
					if err != nil || r != resp {
						b.Errorf("RoundTrip = %v, %v", r, err)
						return
					}
				}
			})
		})
	}
}
