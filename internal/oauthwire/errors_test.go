package oauthwire

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenward/tokenward/internal/canary"
	"github.com/tokenward/tokenward/internal/redact"
)

func TestParseErrorResponse(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name   string
		status int
		h      http.Header
		body   string
		want   Error
	}{
		{
			name: "rfc 6749 json", status: 400, h: jsonHeader(),
			body: `{"error":"invalid_grant","error_description":"Refresh token expired","error_uri":"https://as.example/errors?id=5#x"}`,
			want: Error{StatusCode: 400, Code: "invalid_grant", Description: "Refresh token expired", URI: "https://as.example/errors", ContentType: "application/json"},
		},
		{
			name: "503 json with retry-after seconds", status: 503,
			h:    http.Header{"Content-Type": {"application/json"}, "Retry-After": {"120"}},
			body: `{"error":"temporarily_unavailable"}`,
			want: Error{StatusCode: 503, Code: "temporarily_unavailable", RetryAfter: 2 * time.Minute, ContentType: "application/json"},
		},
		{
			name: "429 with http-date", status: 429,
			h:    http.Header{"Content-Type": {"text/plain"}, "Retry-After": {now.Add(90 * time.Second).Format(http.TimeFormat)}},
			body: "Too Many Requests",
			want: Error{StatusCode: 429, RetryAfter: 90 * time.Second, ContentType: "text/plain", Excerpt: "Too Many Requests"},
		},
		{
			name: "502 html page", status: 502, h: http.Header{"Content-Type": {"text/html; charset=utf-8"}},
			body: "<!DOCTYPE html>\n<html><head><title>502 Bad\n Gateway</title><style>x{}</style></head><body><h1>nginx</h1></body></html>",
			want: Error{StatusCode: 502, ContentType: "text/html", Excerpt: "502 Bad Gateway"},
		},
		{
			name: "html without title", status: 500, h: http.Header{"Content-Type": {"text/html"}},
			body: "<html><script>var secret=1;</script><body><p>Internal &amp; error</p></body></html>",
			want: Error{StatusCode: 500, ContentType: "text/html", Excerpt: "Internal & error"},
		},
		{
			name: "form encoded error", status: 400, h: formHeader(),
			body: "error=invalid_client&error_description=bad+client",
			want: Error{StatusCode: 400, Code: "invalid_client", Description: "bad client", ContentType: "application/x-www-form-urlencoded"},
		},
		{
			name: "json without error member", status: 500, h: jsonHeader(),
			body: `{"message":"boom"}`,
			want: Error{StatusCode: 500, ContentType: "application/json", Excerpt: `{"message":"boom"}`},
		},
		{
			name: "json with non-string error", status: 400, h: jsonHeader(),
			body: `{"error":{"code":400}}`,
			want: Error{StatusCode: 400, ContentType: "application/json", Excerpt: `{"error":{"code":400}}`},
		},
		{
			name: "invalid retry-after ignored", status: 503, h: http.Header{"Retry-After": {"soon"}},
			body: "",
			want: Error{StatusCode: 503},
		},
		{
			name: "control characters", status: 400, h: jsonHeader(),
			body: `{"error":"invalid_request","error_description":"line1\nline2\u0000\u001b[31m"}`,
			want: Error{StatusCode: 400, Code: "invalid_request", Description: "line1 line2  [31m", ContentType: "application/json"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got := parseErrorResponse(c.status, c.h, []byte(c.body), now)
			if d := cmp.Diff(&c.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
			// The message names no package: it reaches users inside the
			// client's, which say which operation got the answer.
			if msg := got.Error(); len(msg) > 512 || strings.Contains(msg, "oauthwire") || !strings.Contains(msg, fmt.Sprintf("HTTP %d", c.status)) {
				t.Errorf("Error() = %q", msg)
			}
		})
	}
}

func TestErrorStringAndMethods(t *testing.T) {
	t.Parallel()
	e := ParseErrorResponse(400, jsonHeader(), []byte(`{"error":"invalid_grant","error_description":"expired"}`))
	if got, want := e.Error(), "invalid_grant (HTTP 400): expired"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if s, c, d := e.OAuthError(); s != 400 || c != "invalid_grant" || d != "expired" {
		t.Errorf("OAuthError() = %d %q %q", s, c, d)
	}
	if e.Temporary() {
		t.Error("invalid_grant is not temporary")
	}
	e = ParseErrorResponse(502, http.Header{"Content-Type": {"text/html"}, "Retry-After": {"3"}}, []byte("<title>Bad Gateway</title>"))
	if got, want := e.Error(), "HTTP 502 (text/html): Bad Gateway; retry after 3s"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !e.Temporary() {
		t.Error("502 is temporary")
	}
	for _, c := range []struct {
		status int
		code   string
		temp   bool
	}{{429, "", true}, {400, "slow_down", true}, {400, "temporarily_unavailable", true}, {401, "invalid_client", false}, {404, "", false}} {
		if got := (&Error{StatusCode: c.status, Code: c.code}).Temporary(); got != c.temp {
			t.Errorf("Temporary(%d, %q) = %v", c.status, c.code, got)
		}
	}
	// Interface the refresh cache classifies by.
	var _ interface {
		OAuthError() (int, string, string)
	} = e
}

// TestErrorNeverLeaks: canary secrets placed anywhere in error bodies never
// reach Error(), any field, or %+v of the value; lengths stay bounded.
func TestErrorNeverLeaks(t *testing.T) {
	t.Parallel()
	at, rt, sec, code := canary.JWT("at", 0), canary.New("rt"), canary.New("secret"), canary.New("code")
	secrets := []string{at, rt, sec, code}
	long := strings.Repeat("lorem ipsum ", 200)
	bodies := []string{
		`{"error":"invalid_grant","error_description":"bad refresh token ` + rt + `"}`,
		`{"error":"invalid_grant","error_description":"` + long + rt + `"}`,
		`{"error":"` + rt + `","error_description":"x","error_uri":"https://as/err?refresh_token=` + rt + `&code=` + code + `"}`,
		`{"error":"invalid_client","error_description":"client_secret=` + sec + `"}`,
		`{"error":"invalid_request","error_description":"Bearer ` + at + `"}`,
		`{"message":"` + rt + `"}`,
		`<html><title>` + rt + `</title></html>`,
		`<html><title>Error</title><body>` + rt + `</body></html>`,
		`<html><body><p>` + sec + `</p></body></html>`,
		"error=invalid_grant&error_description=" + rt,
		rt,
		at,
		long + " " + rt,
		"upstream said: " + sec + " / " + code,
		`{"error":"invalid_grant","error_description":"` + strings.Repeat("é", 300) + rt + `"}`,
	}
	for i, b := range bodies {
		for _, ct := range []string{"application/json", "text/html", "text/plain", ""} {
			e := ParseErrorResponse(400, http.Header{"Content-Type": {ct}}, []byte(b))
			for what, s := range map[string]string{
				"Error()": e.Error(), "%+v": fmt.Sprintf("%+v", e), "Code": e.Code,
				"Description": e.Description, "URI": e.URI, "Excerpt": e.Excerpt,
			} {
				if found := canary.Find(s, secrets...); len(found) > 0 {
					t.Errorf("body %d (%s): %s = %q leaks", i, ct, what, s)
				}
			}
			if len(e.Error()) > 512 || !utf8.ValidString(e.Error()) || len(e.Description) > 256 || len(e.Code) > 64 {
				t.Errorf("body %d: unbounded: %d %d %d", i, len(e.Error()), len(e.Description), len(e.Code))
			}
		}
	}
}

func TestSanitizeKeepsProse(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"The refresh token has expired.":                    "The refresh token has expired.",
		"authorization_pending":                             "authorization_pending",
		"see https://docs.example.com/errors/invalid_grant": "see https://docs.example.com/errors/invalid_grant",
		"request id 4f1c2a9e8b7d6c5e4f3a2b1c":               "request id REDACTED",
		"  many \n\t spaces  ":                              "many spaces",
	} {
		if got := sanitize(in, 256); got != want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, want)
		}
	}
}

// Server text that a terminal could act on is escaped where it is
// sanitized, so the client's error messages can be printed as they are:
// C1 controls (an 8-bit CSI in UTF-8), bidi overrides and other format
// characters show as \u escapes; C0 controls (ESC) and invalid UTF-8
// become spaces; secrets next to an escape are still removed.
func TestSanitizeEscapesTerminalControls(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"scope \u009b2J\u009d0;pwned\u009c refused": `scope \u009b2J\u009d0;pwned\u009c refused`,
		"evil \u202eevil\u202c end":                 `evil \u202eevil\u202c end`,
		"red \x1b[31mtext\xff":                      "red  [31mtext",
		"\u200bzero width":                          `\u200bzero width`,
		"id \u202eabcdefghijklmn1":                  `id \REDACTED`,
	} {
		got := sanitize(in, 256)
		if got != want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, want)
		}
		if redact.Terminal(got) != got {
			t.Errorf("sanitize(%q) = %q is not safe on a terminal", in, got)
		}
	}
	e := ParseErrorResponse(400, jsonHeader(), []byte(`{"error":"invalid_scope","error_description":"scope \u009b2J refused \u202eevil"}`))
	if want := `invalid_scope (HTTP 400): scope \u009b2J refused \u202eevil`; e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
}

func TestParseErrorResponseHugeBody(t *testing.T) {
	t.Parallel()
	body := []byte("<html>" + strings.Repeat("<p>filler text</p>", MaxBody/8) + "</html>")
	e := ParseErrorResponse(502, nil, body)
	if len(e.Error()) > 512 || e.StatusCode != 502 {
		t.Fatalf("Error() = %q", e.Error())
	}
	if !errors.As(error(e), new(*Error)) {
		t.Fatal("not an *Error")
	}
}
