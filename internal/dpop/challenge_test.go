package dpop

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

func header(pairs ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(pairs); i += 2 {
		h.Add(pairs[i], pairs[i+1])
	}
	return h
}

func TestParseChallenge(t *testing.T) {
	for name, c := range map[string]struct {
		h    http.Header
		want Challenge
	}{
		"RFC 9449 use_dpop_nonce": {header("WWW-Authenticate", `DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"`, "DPoP-Nonce", "eyJ7S_zG.eyJH0-Z.HX4w-7v"),
			Challenge{Found: true, Error: CodeUseNonce, Nonce: "eyJ7S_zG.eyJH0-Z.HX4w-7v"}},
		"RFC 9449 algs": {header("WWW-Authenticate", `DPoP algs="ES256 PS256"`),
			Challenge{Found: true, Algs: []string{"ES256", "PS256"}}},
		"Bearer first on one line": {header("WWW-Authenticate", `Bearer realm="a, b", error="invalid_token", DPoP algs="ES256", error="invalid_dpop_proof"`),
			Challenge{Found: true, Error: CodeInvalidProof, Algs: []string{"ES256"}}},
		"DPoP then Bearer": {header("WWW-Authenticate", `DPoP error="use_dpop_nonce", Bearer error="invalid_token"`, "DPoP-Nonce", "n"),
			Challenge{Found: true, Error: CodeUseNonce, Nonce: "n"}},
		"separate lines": {header("WWW-Authenticate", `Bearer error="invalid_token"`, "WWW-Authenticate", `dpop ERROR=use_dpop_nonce`, "dpop-nonce", " n-2 "),
			Challenge{Found: true, Error: CodeUseNonce, Nonce: "n-2"}},
		"list continued on the next line": {header("WWW-Authenticate", `DPoP algs="EdDSA"`, "WWW-Authenticate", `error="invalid_dpop_proof"`),
			Challenge{Found: true, Error: CodeInvalidProof, Algs: []string{"EdDSA"}}},
		"escapes and commas in quotes": {header("WWW-Authenticate", `Basic realm="x\", DPoP error=\"fake\"", DPoP error="use_\dpop_nonce"`),
			Challenge{Found: true, Error: CodeUseNonce}},
		"token68 before": {header("WWW-Authenticate", `Newauth abc==, DPoP error=invalid_dpop_proof`),
			Challenge{Found: true, Error: CodeInvalidProof}},
		"first value wins": {header("WWW-Authenticate", `DPoP error="use_dpop_nonce", error="invalid_dpop_proof"`),
			Challenge{Found: true, Error: CodeUseNonce}},
		"first DPoP challenge wins": {header("WWW-Authenticate", `DPoP error="use_dpop_nonce", DPoP error="invalid_dpop_proof"`),
			Challenge{Found: true, Error: CodeUseNonce}},
		"bare DPoP": {header("WWW-Authenticate", `DPoP`), Challenge{Found: true}},
		"DPoP as a parameter name is not a challenge": {header("WWW-Authenticate", `Bearer DPoP="x", dpop=y`), Challenge{}},
		"DPoPx is not DPoP":                           {header("WWW-Authenticate", `DPoPx error="use_dpop_nonce"`), Challenge{}},
		"no challenge, nonce only":                    {header("DPoP-Nonce", "n-3"), Challenge{Nonce: "n-3"}},
		"bad nonce dropped": {header("WWW-Authenticate", `DPoP error="use_dpop_nonce"`, "DPoP-Nonce", `a"b`),
			Challenge{Found: true, Error: CodeUseNonce}},
		"hostile error dropped":     {header("WWW-Authenticate", `DPoP error="use dpop`+"\x1b[31m"+`"`), Challenge{Found: true}},
		"unterminated quote":        {header("WWW-Authenticate", `DPoP error="use_dpop_nonce`), Challenge{Found: true}},
		"malformed element skipped": {header("WWW-Authenticate", `DPoP "junk", error=use_dpop_nonce`), Challenge{Found: true, Error: CodeUseNonce}},
		"text after a quoted value": {header("WWW-Authenticate", `DPoP error="a"b, algs=ES256`), Challenge{Found: true, Algs: []string{"ES256"}}},
		"bad algs dropped":          {header("WWW-Authenticate", `DPoP algs="ES256 <script> PS256"`), Challenge{Found: true, Algs: []string{"ES256", "PS256"}}},
	} {
		got := ParseChallenge(c.h)
		if got.Found != c.want.Found || got.Error != c.want.Error || got.Nonce != c.want.Nonce || !slices.Equal(got.Algs, c.want.Algs) {
			t.Errorf("%s: ParseChallenge = %+v, want %+v", name, got, c.want)
		}
	}
}

func TestChallengeDecisions(t *testing.T) {
	c := ParseChallenge(header("WWW-Authenticate", `DPoP error="use_dpop_nonce"`, "DPoP-Nonce", "n"))
	if !c.UseNonce() || c.InvalidProof() {
		t.Errorf("%+v: want UseNonce", c)
	}
	c = ParseChallenge(header("WWW-Authenticate", `DPoP error="use_dpop_nonce"`))
	if c.UseNonce() {
		t.Error("UseNonce without a nonce to use")
	}
	c = ParseChallenge(header("WWW-Authenticate", `DPoP error="invalid_dpop_proof"`, "DPoP-Nonce", "n"))
	if c.UseNonce() || !c.InvalidProof() {
		t.Errorf("%+v: want InvalidProof", c)
	}
}

// TestTokenEndpointNonce: the token endpoint's 400 {"error":"use_dpop_nonce"}
// with a DPoP-Nonce header (RFC 9449 section 8).
func TestTokenEndpointNonce(t *testing.T) {
	h := header("DPoP-Nonce", "eyJ7S_zG.eyJH0-Z.HX4w-7v")
	if n, ok := TokenEndpointNonce(400, CodeUseNonce, h); !ok || n != "eyJ7S_zG.eyJH0-Z.HX4w-7v" {
		t.Errorf("TokenEndpointNonce = %q, %v", n, ok)
	}
	for name, c := range map[string]struct {
		status int
		code   string
		h      http.Header
	}{
		"success":     {200, CodeUseNonce, h},
		"other code":  {400, "invalid_grant", h},
		"no nonce":    {400, CodeUseNonce, http.Header{}},
		"bad nonce":   {400, CodeUseNonce, header("DPoP-Nonce", "a b")},
		"long nonce":  {400, CodeUseNonce, header("DPoP-Nonce", strings.Repeat("x", MaxNonceLen+1))},
		"empty nonce": {400, CodeUseNonce, header("DPoP-Nonce", "")},
	} {
		if n, ok := TokenEndpointNonce(c.status, c.code, c.h); ok || n != "" {
			t.Errorf("%s: TokenEndpointNonce = %q, %v; want no retry", name, n, ok)
		}
	}
}

// FuzzChallenge: ParseChallenge reads headers any server can send. It
// never panics, keeps only plausible values, and finds a DPoP challenge
// with a fuzzed error code wherever it sits among other challenges.
func FuzzChallenge(f *testing.F) {
	f.Add(`Bearer realm="x", error="invalid_token"`, "use_dpop_nonce", "n")
	f.Add(`Basic abc==`, "invalid_dpop_proof", "")
	f.Add(`Newauth realm="a\"b,c"`, `we"ird\`, "a b")
	f.Add(`, ,Bearer`, "x", `"`)
	f.Fuzz(func(t *testing.T, other, code, nonce string) {
		// Robustness: arbitrary text in every position.
		for _, h := range []http.Header{
			header("WWW-Authenticate", other, "DPoP-Nonce", nonce),
			header("WWW-Authenticate", other+", DPoP "+code, "WWW-Authenticate", code),
		} {
			c := ParseChallenge(h)
			if c.Error != "" && (!c.Found || !isNonce(c.Error) || len(c.Error) > maxCodeLen) {
				t.Fatalf("kept error %q (found %v)", c.Error, c.Found)
			}
			if c.Nonce != "" && !isNonce(c.Nonce) {
				t.Fatalf("kept nonce %q", c.Nonce)
			}
			if len(c.Algs) > maxAlgs {
				t.Fatalf("kept %d algs", len(c.Algs))
			}
			for _, a := range c.Algs {
				if !isAlgName(a) || len(a) > maxAlgLen {
					t.Fatalf("kept alg %q", a)
				}
			}
		}
		// Round trip: a well-formed DPoP challenge after a well-formed other
		// challenge whose quoted realm is the fuzzed text.
		quote := func(s string) string {
			return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
		}
		if strings.ContainsAny(other, "\r\n") {
			return // a header value cannot hold them
		}
		h := header("WWW-Authenticate", `Bearer realm=`+quote(other)+`, error="invalid_token", DPoP error=`+quote(code)+`, algs="ES256"`)
		c := ParseChallenge(h)
		want := ""
		if isNonce(code) && len(code) <= maxCodeLen {
			want = code
		}
		if !strings.ContainsAny(code, "\r\n") && (!c.Found || c.Error != want || !slices.Equal(c.Algs, []string{"ES256"})) {
			t.Fatalf("%q: got %+v, want error %q and algs [ES256]", h, c, want)
		}
	})
}
