package httpretry

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tokenward/tokenward/internal/canary"
)

// Canary secrets in the request URL (user info, query, fragment) and in
// the errors of attempts (a URL with a query, a bearer token) never reach
// the log, in text or JSON, at any level; the messages carry the user's
// prefix and name the library.
func TestLoggerRedactsEngineMessages(t *testing.T) {
	t.Parallel()
	userinfo, queryAT, queryPlain, fragment := canary.New("pw"), canary.JWT("at", 0), canary.New("q"), canary.New("frag")
	errQuery, errToken := canary.New("key"), canary.New("bearer")
	secrets := []string{userinfo, queryAT, queryPlain, fragment, errQuery, errToken}
	rawURL := "https://" + url.UserPassword("me", userinfo).String() + "@as.example/token?access_token=" + queryAT + "&q=" + queryPlain + "#" + fragment

	var text, js canary.Log
	opts := &slog.HandlerOptions{Level: slog.LevelDebug}
	logText := slog.New(slog.NewTextHandler(&text, opts))
	logJSON := slog.New(slog.NewJSONHandler(&js, opts))
	for _, logger := range []*slog.Logger{logText, logJSON} {
		synctest.Test(t, func(t *testing.T) {
			rt := &fakeRT{answer: func(n int, r *http.Request) (*http.Response, error) {
				switch n {
				case 0:
					return respond(r, 503, nil, ""), nil
				case 1:
					return nil, &net.OpError{Op: "read", Net: "tcp", Err: fmt.Errorf("proxy https://proxy.example/p?k=%s said: Authorization: Bearer %s: %w", errQuery, errToken, syscall.ECONNRESET)}
				}
				return respond(r, 200, nil, ""), nil
			}}
			e := &Engine{HTTPClient: &http.Client{Transport: rt}, MaxRetries: 3, WaitMin: time.Millisecond, WaitMax: time.Millisecond, Budget: time.Minute,
				Logger: logger, LogPrefix: "test: engine: "}
			req, err := http.NewRequestWithContext(t.Context(), "GET", rawURL, nil)
			if err != nil {
				t.Fatal(err)
			}
			res, err := e.Do(req, nil, always)
			if err != nil {
				t.Fatal(err)
			}
			res.Response.Body.Close()
		})
	}
	out := text.String() + js.String()

	// The test must be able to fail: the canaries are findable in what was
	// sent, and the scenarios logged at debug and error level.
	if len(canary.Find(rawURL, secrets[:4]...)) != 4 {
		t.Fatal("canary.Find cannot find the canaries")
	}
	for _, want := range []string{"level=DEBUG", "level=ERROR", "test: engine: performing request", "test: engine: retrying request",
		"test: engine: request failed", "lib=go-retryablehttp", `"lib":"go-retryablehttp"`, "https://as.example/token", "connection reset by peer"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in the log:\n%s", want, out)
		}
	}
	if found := canary.Find(out, secrets...); len(found) != 0 {
		t.Errorf("%d secrets in the log:\n%s", len(found), out)
	}
}

// Each kind of value go-retryablehttp (or a future version of it) may log
// is rendered without its secrets.
func TestLoggerValues(t *testing.T) {
	t.Parallel()
	sec, jwt := canary.New("sec"), canary.JWT("at", 0)
	u, _ := url.Parse("https://as.example/token?client_secret=" + sec + "&x=" + sec)
	tests := []struct {
		name string
		in   any
		want string
	}{
		{"URL string", "https://u:" + sec + "@as.example/p?x=" + sec, "https://as.example/p"},
		{"URL in text", "POST https://as.example/token?code=" + sec + " (status: 503)", "POST https://as.example/token (status: 503)"},
		{"*url.URL", u, "https://as.example/token"},
		{"url.Error", &url.Error{Op: "Post", URL: u.String(), Err: errors.New("EOF")}, "EOF"},
		{"wrapped url.Error", fmt.Errorf("attempt: %w", &url.Error{Op: "Post", URL: u.String(), Err: errors.New("EOF")}), "EOF"},
		{"bearer in an error", errors.New("said Bearer " + jwt), "said Bearer REDACTED"},
		{"form text", "grant_type=refresh_token&refresh_token=" + sec, "grant_type=refresh_token&refresh_token=REDACTED"},
		{"Stringer", stringer("see https://as.example/p?x=" + sec), "see https://as.example/p"},
		{"int", 3, "3"},
		{"int64", int64(4), "4"},
		{"bool", true, "true"},
		{"duration", 1500 * time.Millisecond, "1.5s"},
		{"nil", nil, ""},
	}
	for _, tt := range tests {
		v := logValue(tt.in)
		if got := v.String(); got != tt.want {
			t.Errorf("%s: logged %q, want %q", tt.name, got, tt.want)
		}
		if found := canary.Find(v.String(), sec, jwt); len(found) != 0 {
			t.Errorf("%s: a secret is logged: %q", tt.name, v.String())
		}
	}
	if got := logValue(strings.Repeat("x", 4*maxLogValue)).String(); len(got) > maxLogValue {
		t.Errorf("a long value is logged with %d bytes, want at most %d", len(got), maxLogValue)
	}
}

type stringer string

func (s stringer) String() string { return string(s) }

// A nil Logger logs nothing and does not fail.
func TestLoggerNil(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rt := &fakeRT{answer: failThenOK(1, 503)}
		e := &Engine{HTTPClient: &http.Client{Transport: rt}, MaxRetries: 1, WaitMin: time.Millisecond, WaitMax: time.Millisecond}
		res, err := e.Do(newRequest(t, t.Context(), "GET"), nil, always)
		if err != nil || res.Attempts != 2 {
			t.Fatalf("Do = %v after %d attempts", err, res.Attempts)
		}
		res.Response.Body.Close()
	})
}
