package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tokenward/tokenward/internal/redact"
	"github.com/tokenward/tokenward/oauthtest"
)

// silentDevicePrompt makes the fixture's Clients show device codes to
// nobody: the fake server approves them by itself.
var silentDevicePrompt = withOptions(func(o *Options) { o.DevicePrompt = waitForCancel })

func TestDeviceLogin(t *testing.T) {
	t.Parallel()
	c := newFixture(t, oauthtest.Config{DeviceInterval: 1e9, DevicePendingPolls: 1}).client(t)
	if err := c.Login(t.Context(), WithDevice()); err != nil {
		t.Fatalf("Login: %v", err)
	}
	tok, err := c.Token(t.Context())
	if err != nil || tok.AccessToken == "" || tok.RefreshToken != "" {
		t.Fatalf("Token = %+v, %v", tok, err)
	}
}

// Device flow: each poll is one POST, never replayed (the device code is
// a credential, and a replayed poll reads as polling too fast). The recorder sees
// every POST on the wire, retries included. The fault hits the second poll,
// after the first one set the server's last-poll time, so a replay shows
// twice: as an extra POST sooner than the interval after the faulted one,
// and (when the fault answers after processing) as a slow_down.
func TestDevicePollsNotReplayed(t *testing.T) {
	t.Parallel()
	const interval = 5 * time.Second
	for _, f := range []oauthtest.Fault{
		{Kind: oauthtest.FaultUnavailable},
		{Kind: oauthtest.FaultUnavailable, After: true},
		{Kind: oauthtest.FaultBadGateway},
		{Kind: oauthtest.FaultReset},
		{Kind: oauthtest.FaultResponseLost},
	} {
		name := f.Kind.String()
		if f.After {
			name += "-after"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				fx := newFixture(t, oauthtest.Config{DevicePendingPolls: 2, DeviceInterval: interval}, inMemory(), recordWire(), silentDevicePrompt)
				as, c, rec := fx.as, fx.client(t), fx.wire
				f.Endpoint, f.Grant, f.Times = oauthtest.EndpointToken, oauthtest.GrantDeviceCode, 1
				rec.onPost(func(p wirePost) {
					if p.grant() == oauthtest.GrantDeviceCode && p.n == 2 {
						as.InjectFault(f)
					}
				})
				if err := c.Login(t.Context(), WithDevice()); err != nil {
					t.Fatalf("Login: %v", err)
				}
				// pending, fault, pending, success; a fault after
				// processing counts as the second pending poll.
				want := 4
				if f.After || f.Kind == oauthtest.FaultResponseLost {
					want = 3
				}
				assertPollsSpaced(t, rec, interval, want)
				st := as.Stats()
				if st.Faults[f.Kind] != 1 {
					t.Fatalf("the %s fault fired %d times, want 1", f.Kind, st.Faults[f.Kind])
				}
				if st.SlowDowns != 0 {
					t.Fatalf("slow_downs = %d: a poll was replayed early", st.SlowDowns)
				}
			})
		})
	}
}

// assertPollsSpaced checks that want device polls went on the wire, the
// first at least interval after the device authorization request and each
// at least interval after the previous one.
func assertPollsSpaced(t *testing.T, rec *wireRecorder, interval time.Duration, want int) {
	t.Helper()
	auth := rec.posts(oauthtest.PathDeviceAuthorization, "")
	polls := rec.posts(oauthtest.PathToken, oauthtest.GrantDeviceCode)
	if len(auth) != 1 {
		t.Fatalf("%d device authorization requests, want 1", len(auth))
	}
	at := []time.Time{auth[0].at}
	for _, p := range polls {
		at = append(at, p.at)
	}
	for i := 1; i < len(at); i++ {
		if d := at[i].Sub(at[i-1]); d < interval {
			t.Errorf("poll %d went out %v after the previous request, want >= %v (a replay?)", i, d, interval)
		}
	}
	if len(polls) != want {
		t.Errorf("%d device-poll POSTs on the wire, want exactly %d", len(polls), want)
	}
}

// deviceTimes returns when the recorded device polls were sent.
func deviceTimes(rec *wireRecorder) []time.Time {
	var at []time.Time
	for _, p := range rec.posts(oauthtest.PathToken, oauthtest.GrantDeviceCode) {
		at = append(at, p.at)
	}
	return at
}

// The device flow's timing (RFC 8628): pending x3 then success, polls
// spaced at least the interval; slow_down twice adds 10 s for good; denied
// and expired are typed.
func TestDeviceFlowTiming(t *testing.T) {
	t.Parallel()
	t.Run("pending", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := newFixture(t, oauthtest.Config{DevicePendingPolls: 3, DeviceInterval: 5 * time.Second}, inMemory(), recordWire(), silentDevicePrompt)
			c, rec := f.client(t), f.wire
			if err := c.Login(t.Context(), WithDevice()); err != nil {
				t.Fatal(err)
			}
			at := deviceTimes(rec)
			if len(at) != 4 {
				t.Fatalf("%d polls, want 4", len(at))
			}
			for i := 1; i < len(at); i++ {
				if d := at[i].Sub(at[i-1]); d < 5*time.Second {
					t.Fatalf("poll %d came %v after the previous one, want >= 5s", i, d)
				}
			}
		})
	})
	t.Run("slow_down", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := newFixture(t, oauthtest.Config{DevicePendingPolls: 4, DeviceInterval: 5 * time.Second}, inMemory(), recordWire(), silentDevicePrompt)
			as, c, rec := f.as, f.client(t), f.wire
			as.SlowDownNext(2)
			if err := c.Login(t.Context(), WithDevice()); err != nil {
				t.Fatal(err)
			}
			at := deviceTimes(rec)
			gaps := make([]time.Duration, 0, len(at))
			for i := 1; i < len(at); i++ {
				gaps = append(gaps, at[i].Sub(at[i-1]))
			}
			// Polls 1 and 2 get slow_down: the interval goes 5 -> 10 -> 15 s
			// and stays there.
			want := []time.Duration{10 * time.Second, 15 * time.Second, 15 * time.Second, 15 * time.Second}
			if len(gaps) < len(want) {
				t.Fatalf("gaps %v", gaps)
			}
			for i, w := range want {
				if gaps[i] != w {
					t.Fatalf("gaps %v, want %v...", gaps, want)
				}
			}
		})
	})
	t.Run("denied", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := newFixture(t, oauthtest.Config{DeviceManualApproval: true}, inMemory(), silentDevicePrompt)
			as, c := f.as, f.client(t)
			go func() {
				for len(as.Devices()) == 0 {
					time.Sleep(time.Second) // fake time: the bubble's clock
				}
				as.DenyDevice("")
			}()
			if err := c.Login(t.Context(), WithDevice()); !errors.Is(err, ErrAccessDenied) {
				t.Fatalf("Login = %v, want ErrAccessDenied", err)
			}
		})
	})
	t.Run("expired", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c := newFixture(t, oauthtest.Config{DeviceManualApproval: true, DeviceCodeLifetime: time.Minute}, inMemory(), silentDevicePrompt).client(t)
			start := time.Now()
			if err := c.Login(t.Context(), WithDevice()); !errors.Is(err, ErrLoginExpired) {
				t.Fatalf("Login = %v, want ErrLoginExpired", err)
			}
			if d := time.Since(start); d > time.Minute+5*time.Second {
				t.Fatalf("polling went on for %v after a 1m code", d)
			}
		})
	})
}

// A device poll that times out is one POST: polling goes on at the interval
// and succeeds. The hang hits the second poll (the first set the server's
// last-poll time). Two timeouts: the call's total one (HTTP.Timeout), and a
// per-attempt one in the base transport (as http.Transport's
// ResponseHeaderTimeout), which go-retryablehttp would retry at once if
// polls were replayable. The server runs in memory on fake time, so the
// 300 ms timeouts fire only for the hung poll, however loaded the machine.
func TestDevicePollTimeoutNotReplayed(t *testing.T) {
	t.Parallel()
	const interval = time.Second
	for _, tc := range []struct {
		name          string
		total, header time.Duration
	}{
		{"call-timeout", 300 * time.Millisecond, 0},
		{"attempt-timeout", 10 * time.Second, 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				opts := []fixtureOption{inMemory(), recordWire(), silentDevicePrompt,
					withOptions(func(o *Options) { o.HTTP.Timeout = tc.total })}
				if tc.header > 0 {
					opts = append(opts, wrapTransport(func(base http.RoundTripper) http.RoundTripper {
						return attemptTimeout{base: base, d: tc.header}
					}))
				}
				f := newFixture(t, oauthtest.Config{DeviceInterval: interval, DevicePendingPolls: 2}, opts...)
				as, rec := f.as, f.wire
				rec.onPost(func(p wirePost) {
					if p.grant() == oauthtest.GrantDeviceCode && p.n == 2 {
						as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultHang, Endpoint: oauthtest.EndpointToken, Grant: oauthtest.GrantDeviceCode, Times: 1})
					}
				})
				c := f.client(t)
				if err := c.Login(t.Context(), WithDevice()); err != nil {
					t.Fatalf("Login: %v", err)
				}
				// pending, timeout, pending, success.
				assertPollsSpaced(t, rec, interval, 4)
				st2 := as.Stats()
				if st2.Faults[oauthtest.FaultHang] != 1 {
					t.Fatalf("the hang fired %d times, want 1", st2.Faults[oauthtest.FaultHang])
				}
				if st2.SlowDowns != 0 {
					t.Fatalf("slow_downs = %d: a timed-out poll was replayed early", st2.SlowDowns)
				}
			})
		})
	}
}

// attemptTimeout bounds each attempt the way http.Transport's
// ResponseHeaderTimeout does: no response within d fails the attempt with
// a timeout (a net.Error), while the call's own context goes on.
type attemptTimeout struct {
	base http.RoundTripper
	d    time.Duration
}

func (a attemptTimeout) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(req.Context(), a.d)
	resp, err := a.base.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		if req.Context().Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			return nil, attemptTimeoutError{}
		}
		return nil, err
	}
	resp.Body = cancelOnClose{resp.Body, cancel}
	return resp, nil
}

// attemptTimeoutError is the net.Error of a timed-out attempt.
type attemptTimeoutError struct{}

func (attemptTimeoutError) Error() string   { return "net/http: timeout awaiting response headers" }
func (attemptTimeoutError) Timeout() bool   { return true }
func (attemptTimeoutError) Temporary() bool { return true }

// cancelOnClose releases an attempt's context when its body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// deviceRewrite forwards requests to base and replaces members of the
// device authorization response: a server sending what the test needs.
type deviceRewrite struct {
	base http.RoundTripper
	set  map[string]any
}

// RoundTrip forwards req and rewrites a device authorization answer.
func (d deviceRewrite) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := d.base.RoundTrip(req)
	if err != nil || req.URL.Path != oauthtest.PathDeviceAuthorization || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return nil, err
	}
	for k, v := range d.set {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	resp.Header.Del("Content-Length")
	return resp, nil
}

// deviceLoginShowing runs a device login, inside a synctest bubble, against
// an in-memory fake server whose device authorization response has the
// members of set replaced. It returns what the default prompt printed.
func deviceLoginShowing(t *testing.T, set map[string]any) (*oauthtest.Server, string, error) {
	t.Helper()
	var prompt syncBuffer
	f := newFixture(t, oauthtest.Config{DeviceInterval: time.Second}, inMemory(),
		wrapTransport(func(base http.RoundTripper) http.RoundTripper { return deviceRewrite{base: base, set: set} }),
		withOptions(func(o *Options) { o.Prompt = &prompt }))
	c := f.client(t)
	err := c.Login(t.Context(), WithDevice())
	return f.as, prompt.String(), err
}

// A device authorization response that would show the user something
// unsafe is refused before anything is printed or polled: an over-long user
// code, a user code with control or invisible characters, an address that
// is not https or holds such characters. The error names the field, not
// its value, and is itself safe to print.
func TestDeviceResponseRefused(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		set      map[string]any
		insecure bool // also ErrInsecureURL
	}{
		{name: "user code too long", set: map[string]any{"user_code": strings.Repeat("B", maxUserCode+1)}},
		{name: "escape in user code", set: map[string]any{"user_code": "BCDF\x1b[2J\x1b]0;pwned\a-GHJK"}},
		{name: "hyperlink in user code", set: map[string]any{"user_code": "\x1b]8;;https://evil.example\x1b\\BCDF-GHJK\x1b]8;;\x1b\\"}},
		{name: "carriage return in user code", set: map[string]any{"user_code": "XXXX-XXXX\rBCDF-GHJK"}},
		{name: "8-bit CSI in user code", set: map[string]any{"user_code": "BCDF\u009b2J-GHJK"}},
		{name: "bidi override in user code", set: map[string]any{"user_code": "BCDF-\u202eKJHG"}},
		{name: "http verification_uri", set: map[string]any{"verification_uri": "http://as.example/device"}, insecure: true},
		{name: "http verification_uri_complete", set: map[string]any{"verification_uri_complete": "http://as.example/device?user_code=BCDF-GHJK"}, insecure: true},
		{name: "bidi override in verification_uri", set: map[string]any{"verification_uri": "https://as.example/\u202eecived"}},
		{name: "C1 control in verification_uri_complete", set: map[string]any{"verification_uri_complete": "https://as.example/device?user_code=\u009b2J"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				as, prompt, err := deviceLoginShowing(t, tc.set)
				if !errors.Is(err, ErrBadResponse) {
					t.Fatalf("Login = %v, want ErrBadResponse", err)
				}
				if tc.insecure && !errors.Is(err, ErrInsecureURL) {
					t.Errorf("Login = %v, want it to match ErrInsecureURL too", err)
				}
				if prompt != "" {
					t.Errorf("the prompt printed %q for a refused response", prompt)
				}
				if n := as.Stats().DevicePolls; n != 0 {
					t.Errorf("%d device polls after a refused response", n)
				}
				msg := err.Error()
				if redact.Terminal(msg) != msg {
					t.Errorf("the error %q holds characters unsafe on a terminal", msg)
				}
				if code, _ := tc.set["user_code"].(string); code != "" && strings.Contains(msg, code[:4]) {
					t.Errorf("the error %q shows the user code", msg)
				}
			})
		})
	}
}

// The longest accepted user code is shown in full; an address outside the
// issuer's host gets a warning line first but the login goes on.
func TestDevicePromptSignInAddress(t *testing.T) {
	t.Parallel()
	t.Run("issuer host", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			as, prompt, err := deviceLoginShowing(t, nil)
			if err != nil {
				t.Fatalf("Login: %v", err)
			}
			if strings.Contains(prompt, "WARNING") || !strings.HasPrefix(prompt, "To sign in, open "+as.Issuer()) {
				t.Fatalf("prompt for an address on the issuer's host:\n%s", prompt)
			}
		})
	})
	t.Run("longest user code", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			code := strings.Repeat("BCDF", maxUserCode/4)
			_, prompt, err := deviceLoginShowing(t, map[string]any{"user_code": code})
			if err != nil {
				t.Fatalf("Login with a %d-character user code: %v", len(code), err)
			}
			if !strings.Contains(prompt, "enter the code "+code+"\n") {
				t.Fatalf("prompt does not show the code in full:\n%s", prompt)
			}
		})
	})
	t.Run("other host", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			_, prompt, err := deviceLoginShowing(t, map[string]any{
				"verification_uri":          "https://phish.example/device",
				"verification_uri_complete": "https://phish.example/device?user_code=BCDF-GHJK",
			})
			if err != nil {
				t.Fatalf("Login: %v", err)
			}
			ls := lines(prompt)
			want := "WARNING: this sign-in address is not on 127.0.0.1; make sure you trust it before entering the code"
			if ls[0] != want || strings.Count(prompt, "WARNING") != 1 {
				t.Fatalf("prompt for an address on another host:\n%s\nwant it to start with one line %q", prompt, want)
			}
			if !strings.HasPrefix(ls[1], "To sign in, open https://phish.example/device and enter the code") {
				t.Fatalf("prompt line 2 = %q", ls[1])
			}
		})
	})
}
