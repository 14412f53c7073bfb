package dpop

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

var testNow = time.Unix(1562262616, 0)

// TestProofVerifies: a proof of every key kind, whether the package signs
// with the concrete key or through crypto.Signer, verifies with the jwk
// of its own header and carries the claims asked for.
func TestProofVerifies(t *testing.T) {
	for alg, k := range testKeys(t) {
		opaque, err := NewKey(opaqueSigner{k.signer}, alg)
		if err != nil {
			t.Fatal(err)
		}
		for _, key := range []*Key{k, opaque} {
			p := ProofParams{Method: "GET", URL: "https://API.example.COM:443/v1/items?secret=1#frag", Now: testNow,
				Nonce: "eyJ7S_zG.eyJH0-Z.HX4w-7v", AccessToken: "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"}
			proof, err := key.Proof(p)
			if err != nil {
				t.Fatalf("%s: Proof: %v", alg, err)
			}
			v := verifyProof(t, proof)
			if v.header["alg"] != alg {
				t.Errorf("%s: header alg %v", alg, v.header["alg"])
			}
			if got := thumbprintOf(t, v.jwk); got != k.Thumbprint() {
				t.Errorf("%s: the header's jwk has thumbprint %s, the key %s", alg, got, k.Thumbprint())
			}
			want := map[string]any{
				"htm": "GET", "htu": "https://api.example.com/v1/items", "iat": float64(testNow.Unix()),
				"nonce": p.Nonce, "ath": "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo",
			}
			for name, w := range want {
				if v.claims[name] != w {
					t.Errorf("%s: claim %s = %v, want %v", alg, name, v.claims[name], w)
				}
			}
			if len(v.claims) != len(want)+1 {
				t.Errorf("%s: claims %s: want exactly jti and %d others", alg, v.payload, len(want))
			}
		}
	}
}

// TestProofTargetAndATH: a proof made from the parsed URL and a
// precomputed ath has the claims of one made from the URL string and the
// access token, for URLs on the fast path and off it (upper case, default
// port, user information, escapes, characters that need escaping).
func TestProofTargetAndATH(t *testing.T) {
	k := testKeys(t)[EdDSA]
	const token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
	for _, raw := range []string{
		"https://api.example.com/v1/items?secret=1#frag", "https://api.example.com", "http://h.example:8080/a;b=c@d",
		"https://API.example.COM:443/v1", "https://user:pw@api.example/x", "https://api.example/a%2Fb", "https://api.example/a(b)",
		"https://[::1]:8443/p", "https://api.example/caf%C3%A9",
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		byString, err := k.Proof(ProofParams{Method: "GET", URL: raw, Now: testNow, AccessToken: token})
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		byTarget, err := k.Proof(ProofParams{Method: "GET", URL: "https://ignored.example/", Target: u, Now: testNow, ATH: AccessTokenHash(token)})
		if err != nil {
			t.Fatalf("%s: by target: %v", raw, err)
		}
		a, b := verifyProof(t, byString), verifyProof(t, byTarget)
		for _, name := range []string{"htu", "htm", "iat", "ath"} {
			if a.claims[name] != b.claims[name] {
				t.Errorf("%s: claim %s: %v from the string, %v from the parsed URL", raw, name, a.claims[name], b.claims[name])
			}
		}
	}
	// The precomputed ath wins over the access token: it is what the
	// caller computed for the token it sends.
	v := verifyProof(t, mustProof(t, k, ProofParams{Method: "GET", URL: "https://a.example/", Now: testNow, AccessToken: "other", ATH: AccessTokenHash(token)}))
	if v.claims["ath"] != AccessTokenHash(token) {
		t.Errorf("ath %v, want the precomputed one", v.claims["ath"])
	}
}

func mustProof(t *testing.T, k *Key, p ProofParams) string {
	t.Helper()
	proof, err := k.Proof(p)
	if err != nil {
		t.Fatal(err)
	}
	return proof
}

// TestProofTokenRequest: without an access token or nonce, the proof has
// neither ath nor nonce.
func TestProofTokenRequest(t *testing.T) {
	k, _ := Generate(ES256)
	proof, err := k.Proof(ProofParams{Method: "POST", URL: "https://as.example/token", Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	v := verifyProof(t, proof)
	if _, ok := v.claims["ath"]; ok {
		t.Error("token request proof has ath")
	}
	if _, ok := v.claims["nonce"]; ok {
		t.Error("proof without nonce has one")
	}
}

// TestAccessTokenHashRFC9449: the access token and ath of RFC 9449
// section 7.1.
func TestAccessTokenHashRFC9449(t *testing.T) {
	if got, want := AccessTokenHash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"), "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"; got != want {
		t.Fatalf("AccessTokenHash = %s, want %s", got, want)
	}
}

// TestJTIUnique: 10 000 proofs, 10 000 different jti values of at least
// 128 bits.
func TestJTIUnique(t *testing.T) {
	k, _ := Generate(EdDSA)
	seen := make(map[string]bool, 10000)
	for i := range 10000 {
		proof, err := k.Proof(ProofParams{Method: "GET", URL: "https://api.example/", Now: testNow})
		if err != nil {
			t.Fatal(err)
		}
		v := verifyProof(t, proof)
		jti, _ := v.claims["jti"].(string)
		if len(jti) < 22 { // 128 bits in base64url
			t.Fatalf("jti %q is shorter than 128 bits", jti)
		}
		if seen[jti] {
			t.Fatalf("jti %q repeated after %d proofs", jti, i)
		}
		seen[jti] = true
	}
}

// TestJTIUniqueConcurrent: jti bytes come from shared blocks of random
// bytes; goroutines taking them at once never get the same bytes twice,
// and never unfilled (zero) ones.
func TestJTIUniqueConcurrent(t *testing.T) {
	const goroutines, each = 8, 3 * jtiBlockProofs * 20
	out := make([][][jtiBytes]byte, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[g] = make([][jtiBytes]byte, each)
			for i := range out[g] {
				readJTI(&out[g][i])
			}
		}()
	}
	wg.Wait()
	seen := make(map[[jtiBytes]byte]bool, goroutines*each)
	for _, jtis := range out {
		for _, j := range jtis {
			if j == [jtiBytes]byte{} || seen[j] {
				t.Fatalf("jti %x handed out twice or never filled", j)
			}
			seen[j] = true
		}
	}
}

func TestProofRefusesBadParams(t *testing.T) {
	k, _ := Generate(ES256)
	ok := ProofParams{Method: "GET", URL: "https://api.example/", Now: testNow}
	for name, c := range map[string]struct {
		mod  func(*ProofParams)
		want error
	}{
		"zero time":          {func(p *ProofParams) { p.Now = time.Time{} }, ErrInvalidProofParams},
		"empty method":       {func(p *ProofParams) { p.Method = "" }, ErrInvalidProofParams},
		"method with quote":  {func(p *ProofParams) { p.Method = `GE"T` }, ErrInvalidProofParams},
		"method with space":  {func(p *ProofParams) { p.Method = "GET /" }, ErrInvalidProofParams},
		"nonce with quote":   {func(p *ProofParams) { p.Nonce = `a"b` }, ErrInvalidProofParams},
		"nonce with space":   {func(p *ProofParams) { p.Nonce = "a b" }, ErrInvalidProofParams},
		"nonce too long":     {func(p *ProofParams) { p.Nonce = strings.Repeat("n", MaxNonceLen+1) }, ErrInvalidProofParams},
		"ftp":                {func(p *ProofParams) { p.URL = "ftp://x/" }, ErrInvalidURL},
		"relative":           {func(p *ProofParams) { p.URL = "/token" }, ErrInvalidURL},
		"unparseable":        {func(p *ProofParams) { p.URL = "https://x/%zz" }, ErrInvalidURL},
		"non-ASCII host":     {func(p *ProofParams) { p.URL = "https://bücher.example/" }, ErrInvalidURL},
		"opaque":             {func(p *ProofParams) { p.URL = "https:opaque" }, ErrInvalidURL},
		"no host":            {func(p *ProofParams) { p.URL = "https:///path" }, ErrInvalidURL},
		"control character":  {func(p *ProofParams) { p.URL = "https://x/\n" }, ErrInvalidURL},
		"userinfo, no host":  {func(p *ProofParams) { p.URL = "https://user@/" }, ErrInvalidURL},
		"space in host":      {func(p *ProofParams) { p.URL = "https://a%20b/" }, ErrInvalidURL},
		"scheme only":        {func(p *ProofParams) { p.URL = "https://" }, ErrInvalidURL},
		"port without host":  {func(p *ProofParams) { p.URL = "https://:443/" }, ErrInvalidURL},
		"uppercase relative": {func(p *ProofParams) { p.URL = "HTTPS:x" }, ErrInvalidURL},
		"ath too short":      {func(p *ProofParams) { p.ATH = "abc" }, ErrInvalidProofParams},
		"ath with a quote":   {func(p *ProofParams) { p.ATH = strings.Repeat("a", 42) + `"` }, ErrInvalidProofParams},
		"ath padded":         {func(p *ProofParams) { p.ATH = strings.Repeat("a", 42) + "=" }, ErrInvalidProofParams},
		"target ftp":         {func(p *ProofParams) { p.Target = &url.URL{Scheme: "ftp", Host: "x", Path: "/"} }, ErrInvalidURL},
		"target no host":     {func(p *ProofParams) { p.Target = &url.URL{Scheme: "https", Path: "/a"} }, ErrInvalidURL},
	} {
		p := ok
		c.mod(&p)
		proof, err := k.Proof(p)
		if !errors.Is(err, c.want) || proof != "" || !strings.HasPrefix(err.Error(), "dpop: proof: ") {
			t.Errorf("%s: Proof = %q, %v; want %v", name, proof, err, c.want)
		}
	}
	var nilKey *Key
	if _, err := nilKey.Proof(ok); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("nil key: %v", err)
	}
}

// TestProofSignerFails: a signer's error reaches the caller, and a signer
// that returns a malformed signature is caught.
func TestProofSignerFails(t *testing.T) {
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	for name, s := range map[string]badSigner{"error": {pub: ed.Public(), err: errors.New("token removed")}, "short": {pub: ed.Public(), sig: []byte{1, 2}}} {
		k, err := NewKey(s, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := k.Proof(ProofParams{Method: "GET", URL: "https://x/", Now: testNow}); err == nil || !strings.HasPrefix(err.Error(), "dpop: proof: sign with EdDSA: ") {
			t.Errorf("%s: Proof error = %v", name, err)
		}
	}
}

func TestHTU(t *testing.T) {
	for in, want := range map[string]string{
		"https://as.example/token":                     "https://as.example/token",
		"https://AS.Example:443/token":                 "https://as.example/token",
		"HTTPS://as.example/token":                     "https://as.example/token",
		"http://as.example:80/token":                   "http://as.example/token",
		"http://as.example:443/token":                  "http://as.example:443/token",
		"https://as.example:80/token":                  "https://as.example:80/token",
		"https://as.example:8443/token":                "https://as.example:8443/token",
		"https://as.example:/token":                    "https://as.example/token",
		"https://as.example":                           "https://as.example/",
		"https://as.example?q=1":                       "https://as.example/",
		"https://as.example/a/b?x=y#z":                 "https://as.example/a/b",
		"https://as.example/a#z?":                      "https://as.example/a",
		"https://user:pass@as.example/a":               "https://as.example/a",
		"https://[::1]:8443/a":                         "https://[::1]:8443/a",
		"https://[2001:DB8::1]/a":                      "https://[2001:db8::1]/a",
		"https://127.0.0.1:443/":                       "https://127.0.0.1/",
		"https://as.example/a%2Fb/C%20d":               "https://as.example/a%2Fb/C%20d",
		"https://as.example/a b":                       "https://as.example/a%20b",
		"https://as.example/päth":                      "https://as.example/p%C3%A4th",
		"https://as.example/a/../b/./c":                "https://as.example/a/../b/./c",
		"https://as.example/!$&'()*+,;=:@-._~":         "https://as.example/!$&'()*+,;=:@-._~",
		"https://as.example/Token":                     "https://as.example/Token",
		"https://as.example:0443/":                     "https://as.example:0443/",
		"http://localhost:8080/callback?code=secret":   "http://localhost:8080/callback",
		"https://as.example//double//slash":            "https://as.example//double//slash",
		"https://xn--bcher-kva.example/resource?x=1#y": "https://xn--bcher-kva.example/resource",
	} {
		got, err := HTU(in)
		if err != nil || got != want {
			t.Errorf("HTU(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestOrigin(t *testing.T) {
	for in, want := range map[string]string{
		"https://API.example:443/x?y": "https://api.example",
		"http://api.example:8080/":    "http://api.example:8080",
		"https://[::1]:9/a":           "https://[::1]:9",
		"https://api.example":         "https://api.example",
	} {
		if got, err := Origin(in); err != nil || got != want {
			t.Errorf("Origin(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := Origin("mailto:x"); !errors.Is(err, ErrInvalidURL) || !strings.HasPrefix(err.Error(), "dpop: origin: ") {
		t.Errorf("Origin(mailto) error = %v", err)
	}
}

// FuzzHTU: HTU never panics; its fast path agrees with net/url wherever it
// answers; a result is ASCII, has no query, fragment or user information,
// names the URL's host and path, and is its own htu.
func FuzzHTU(f *testing.F) {
	for _, s := range []string{"https://as.example/token", "https://h/a(b)!c", "https://h/a%28b", "https://h.example:8443",
		"HTTPS://h/p", "https://h/a b", "a\x7fb", "a#%zz", "https://AS.example:443/a?b#c", "http://x:80", "https://[::1]:8/p",
		"https://u:p@h/p", "https://h:/p", "https://h/a%2fb", "https://h/a\"b", "https://h:0/", "http://h:99999/a",
		"https://h.example:8443/a;b=c/d@e", "https://h/\\x", "https://h./", "https://-/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkTarget(t, s)
		htu, err := HTU(s)
		fast, fastOK := fastHTU(s)
		slow, u, slowErr := slowHTU(s)
		if fastOK && (slowErr != nil || fast != slow) {
			t.Fatalf("fast path %q, net/url %q (%v)", fast, slow, slowErr)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidURL) {
				t.Fatalf("error %v does not match ErrInvalidURL", err)
			}
			return
		}
		if slowErr != nil || htu != slow {
			t.Fatalf("HTU %q, net/url path %q (%v)", htu, slow, slowErr)
		}
		for i := 0; i < len(htu); i++ {
			if htu[i] < 0x21 || htu[i] > 0x7e || htu[i] == '?' || htu[i] == '#' {
				t.Fatalf("htu %q has byte %#x", htu, htu[i])
			}
		}
		again, err := HTU(htu)
		if err != nil || again != htu {
			t.Fatalf("HTU(%q) = %q, %v; not idempotent", htu, again, err)
		}
		back, err := url.Parse(htu)
		if err != nil || back.User != nil || !strings.EqualFold(back.Hostname(), u.Hostname()) || back.EscapedPath() != orSlash(u.EscapedPath()) {
			t.Fatalf("htu %q does not name %q's host and path", htu, s)
		}
		if o := originOf(htu); !strings.HasPrefix(htu, o) || strings.Contains(o[len(u.Scheme)+3:], "/") {
			t.Fatalf("origin %q of %q", o, htu)
		}
	})
}

// checkTarget: for the URL s parses to, the parsed-URL fast path (what
// proofs and nonce lookups of API requests use) agrees with HTU and Origin
// of the printed URL wherever it answers, and so does a nonce lookup by
// the parsed URL.
func checkTarget(t *testing.T, s string) {
	t.Helper()
	// A URL built by hand, not parsed, may hold in its raw query what
	// parsing would refuse.
	checkTargetOf(t, &url.URL{Scheme: "https", Host: "api.example", Path: "/p", RawQuery: s})
	if pu, err := url.Parse(s); err == nil {
		checkTargetOf(t, pu)
	}
}

func checkTargetOf(t *testing.T, pu *url.URL) {
	t.Helper()
	want, wantErr := HTU(pu.String())
	if ft, ok := fastTarget(pu); ok {
		got := ft.String()
		if string(ft.appendTo(nil)) != got {
			t.Fatalf("fast path htu %q needs JSON escaping", got)
		}
		if wantErr != nil || got != want {
			t.Fatalf("parsed-URL fast path %q, HTU of the printed URL %q (%v)", got, want, wantErr)
		}
	}
	p := ProofParams{Target: pu}
	if got, err := p.target(); (err == nil) != (wantErr == nil) || err == nil && got.String() != want {
		t.Fatalf("target of the parsed URL %q, %v; HTU %q, %v", got, err, want, wantErr)
	}
	if wantErr != nil || len(originOf(want)) > maxOriginLen {
		return // the cache keeps no nonce for an overlong origin
	}
	var c NonceCache
	c.Set(originOf(want), "n")
	if got := c.ForURL(pu); got != "n" {
		t.Fatalf("ForURL(%q) = %q, want the nonce set for %q", pu, got, originOf(want))
	}
}

func orSlash(p string) string {
	if p == "" {
		return "/"
	}
	return p
}
