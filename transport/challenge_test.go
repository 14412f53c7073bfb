package transport_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tokenward/tokenward/transport"
)

func TestParseChallenges(t *testing.T) {
	t.Parallel()
	type C = transport.Challenge
	type P = map[string]string
	tests := []struct {
		name  string
		lines []string
		want  []C
	}{
		{"none", nil, nil},
		{"empty", []string{""}, nil},
		{"scheme only", []string{"Negotiate"}, []C{{Scheme: "Negotiate"}}},
		{"RFC 6750 example", []string{`Bearer realm="example", error="invalid_token", error_description="The access token expired"`},
			[]C{{Scheme: "Bearer", Params: P{"realm": "example", "error": "invalid_token", "error_description": "The access token expired"}}}},
		{"RFC 9110 example: two challenges, one line", []string{`Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple"`},
			[]C{
				{Scheme: "Newauth", Params: P{"realm": "apps", "type": "1", "title": `Login to "apps"`}},
				{Scheme: "Basic", Params: P{"realm": "simple"}},
			}},
		{"across lines", []string{`Basic realm="simple"`, `Bearer error="invalid_token"`},
			[]C{{Scheme: "Basic", Params: P{"realm": "simple"}}, {Scheme: "Bearer", Params: P{"error": "invalid_token"}}}},
		{"list continues on the next line", []string{`Bearer realm="a"`, `error="invalid_token"`},
			[]C{{Scheme: "Bearer", Params: P{"realm": "a", "error": "invalid_token"}}}},
		{"token68", []string{"Basic dXNlcjpwYXNz"}, []C{{Scheme: "Basic", Token68: "dXNlcjpwYXNz"}}},
		{"token68 with padding, then another challenge", []string{"Negotiate YII=, Bearer realm=x"},
			[]C{{Scheme: "Negotiate", Token68: "YII="}, {Scheme: "Bearer", Params: P{"realm": "x"}}}},
		{"commas inside quotes", []string{`Bearer error_description="a, b, c", error="invalid_token"`},
			[]C{{Scheme: "Bearer", Params: P{"error_description": "a, b, c", "error": "invalid_token"}}}},
		{"escaped quote and backslash", []string{`Bearer error_description="say \"hi\" \\o/"`},
			[]C{{Scheme: "Bearer", Params: P{"error_description": `say "hi" \o/`}}}},
		{"case-insensitive names, scheme kept as sent", []string{`bEaReR ReAlM="x", ERROR=invalid_token`},
			[]C{{Scheme: "bEaReR", Params: P{"realm": "x", "error": "invalid_token"}}}},
		{"whitespace around = and commas", []string{"Bearer  realm = \"x\" ,\terror=invalid_token ,"},
			[]C{{Scheme: "Bearer", Params: P{"realm": "x", "error": "invalid_token"}}}},
		{"empty list elements", []string{", ,Basic realm=a,, ,Bearer realm=b,"},
			[]C{{Scheme: "Basic", Params: P{"realm": "a"}}, {Scheme: "Bearer", Params: P{"realm": "b"}}}},
		{"duplicate parameter: first wins", []string{`Bearer error=invalid_token, error=insufficient_scope`},
			[]C{{Scheme: "Bearer", Params: P{"error": "invalid_token"}}}},
		{"RFC 9470 step-up", []string{`Bearer error="insufficient_user_authentication", error_description="A different authentication level is required", acr_values="myACR"`},
			[]C{{Scheme: "Bearer", Params: P{"error": "insufficient_user_authentication", "error_description": "A different authentication level is required", "acr_values": "myACR"}}}},
		{"DPoP challenge", []string{`DPoP algs="ES256 PS256", error="use_dpop_nonce"`},
			[]C{{Scheme: "DPoP", Params: P{"algs": "ES256 PS256", "error": "use_dpop_nonce"}}}},
		{"unquoted value with a space: rest of the item skipped", []string{`Bearer error=invalid_token, error_description=Token expired, realm=x`},
			[]C{{Scheme: "Bearer", Params: P{"error": "invalid_token", "realm": "x"}}}},
		{"unterminated quote", []string{`Bearer realm="x, error=invalid_token`}, []C{{Scheme: "Bearer"}}},
		{"garbage before a challenge", []string{`"junk", =x, Bearer realm=y`}, []C{{Scheme: "Bearer", Params: P{"realm": "y"}}}},
		{"scheme glued to =", []string{`Bearer=x, Basic realm=y`}, []C{{Scheme: "Basic", Params: P{"realm": "y"}}}},
		// "realm=" is a token68 by the grammar (an auth-param needs a value);
		// what follows cannot start a challenge and is skipped.
		{"missing value reads as token68", []string{`Bearer realm=, error=invalid_token`}, []C{{Scheme: "Bearer", Token68: "realm="}}},
		{"missing value after a param", []string{`Bearer realm=x, scope=, error=invalid_token`}, []C{{Scheme: "Bearer", Params: P{"realm": "x", "error": "invalid_token"}}}},
		{"token68-looking value then params is a param list", []string{`Bearer abc=def`}, []C{{Scheme: "Bearer", Params: P{"abc": "def"}}}},
		{"empty quoted value", []string{`Bearer realm=""`}, []C{{Scheme: "Bearer", Params: P{"realm": ""}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			for _, l := range tt.lines {
				h.Add("Www-Authenticate", l)
			}
			got := transport.ParseChallenges(h)
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ParseChallenges(%q) (-want +got):\n%s", tt.lines, diff)
			}
		})
	}
}

func TestBearerErrorFrom(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		status int
		lines  []string
		want   *transport.BearerError
	}{
		{"insufficient_scope", 403, []string{`Bearer realm="api", error="insufficient_scope", scope="files.read files.write", error_description="needs write"`},
			&transport.BearerError{StatusCode: 403, Code: "insufficient_scope", Realm: "api", Scope: "files.read files.write", Description: "needs write", MaxAge: -1}},
		{"insufficient_user_authentication with max_age", 401, []string{`Basic realm="x"`, `Bearer error="insufficient_user_authentication", acr_values="phr phrh", max_age=0`},
			&transport.BearerError{StatusCode: 401, Code: "insufficient_user_authentication", ACRValues: "phr phrh", MaxAge: 0}},
		{"bad max_age", 401, []string{`Bearer error="insufficient_user_authentication", max_age="-5"`},
			&transport.BearerError{StatusCode: 401, Code: "insufficient_user_authentication", MaxAge: -1}},
		{"Bearer without error", 401, []string{`Bearer realm="api"`}, nil},
		{"other scheme only", 401, []string{`DPoP error="invalid_token"`}, nil},
		{"no header", 401, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp := &http.Response{StatusCode: tt.status, Header: http.Header{}}
			for _, l := range tt.lines {
				resp.Header.Add("WWW-Authenticate", l)
			}
			got, ok := transport.BearerErrorFrom(resp)
			if ok != (tt.want != nil) {
				t.Fatalf("ok = %v", ok)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.IgnoreFields(transport.BearerError{}, "Params")); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if _, ok := transport.BearerErrorFrom(nil); ok {
		t.Error("BearerErrorFrom(nil) reported an error")
	}
	e := &transport.BearerError{StatusCode: 403, Code: "insufficient_scope", Scope: "a b", Description: "secret-ish server text", MaxAge: -1}
	if got, want := e.Error(), `transport: resource server refused the token: 403 insufficient_scope (scope "a b")`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if diff := cmp.Diff([]string{"a", "b"}, e.Scopes()); diff != "" {
		t.Error(diff)
	}
}

// FuzzParseChallenges: the parser reads headers any server can send, so it
// must hold for every input. The seed corpus lives in
// testdata/fuzz/FuzzParseChallenges. Properties: no panic; every challenge
// has a token scheme and lower-case token parameter names; formatting the
// result and parsing it again gives the same challenges, one by one and as
// a list.
func FuzzParseChallenges(f *testing.F) {
	for _, s := range []string{
		`Bearer realm="example", error="invalid_token", error_description="The access token expired"`,
		`Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple"`,
		"Basic dXNlcjpwYXNz\nBearer error=invalid_token",
		`Negotiate YII=, Bearer realm=x`,
		`Bearer error_description="a, b, c", error="invalid_token"`,
		`bEaReR ReAlM="x", ERROR=invalid_token`,
		`Bearer realm="x, error=invalid_token`,
		`"junk", =x, Bearer realm=y`,
		`Bearer realm="a\`,
		", , ,",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		h := http.Header{}
		for _, l := range strings.Split(in, "\n") {
			h.Add("WWW-Authenticate", l)
		}
		got := transport.ParseChallenges(h)
		var formatted []string
		for _, c := range got {
			if c.Scheme == "" || !isToken(c.Scheme) {
				t.Fatalf("scheme %q is not a token", c.Scheme)
			}
			if c.Token68 != "" && len(c.Params) > 0 {
				t.Fatalf("challenge has both token68 and params: %+v", c)
			}
			for k := range c.Params {
				if k == "" || !isToken(k) || k != strings.ToLower(k) {
					t.Fatalf("param name %q is not a lower-case token", k)
				}
			}
			s := c.String()
			again := transport.ParseChallenges(http.Header{"Www-Authenticate": {s}})
			if diff := cmp.Diff([]transport.Challenge{c}, again, cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("round trip of %q via %q (-first +second):\n%s", in, s, diff)
			}
			formatted = append(formatted, s)
		}
		again := transport.ParseChallenges(http.Header{"Www-Authenticate": {strings.Join(formatted, ", ")}})
		if diff := cmp.Diff(got, again, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("list round trip of %q (-first +second):\n%s", in, diff)
		}
	})
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
