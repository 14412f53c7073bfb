package oauthwire

import (
	"encoding/json"
	"github.com/tokenward/tokenward/internal/httpretry"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tokenward/tokenward/internal/redact"
)

// secretWords returns the runs of token characters in input that sanitize
// promises never to echo (20+ characters with a digit, or 40+).
func secretWords(input string) []string {
	var out []string
	for _, w := range longWordRe.FindAllString(input, -1) {
		if len(w) >= 40 || strings.ContainsAny(w, "0123456789") {
			out = append(out, w)
		}
	}
	return out
}

func checkErrorSafe(t *testing.T, err error, input string) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	if len(msg) > 512 || !utf8.ValidString(msg) {
		t.Fatalf("error string unbounded or invalid UTF-8 (%d bytes)", len(msg))
	}
	for _, w := range secretWords(input) {
		if strings.Contains(msg, w) {
			t.Fatalf("error %q echoes input word %q", msg, w)
		}
	}
}

func FuzzParseTokenResponse(f *testing.F) {
	f.Add(200, "application/json", []byte(`{"access_token":"at","token_type":"Bearer","expires_in":3600,"refresh_token":"rt"}`), "3600")
	f.Add(200, "application/json", []byte(`{"access_token":"at","expires_in":"3599.5","id_token":"eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.c2ln"}`), `"3599.5"`)
	f.Add(200, "application/x-www-form-urlencoded", []byte("access_token=at&expires_in=1e300&scope=a+b"), "null")
	f.Add(200, "text/html", []byte("<html><title>twcanary-rt-00112233445566778899aabbccddeeff</title></html>"), "-1")
	f.Add(400, "application/json", []byte(`{"error":"invalid_grant","error_description":"twcanary-rt-00112233445566778899aabbccddeeff"}`), "garbage")
	f.Add(200, "application/json", []byte(`{"access_token":"a","scope":["x",1]}`), "1099511627776")
	f.Fuzz(func(t *testing.T, status int, ct string, body []byte, expiresIn string) {
		h := http.Header{"Content-Type": {ct}}
		tok, err := ParseTokenResponse(status, h, body, sent)
		checkErrorSafe(t, err, string(body))
		if err == nil {
			if !validAccessToken(tok.AccessToken) {
				t.Fatalf("invalid access token accepted: %q", tok.AccessToken)
			}
			if !tok.Expiry.IsZero() && (tok.Expiry.Before(sent.Add(time.Second)) || tok.Expiry.After(sent.Add(MaxExpiresIn))) {
				t.Fatalf("Expiry %v out of range", tok.Expiry)
			}
			if tok.Extra("access_token") != nil || tok.Extra("refresh_token") != nil {
				t.Fatal("secrets copied into extras")
			}
		}
		// Property: a valid access_token is never thrown away, whatever
		// expires_in holds (as a JSON value, a JSON string, or a form value).
		raw := expiresIn
		if !json.Valid([]byte(raw)) {
			b, _ := json.Marshal(expiresIn)
			raw = string(b)
		}
		for _, c := range []struct{ ct, body string }{
			{"application/json", `{"access_token":"tok-1","refresh_token":"rt-1","expires_in":` + raw + `}`},
			{"application/x-www-form-urlencoded", url.Values{"access_token": {"tok-1"}, "refresh_token": {"rt-1"}, "expires_in": {expiresIn}}.Encode()},
		} {
			tok, err := ParseTokenResponse(200, http.Header{"Content-Type": {c.ct}}, []byte(c.body), sent)
			if err != nil || tok.AccessToken != "tok-1" || tok.RefreshToken != "rt-1" {
				t.Fatalf("%s: valid token thrown away (expires_in %q): %v", c.ct, expiresIn, err)
			}
			if tok.ExpiresIn < 0 || time.Duration(tok.ExpiresIn)*time.Second > MaxExpiresIn {
				t.Fatalf("ExpiresIn %d out of range", tok.ExpiresIn)
			}
		}
	})
}

func FuzzParseErrorResponse(f *testing.F) {
	f.Add(400, "application/json", "", []byte(`{"error":"invalid_grant","error_description":"expired","error_uri":"https://as/e?code=x"}`))
	f.Add(503, "application/json", "30", []byte(`{"error":"temporarily_unavailable"}`))
	f.Add(502, "text/html", "", []byte("<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"))
	f.Add(429, "text/plain", "Wed, 21 Oct 2015 07:28:00 GMT", []byte("slow down"))
	f.Add(400, "application/x-www-form-urlencoded", "", []byte("error=slow_down&error_description=twcanary-rt-00112233445566778899aabbccddeeff"))
	f.Add(500, "", "", []byte("\x00\xff<title>"))
	f.Fuzz(func(t *testing.T, status int, ct, retryAfter string, body []byte) {
		h := http.Header{"Content-Type": {ct}, "Retry-After": {retryAfter}}
		e := ParseErrorResponse(status, h, body)
		if e == nil || e.StatusCode != status {
			t.Fatal("no error value")
		}
		checkErrorSafe(t, e, string(body))
		if msg := e.Error(); redact.Terminal(msg) != msg {
			t.Fatalf("Error() %q holds characters a terminal could act on", msg)
		}
		for _, s := range []string{e.Code, e.Description, e.URI, e.Excerpt} {
			if !utf8.ValidString(s) || len(s) > maxDescLen {
				t.Fatalf("field unbounded: %q", s)
			}
			if redact.Terminal(s) != s {
				t.Fatalf("field %q holds characters a terminal could act on", s)
			}
			for _, w := range secretWords(string(body)) {
				if strings.Contains(s, w) {
					t.Fatalf("field %q echoes %q", s, w)
				}
			}
		}
		if e.RetryAfter < 0 || e.RetryAfter > httpretry.MaxRetryAfter {
			t.Fatalf("RetryAfter %v", e.RetryAfter)
		}
	})
}

func FuzzParseDiscovery(f *testing.F) {
	f.Add([]byte(`{"issuer":"https://as.example.com","token_endpoint":"https://as.example.com/token","grant_types_supported":["refresh_token"]}`), "https://as.example.com")
	f.Add([]byte(`{"issuer":"https://evil.example.com"}`), "https://as.example.com")
	f.Add([]byte(`{"issuer":"http://127.0.0.1:1","authorization_endpoint":"javascript:x"}`), "http://127.0.0.1:1")
	f.Add([]byte(`{"issuer":"https://twcanary-rt-00112233445566778899aabbccddeeff.example"}`), "https://as")
	f.Fuzz(func(t *testing.T, body []byte, want string) {
		d, err := ParseDiscovery(body, want)
		checkErrorSafe(t, err, string(body))
		if err != nil {
			return
		}
		if d.Issuer != want {
			t.Fatalf("issuer %q accepted for %q", d.Issuer, want)
		}
		for name, ep := range d.Endpoints() {
			if checkAbsolute(ep) != nil {
				t.Fatalf("%s %q is not absolute", name, ep)
			}
		}
	})
}

func FuzzParseDeviceAuthResponse(f *testing.F) {
	f.Add([]byte(`{"device_code":"dc","user_code":"U","verification_uri":"https://as/d","interval":5,"expires_in":600}`))
	f.Add([]byte(`device_code=dc&user_code=U&verification_url=https://as/d&interval=0`))
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := ParseDeviceAuthResponse(200, http.Header{"Content-Type": {"application/json"}}, body, sent)
		checkErrorSafe(t, err, string(body))
		if err != nil {
			return
		}
		if d.DeviceCode == "" || d.UserCode == "" || !isWebURL(d.VerificationURI) ||
			d.Interval < time.Second || d.Interval > MaxDeviceInterval || d.ExpiresIn <= 0 || d.ExpiresIn > MaxDeviceExpiresIn {
			t.Fatalf("bad result %+v", d)
		}
	})
}
