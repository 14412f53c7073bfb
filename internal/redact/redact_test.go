package redact

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tokenward/tokenward/internal/canary"
)

func TestStringRemovesSecrets(t *testing.T) {
	t.Parallel()
	at := canary.JWT("at", 1700000000)
	rt := canary.New("rt")
	sec := canary.New("secret")
	cases := []string{
		"Authorization: Bearer " + rt,
		"bearer " + rt,
		"DPoP " + rt,
		"https://as.example/cb?code=" + rt + "&state=" + sec,
		"grant_type=refresh_token&refresh_token=" + rt + "&client_secret=" + sec,
		`{"access_token":"` + at + `","refresh_token": "` + rt + `","client_secret":"` + sec + `"}`,
		"token " + at + " was rejected",
		"code_verifier=" + sec,
		"ACCESS_TOKEN=" + rt,
	}
	for _, c := range cases {
		got := String(c)
		if f := canary.Find(got, at, rt, sec); len(f) != 0 {
			t.Errorf("String(%q) = %q still contains a secret", c, got)
		}
		if !strings.Contains(got, Placeholder) {
			t.Errorf("String(%q) = %q has no placeholder", c, got)
		}
	}
}

func TestStringKeepsPlainText(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "refresh: token endpoint returned 503", "grant_type=client_credentials&scope=read"} {
		if got := String(s); got != s {
			t.Errorf("String(%q) = %q, want unchanged", s, got)
		}
	}
}

func TestURLDropsQueryUserinfoFragment(t *testing.T) {
	t.Parallel()
	rt := canary.New("rt")
	u, _ := url.Parse("https://user:" + rt + "@as.example:8443/token?code=" + rt + "#access_token=" + rt)
	got := URL(u)
	if got != "https://as.example:8443/token" {
		t.Fatalf("URL = %q", got)
	}
	if URL(nil) != "" {
		t.Fatal("URL(nil) not empty")
	}
	if got := URLString("https://as.example/x?refresh_token=" + rt); strings.Contains(got, rt) {
		t.Fatalf("URLString leaked: %q", got)
	}
}

func TestHeaderAndValues(t *testing.T) {
	t.Parallel()
	rt := canary.New("rt")
	h := http.Header{"Authorization": {"Bearer " + rt}, "Cookie": {"s=" + rt}, "Dpop": {rt}, "X-Other": {"fine"}, "Set-Cookie": {rt}, "Proxy-Authorization": {rt}}
	red := Header(h)
	if f := canary.Find(fmt.Sprint(red), rt); len(f) != 0 {
		t.Fatalf("Header leaked: %v", red)
	}
	if red.Get("X-Other") != "fine" || h.Get("Authorization") != "Bearer "+rt {
		t.Fatal("Header changed the wrong values or mutated its input")
	}
	v := url.Values{"refresh_token": {rt}, "code": {rt}, "grant_type": {"refresh_token"}}
	rv := Values(v)
	if f := canary.Find(rv.Encode(), rt); len(f) != 0 || rv.Get("grant_type") != "refresh_token" {
		t.Fatalf("Values = %v", rv)
	}
}

func TestLogValuers(t *testing.T) {
	t.Parallel()
	rt := canary.New("rt")
	var b strings.Builder
	l := slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug}))
	u, _ := url.Parse("https://api.example/x?access_token=" + rt)
	l.Debug("req", "h", HeaderValue(http.Header{"Authorization": {"Bearer " + rt}}), "url", URLValue{u})
	if f := canary.Find(b.String(), rt); len(f) != 0 {
		t.Fatalf("log leaked: %s", b.String())
	}
}

func TestTruncate(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 400) + "\x00\n<html>"
	got := Truncate(long, 512)
	if len(got) > 512 || !strings.HasSuffix(got, "...") {
		t.Fatalf("len %d suffix %q", len(got), got[len(got)-5:])
	}
	if strings.ContainsAny(Truncate("a\nb\x00c", 100), "\n\x00") {
		t.Fatal("control characters kept")
	}
}

func FuzzString(f *testing.F) {
	f.Add("Bearer abc.def.ghi refresh_token=xyz")
	f.Add(`{"access_token":"eyJhbGciOi.x.y"}`)
	f.Fuzz(func(t *testing.T, s string) {
		out := String(s)
		if String(out) != out {
			t.Fatalf("not idempotent: %q -> %q -> %q", s, out, String(out))
		}
		_ = Truncate(s, 64)
	})
}

// N1: the word after an auth scheme name is redacted only when it looks
// like a credential. Prose stays intact; credentials of every shape,
// short opaque ones included, are still removed.
func TestSchemeProseAndCredentials(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		"only Bearer is supported",
		"transport: token type \"MAC\": only Bearer and DPoP are supported",
		"Basic authentication failed.",
		"Bearer tokens, Basic credentials and DPoP proofs",
		"the Bearer token was rejected",
		"Bearer Token required",
		"use Bearer, not Basic",
		"Basic auth is not allowed; use Bearer instead.",
		"a MAC address",
		"sent as a Bearer re-authentication hint",
		"Bearer REDACTED",
		`Bearer realm="api", error="invalid_token", error_description="The access token expired"`,
		`WWW-Authenticate: DPoP algs="ES256", error="use_dpop_nonce"`,
		`Basic realm="tokenward", charset="UTF-8"`,
	} {
		if got := String(s); got != s {
			t.Errorf("String(%q) = %q, want it unchanged", s, got)
		}
	}
	rt := canary.New("rt")
	for _, tt := range []struct{ in, secret string }{
		{"Authorization: Bearer " + rt, rt},
		{"Authorization: Bearer abc123", "abc123"}, // short opaque token
		{"bearer a1b2c3", "a1b2c3"},                // 6 characters
		{"Bearer x7", "x7"},                        // absurdly short, still not a word
		{"Bearer AbCdEf", "AbCdEf"},                // letters with an inner capital
		{"Bearer gho_16C7e42F292c6912E7710c838347Ae178B4a", "gho_16C7e42F292c6912E7710c838347Ae178B4a"},
		{"Bearer ya29.a0AfH6SMBx", "ya29.a0AfH6SMBx"},
		{"Bearer 3f2b6c1e-8a4d-4c1b-9e0f-7a6b5c4d3e2f", "3f2b6c1e-8a4d-4c1b-9e0f-7a6b5c4d3e2f"},
		{"Bearer abcdefghijklmnopqrstu", "abcdefghijklmnopqrstu"}, // letters only, but too long for a word
		{"Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"},                    // user:pass
		{"Basic YTpi", "YTpi"},                                    // a:b
		{"Basic YWRtaW46YWRtaW4=", "YWRtaW46YWRtaW4="},            // admin:admin
		{"DPoP " + rt, rt},
		{"Bearer Bearer abc123", "abc123"}, // a kept word is scanned again
		{"only Bearer is supported, got Bearer s3cr3t", "s3cr3t"},
		{"Bearer error=invalid_token_and_more", "error=invalid_token_and_more"}, // unquoted: not taken for an auth-param
	} {
		got := String(tt.in)
		if strings.Contains(got, tt.secret) || !strings.Contains(got, Placeholder) {
			t.Errorf("String(%q) = %q, want %q redacted", tt.in, got, tt.secret)
		}
		if String(got) != got {
			t.Errorf("String not idempotent on %q: %q -> %q", tt.in, got, String(got))
		}
	}
}
