package oauthwire

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenward/tokenward/internal/canary"
	"github.com/tokenward/tokenward/internal/tokenx"
)

var sent = time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)

func jsonHeader() http.Header {
	return http.Header{"Content-Type": {"application/json; charset=utf-8"}}
}

func formHeader() http.Header {
	return http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
}

// TestExpiresInConformance is the expires_in table: every shape, in
// JSON and in form encoding, has a defined result, and the token (with its
// refresh token) is never thrown away.
func TestExpiresInConformance(t *testing.T) {
	t.Parallel()
	const maxSecs = int64(MaxExpiresIn / time.Second)
	cases := []struct {
		name string
		json string // raw JSON value; "" means absent
		form string // form value; "-" means absent
		want int64  // seconds; 0 means unknown (zero Expiry)
	}{
		{"int", `3600`, "3600", 3600},
		{"string", `"3600"`, "3600", 3600},
		{"string with spaces", `" 3600 "`, " 3600 ", 3600},
		{"float", `3599.5`, "3599.5", 3599},
		{"float string", `"3599.5"`, "3599.5", 3599},
		{"exponent", `3.6e3`, "3.6e3", 3600},
		{"null", `null`, "", 0},
		{"absent", ``, "-", 0},
		{"negative", `-60`, "-60", 0},
		{"zero", `0`, "0", 0},
		{"fraction below one", `0.5`, "0.5", 0},
		{"2^40", `1099511627776`, "1099511627776", maxSecs},
		{"1e300", `1e300`, "1e300", maxSecs},
		{"1e400 (overflows float64)", `1e400`, "1e400", maxSecs},
		{"beyond int64", `99999999999999999999999`, "99999999999999999999999", maxSecs},
		{"garbage string", `"soon"`, "soon", 0},
		{"NaN", `"NaN"`, "NaN", 0},
		{"Inf", `"Inf"`, "+Inf", 0},
		{"bool", `true`, "true", 0},
		{"object", `{"s":1}`, "{}", 0},
		{"array", `[3600]`, "[3600]", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			at, rt := canary.JWT("at", 0), canary.New("rt")
			body := `{"access_token":"` + at + `","token_type":"Bearer","refresh_token":"` + rt + `"`
			if c.json != "" {
				body += `,"expires_in":` + c.json
			}
			body += `}`
			form := url.Values{"access_token": {at}, "token_type": {"Bearer"}, "refresh_token": {rt}}
			if c.form != "-" {
				form.Set("expires_in", c.form)
			}
			for _, enc := range []struct {
				name string
				h    http.Header
				body string
			}{
				{"json", jsonHeader(), body},
				{"form", formHeader(), form.Encode()},
				{"text/plain form", http.Header{"Content-Type": {"text/plain"}}, form.Encode()},
			} {
				tok, err := ParseTokenResponse(200, enc.h, []byte(enc.body), sent)
				if err != nil {
					t.Fatalf("%s: token thrown away: %v", enc.name, err)
				}
				if tok.AccessToken != at || tok.RefreshToken != rt {
					t.Fatalf("%s: tokens not kept", enc.name)
				}
				if tok.ExpiresIn != c.want {
					t.Errorf("%s: ExpiresIn = %d, want %d", enc.name, tok.ExpiresIn, c.want)
				}
				want := time.Time{}
				if c.want != 0 {
					want = sent.Add(time.Duration(c.want) * time.Second)
				}
				if !tok.Expiry.Equal(want) {
					t.Errorf("%s: Expiry = %v, want %v", enc.name, tok.Expiry, want)
				}
			}
		})
	}
}

func TestParseTokenResponseContentTypes(t *testing.T) {
	t.Parallel()
	at := canary.JWT("at", 0)
	okJSON := `{"access_token":"` + at + `","token_type":"bearer","expires_in":60}`
	okForm := "access_token=" + url.QueryEscape(at) + "&token_type=bearer&expires_in=60"
	cases := []struct {
		name    string
		ct      string
		status  int
		body    string
		wantErr error // nil: success
		oauth   string
	}{
		{"json", "application/json", 200, okJSON, nil, ""},
		{"json charset", "application/json;charset=UTF-8", 200, okJSON, nil, ""},
		{"json with BOM and spaces", "application/json", 200, "\xef\xbb\xbf \n" + okJSON + "\n", nil, ""},
		{"vendor json", "application/vnd.x+json", 200, okJSON, nil, ""},
		{"json with wrong type", "text/html", 200, okJSON, nil, ""},
		{"json without type", "", 200, okJSON, nil, ""},
		{"form", "application/x-www-form-urlencoded", 200, okForm, nil, ""},
		{"text form", "text/plain; charset=utf-8", 200, okForm, nil, ""},
		{"form with wrong type", "text/html", 200, okForm, nil, ""},
		{"201 created", "application/json", 201, okJSON, nil, ""},
		{"html page", "text/html", 200, "<html><title>Sign in</title></html>", ErrUnexpectedContentType, ""},
		{"json type, form body without token", "application/json", 200, "hello=world", ErrMalformedResponse, ""},
		{"malformed json", "application/json", 200, `{"access_token":"` + at, ErrMalformedResponse, ""},
		{"json array", "application/json", 200, `[1,2]`, ErrMalformedResponse, ""},
		{"empty", "application/json", 200, ``, ErrMissingAccessToken, ""},
		{"no access token", "application/json", 200, `{"token_type":"bearer"}`, ErrMissingAccessToken, ""},
		{"empty access token", "application/json", 200, `{"access_token":""}`, ErrMissingAccessToken, ""},
		{"blank access token", "application/json", 200, `{"access_token":"  "}`, ErrMissingAccessToken, ""},
		{"numeric access token", "application/json", 200, `{"access_token":12345}`, ErrMissingAccessToken, ""},
		{"null access token", "application/json", 200, `{"access_token":null}`, ErrMissingAccessToken, ""},
		{"newline in access token", "application/json", 200, `{"access_token":"a\nb"}`, ErrMissingAccessToken, ""},
		{"form without token", "application/x-www-form-urlencoded", 200, "token_type=bearer", ErrMissingAccessToken, ""},
		{"200 with error (GitHub)", "application/x-www-form-urlencoded", 200, "error=authorization_pending", nil, "authorization_pending"},
		{"200 with json error", "application/json", 200, `{"error":"slow_down"}`, nil, "slow_down"},
		{"400", "application/json", 400, `{"error":"invalid_grant"}`, nil, "invalid_grant"},
		{"502 html", "text/html", 502, `<html>bad gateway</html>`, nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			if c.ct != "" {
				h.Set("Content-Type", c.ct)
			}
			tok, err := ParseTokenResponse(c.status, h, []byte(c.body), sent)
			var oe *Error
			switch {
			case c.oauth != "" || c.status >= 300:
				if !errors.As(err, &oe) || oe.Code != c.oauth || oe.StatusCode != c.status {
					t.Fatalf("err = %v, want *Error with code %q", err, c.oauth)
				}
			case c.wantErr != nil:
				if !errors.Is(err, c.wantErr) || tok != nil {
					t.Fatalf("err = %v, want %v", err, c.wantErr)
				}
			default:
				if err != nil || tok.AccessToken != at || tok.TokenType != "bearer" || tok.ExpiresIn != 60 {
					t.Fatalf("got %+v, %v", tok, err)
				}
			}
			if err != nil {
				if found := canary.Find(err.Error(), at); len(found) > 0 {
					t.Errorf("error leaks the access token: %v", err)
				}
			}
		})
	}
}

func TestParseTokenResponseTooLarge(t *testing.T) {
	t.Parallel()
	body := `{"access_token":"x","pad":"` + strings.Repeat("a", MaxBody) + `"}`
	if _, err := ParseTokenResponse(200, jsonHeader(), []byte(body), sent); !errors.Is(err, ErrBodyTooLarge) {
		t.Fatalf("err = %v", err)
	}
	// An oversized error page is still an *Error, so it can be classified.
	var oe *Error
	if _, err := ParseTokenResponse(502, http.Header{"Content-Type": {"text/html"}}, []byte("<title>Bad Gateway</title>"+strings.Repeat("x", MaxBody)), sent); !errors.As(err, &oe) || oe.StatusCode != 502 || !oe.Temporary() {
		t.Fatalf("oversized 502: %v", err)
	}
	// Exactly MaxBody is fine.
	body = `{"access_token":"x","pad":"` + strings.Repeat("a", MaxBody-len(`{"access_token":"x","pad":""}`)) + `"}`
	if len(body) != MaxBody {
		t.Fatal(len(body))
	}
	if _, err := ParseTokenResponse(200, jsonHeader(), []byte(body), sent); err != nil {
		t.Fatalf("err = %v", err)
	}
}

func TestTokenTypeKeptAsSent(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		`"Bearer"`: "Bearer", `"bearer"`: "bearer", `"DPoP"`: "DPoP", `"N_A"`: "N_A",
		``: "", `null`: "", `""`: "", `5`: "5", `true`: "true", `{"a":1}`: `{"a":1}`,
	} {
		body := `{"access_token":"tok"`
		if raw != "" {
			body += `,"token_type":` + raw
		}
		body += `}`
		tok, err := ParseTokenResponse(200, jsonHeader(), []byte(body), sent)
		if err != nil || tok.TokenType != want {
			t.Errorf("token_type %s: got %q, %v; want %q", raw, tok.TokenType, err, want)
		}
	}
}

func idToken(t *testing.T, claims string) string {
	t.Helper()
	return "eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString([]byte(claims)) + ".c2ln"
}

func TestExtras(t *testing.T) {
	t.Parallel()
	at, rt := canary.JWT("at", 0), canary.New("rt")
	idt := idToken(t, `{"sub":"alice@example.com","exp":1}`)
	body := `{"access_token":"` + at + `","refresh_token":"` + rt + `","token_type":"Bearer","expires_in":3600,` +
		`"id_token":"` + idt + `","scope":"openid email","refresh_token_expires_in":"86400","custom":{"x":1}}`
	tok, err := ParseTokenResponse(200, jsonHeader(), []byte(body), sent)
	if err != nil {
		t.Fatal(err)
	}
	got := tokenx.Extras(tok, "custom", "access_token", "refresh_token", "expires_in", "token_type")
	want := map[string]any{
		"id_token":                   idt,
		"scope":                      "openid email",
		"refresh_token_expires_in":   "86400",
		tokenx.KeyRefreshTokenExpiry: sent.Add(24 * time.Hour),
		tokenx.KeySubject:            "alice@example.com",
		"custom":                     map[string]any{"x": float64(1)},
		"expires_in":                 float64(3600),
		"token_type":                 "Bearer",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("extras (-want +got):\n%s", d)
	}
	if tokenx.IDToken(tok) != idt || tokenx.Scope(tok) != "openid email" || !tokenx.RefreshTokenExpiry(tok).Equal(sent.Add(24*time.Hour)) {
		t.Error("tokenx accessors disagree")
	}
	if loc := tokenx.RefreshTokenExpiry(tok).Location(); loc != time.UTC {
		t.Errorf("refresh token expiry location %v", loc)
	}

	// Form encoding, array scope in JSON, unusable id_token / rt expiry.
	form := url.Values{"access_token": {at}, "scope": {"a b"}, "id_token": {"not-a-jwt"}, "refresh_token_expires_in": {"never"}}
	tok, err = ParseTokenResponse(200, formHeader(), []byte(form.Encode()), sent)
	if err != nil || tokenx.Scope(tok) != "a b" || tok.Extra(tokenx.KeySubject) != nil || !tokenx.RefreshTokenExpiry(tok).IsZero() {
		t.Fatalf("form extras: %v %v", tokenx.Extras(tok), err)
	}
	tok, err = ParseTokenResponse(200, jsonHeader(), []byte(`{"access_token":"x","scope":["a",2,"b"],"id_token":"`+idToken(t, `{"sub":5}`)+`"}`), sent)
	if err != nil || tokenx.Scope(tok) != "a b" || tok.Extra(tokenx.KeySubject) != nil {
		t.Fatalf("array scope: %v %v", tokenx.Extras(tok), err)
	}
}

func TestZeroSentMeansNow(t *testing.T) {
	t.Parallel()
	before := time.Now()
	tok, err := ParseTokenResponse(200, nil, []byte(`{"access_token":"x","expires_in":60}`), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if tok.Expiry.Before(before.Add(60*time.Second)) || tok.Expiry.After(time.Now().Add(60*time.Second)) {
		t.Fatalf("Expiry %v not now+60s", tok.Expiry)
	}
}

// TestTokenErrorsDoNotLeak: canary secrets in bodies that fail to parse, or
// in error responses, never reach error strings.
func TestTokenErrorsDoNotLeak(t *testing.T) {
	t.Parallel()
	at, rt, sec := canary.JWT("at", 0), canary.New("rt"), canary.New("secret")
	bodies := []struct {
		status int
		ct     string
		body   string
	}{
		{200, "application/json", `{"refresh_token":"` + rt + `","client_secret":"` + sec + `"}`},
		{200, "application/json", `{"refresh_token":"` + rt + `","access_token":"` + at + `",`},
		{200, "text/html", `<html><title>` + rt + `</title><body>` + at + sec + `</body></html>`},
		{200, "text/html", `<html><body>token ` + rt + ` secret=` + sec + `</body></html>`},
		{400, "application/json", `{"error":"invalid_grant","error_description":"refresh token ` + rt + ` was revoked (` + at + `)"}`},
		{400, "application/json", `{"error":"` + rt + `"}`},
		{401, "text/plain", `client ` + sec + ` unknown, refresh_token=` + rt},
		{502, "text/html", `<html><head><title>502 ` + rt + `</title></head></html>`},
		{500, "", strings.Repeat("x", 100) + " " + rt + " " + at},
	}
	for i, b := range bodies {
		_, err := ParseTokenResponse(b.status, http.Header{"Content-Type": {b.ct}}, []byte(b.body), sent)
		if err == nil {
			t.Fatalf("%d: no error", i)
		}
		if found := canary.Find(err.Error(), at, rt, sec); len(found) > 0 {
			t.Errorf("%d: %q leaks %d secret(s)", i, err.Error(), len(found))
		}
	}
}

// Every extra member of a parsed token is listed under tokenx.KeyExtraNames,
// so copies of the token (the token cache's public one) keep
// provider-specific members; the secrets with fields of their own are not
// among them.
func TestParseTokenResponseListsExtras(t *testing.T) {
	t.Parallel()
	body := `{"access_token":"at","refresh_token":"rt","token_type":"Bearer","expires_in":60,"instance_url":"https://na1.example.com","scope":"a b"}`
	tok, err := ParseTokenResponse(200, http.Header{"Content-Type": {"application/json"}}, []byte(body), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	got := tokenx.ExtraNames(tok)
	want := []string{"expires_in", "instance_url", "scope", "token_type"}
	if !slices.Equal(got, want) {
		t.Fatalf("listed extras = %v, want %v", got, want)
	}
	if m := tokenx.Extras(tok); m["instance_url"] != "https://na1.example.com" {
		t.Fatalf("tokenx.Extras lost instance_url: %v", m)
	}
}
