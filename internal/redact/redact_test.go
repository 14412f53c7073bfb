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
