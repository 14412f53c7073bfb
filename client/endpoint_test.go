package client

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tokenward/tokenward/internal/httpretry"
	"github.com/tokenward/tokenward/oauthtest"
)

// One POST per refresh and code exchange under 503, connection reset and
// timeout: these requests carry single-use credentials (a rotated refresh
// token, an authorization code), which a second POST would present again.
// Client credentials carry none and are retried.
func TestOnePostPerSingleUseRequest(t *testing.T) {
	t.Parallel()
	faults := []struct {
		name string
		f    oauthtest.Fault
		want error
	}{
		{"503", oauthtest.Fault{Kind: oauthtest.FaultUnavailable, Times: 1}, ErrTemporarilyUnavailable},
		{"502-html", oauthtest.Fault{Kind: oauthtest.FaultBadGateway, Times: 1}, ErrTemporarilyUnavailable},
		{"reset", oauthtest.Fault{Kind: oauthtest.FaultReset, Times: 1}, ErrNetwork},
		{"response-lost", oauthtest.Fault{Kind: oauthtest.FaultResponseLost, Times: 1}, ErrNetwork},
		{"timeout", oauthtest.Fault{Kind: oauthtest.FaultHang, Times: 1}, ErrTokenEndpointTimeout},
	}
	shortTimeout := withOptions(func(o *Options) { o.HTTP.Timeout = 300 * time.Millisecond })
	for _, fc := range faults {
		t.Run("refresh/"+fc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, oauthtest.Config{}, shortTimeout)
			cfg := f.config()
			c := f.loggedIn(t)
			f.as.ResetStats()
			fault := fc.f
			fault.Endpoint, fault.Grant = oauthtest.EndpointToken, oauthtest.GrantRefreshToken
			f.as.InjectFault(fault)
			forceRefresh(t, c)
			start := time.Now()
			_, err := c.Token(t.Context())
			if !errors.Is(err, fc.want) {
				t.Fatalf("Token = %v, want %v", err, fc.want)
			}
			if fc.name == "timeout" {
				if d := time.Since(start); d > cfg.HTTP.Timeout+time.Second {
					t.Fatalf("timeout took %v", d)
				}
				f.as.ReleaseHangs()
			}
			if n := f.as.Stats().Grants[oauthtest.GrantRefreshToken]; n != 1 {
				t.Fatalf("refresh POSTs = %d, want exactly 1", n)
			}
		})
		t.Run("code/"+fc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, oauthtest.Config{}, shortTimeout)
			c := f.client(t)
			fault := fc.f
			fault.Endpoint, fault.Grant = oauthtest.EndpointToken, oauthtest.GrantAuthorizationCode
			f.as.InjectFault(fault)
			err := c.Login(t.Context())
			if !errors.Is(err, fc.want) {
				t.Fatalf("Login = %v, want %v", err, fc.want)
			}
			f.as.ReleaseHangs()
			if n := f.as.Stats().Grants[oauthtest.GrantAuthorizationCode]; n != 1 {
				t.Fatalf("code exchange POSTs = %d, want exactly 1", n)
			}
		})
	}
	t.Run("client-credentials-retried", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, oauthtest.Config{})
		c := mustNew(t, f.confidential(t, "job", "job-secret", oauthtest.AuthClientSecretPost))
		f.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultUnavailable, Endpoint: oauthtest.EndpointToken, Times: 2})
		if _, err := c.Token(t.Context()); err != nil {
			t.Fatalf("Token after two 503s = %v", err)
		}
		if n := f.as.Stats().Grants[oauthtest.GrantClientCredentials]; n != 3 {
			t.Fatalf("client_credentials POSTs = %d, want 3 (two 503s, then success)", n)
		}
	})
	t.Run("dial-error-retried-for-single-use", func(t *testing.T) {
		// A refresh whose connection was never made can be retried: not a
		// byte reached a server. The replay policy decides on the
		// connected flag.
		t.Parallel()
		dialErr := &url.Error{Op: "Post", URL: "https://as.example/token", Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}
		if !replayNever.allows(httpretry.Attempt{N: 1, Err: dialErr}) {
			t.Fatal("a dial error before any connection was not retried")
		}
		if replayNever.allows(httpretry.Attempt{N: 1, Err: dialErr, Connected: true}) {
			t.Fatal("an error after a connection was made was retried for a single-use credential")
		}
		if replayNever.allows(httpretry.Attempt{N: 1, Response: &http.Response{StatusCode: 503, Header: http.Header{}}}) {
			t.Fatal("a 503 was retried for a single-use credential")
		}
	})
}

// Retry-After: 86400 ends the call within the budget plus 1 s with a typed
// rate-limit error that carries the hint: the client neither waits a day
// nor retries against the server's wish.
func TestRetryAfterCapped(t *testing.T) {
	t.Parallel()
	f := newFixture(t, oauthtest.Config{})
	cfg := f.confidential(t, "job", "job-secret", oauthtest.AuthClientSecretBasic)
	cfg.HTTP.RetryBudget = 2 * time.Second
	c := mustNew(t, cfg)
	f.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultRateLimited, Endpoint: oauthtest.EndpointToken, RetryAfter: "86400"})
	start := time.Now()
	_, err := c.Token(t.Context())
	if d := time.Since(start); d > cfg.HTTP.RetryBudget+time.Second {
		t.Fatalf("took %v, budget %v", d, cfg.HTTP.RetryBudget)
	}
	var rl *RateLimitError
	if !errors.As(err, &rl) || !errors.Is(err, ErrRateLimited) || !errors.Is(err, ErrTemporarilyUnavailable) {
		t.Fatalf("err = %v, want a *RateLimitError", err)
	}
	if rl.RetryAfter != 24*time.Hour {
		t.Fatalf("RetryAfter = %v, want 24h", rl.RetryAfter)
	}
}

// A custom base transport that reports no connections: a refresh whose
// answer was lost must still not be sent twice.
func TestNoReplayWithCustomTransport(t *testing.T) {
	t.Parallel()
	f := newFixture(t, oauthtest.Config{})
	c := f.loggedIn(t, func(o *Options) { o.HTTP.Transport = f.as.Transport() })
	f.as.ResetStats()
	f.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultResponseLost, Endpoint: oauthtest.EndpointToken, Grant: oauthtest.GrantRefreshToken, Times: 1})
	forceRefresh(t, c)
	c.Token(t.Context())
	if st := f.as.Stats(); st.Grants[oauthtest.GrantRefreshToken] != 1 || st.RefreshTokensPresentedTwice != 0 {
		t.Fatalf("refresh POSTs %d, presented twice %d; want 1 and 0", st.Grants[oauthtest.GrantRefreshToken], st.RefreshTokensPresentedTwice)
	}
}

// The caller's own deadline stays context.DeadlineExceeded (not the
// endpoint's timeout), and a 503 with Retry-After on a single-use request
// is a typed rate-limit error with the hint.
func TestDeadlinesAndRetryAfterOnSingleUse(t *testing.T) {
	t.Parallel()
	f := newFixture(t, oauthtest.Config{})
	c := f.loggedIn(t)
	g := c.grant
	f.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultHang, Endpoint: oauthtest.EndpointToken, Times: 1})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	_, err := g.tokenRequest(ctx, g.refreshForm("x", nil), replayNever, nil)
	cancel()
	f.as.ReleaseHangs()
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrTokenEndpointTimeout) {
		t.Fatalf("err = %v, want context.DeadlineExceeded and not ErrTokenEndpointTimeout", err)
	}
	f.as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultUnavailable, Endpoint: oauthtest.EndpointToken, RetryAfter: "120", Times: 1})
	_, err = g.tokenRequest(t.Context(), g.refreshForm("x", nil), replayNever, nil)
	var rl *RateLimitError
	if !errors.As(err, &rl) || rl.RetryAfter != 2*time.Minute || !errors.Is(err, ErrTemporarilyUnavailable) || rl.Code != "temporarily_unavailable" {
		t.Fatalf("err = %v (%+v), want a *RateLimitError with the 2m hint and the code", err, rl)
	}
}

// The token cache waits as long as the token endpoint asked before its
// next refresh. The server answers every refresh with Retry-After: 120 (a
// 429 or a 503, which become a *RateLimitError, or a 500, an
// *EndpointError), for client credentials and for a login's refresh
// token. Counted on the server, in fake time: after the first failure no
// token request goes out for 120 s, then exactly one; the old token is
// served throughout, and once the fault is gone the next attempt succeeds.
func TestCacheHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	for _, grant := range []string{oauthtest.GrantClientCredentials, oauthtest.GrantRefreshToken} {
		for _, kind := range []oauthtest.FaultKind{oauthtest.FaultRateLimited, oauthtest.FaultUnavailable, oauthtest.FaultStatus500} {
			t.Run(grant+"/"+kind.String(), func(t *testing.T) {
				t.Parallel()
				synctest.Test(t, func(t *testing.T) {
					ctx := t.Context()
					var mu sync.Mutex
					var failures []Event
					events := func(o *Options) {
						o.Logger = nil
						o.Events = func(e Event) {
							if e.Kind == EventRefreshFailed {
								mu.Lock()
								failures = append(failures, e)
								mu.Unlock()
							}
						}
					}
					var as *oauthtest.Server
					var c *Client
					if grant == oauthtest.GrantClientCredentials {
						f := newFixture(t, oauthtest.Config{Clients: []oauthtest.Client{{ID: "job", Secret: "job-secret"}}}, inMemory())
						as, c = f.as, f.client(t, clientCredentials("job", "job-secret"), func(o *Options) { o.Scopes = nil }, events)
					} else {
						f := newFixture(t, oauthtest.Config{DeviceInterval: time.Second, DevicePendingPolls: 1}, inMemory(), silentDevicePrompt)
						as, c = f.as, f.client(t, events)
						if err := c.Login(ctx, WithDevice()); err != nil {
							t.Fatalf("Login: %v", err)
						}
					}
					first, err := c.Token(ctx)
					if err != nil {
						t.Fatal(err)
					}
					as.ResetStats()
					as.InjectFault(oauthtest.Fault{Kind: kind, Endpoint: oauthtest.EndpointToken, Grant: grant, RetryAfter: "120"})
					requests := func() int { return as.Stats().Requests[oauthtest.EndpointToken] }
					// step serves a token, as an application would, and lets one
					// second of fake time pass.
					step := func() {
						t.Helper()
						tok, err := c.Token(ctx)
						if err != nil || tok.AccessToken != first.AccessToken {
							t.Fatalf("Token while the old token was valid = %v, %v; want the old token", tok, err)
						}
						time.Sleep(time.Second)
						synctest.Wait()
					}
					for requests() == 0 { // the background refresh, before the token expires
						if !time.Now().Before(first.Expiry) {
							t.Fatal("no refresh before the token expired")
						}
						step()
					}
					// One attempt is one request, except for client credentials
					// answered 500: the client's own retries (three, moments
					// apart) are made within the attempt. The attempt may have
					// started late in the last second, its retries still to
					// come: one more second lets it end before it is counted.
					time.Sleep(time.Second)
					synctest.Wait()
					perAttempt := requests()
					failed := time.Now() // the attempt started one to two seconds before
					for time.Since(failed) < 118*time.Second {
						if n := requests(); n != perAttempt {
							t.Fatalf("%d token requests %v after the failure, want %d: the server asked to wait 120s", n, time.Since(failed), perAttempt)
						}
						step()
					}
					step()
					step()
					if n := requests(); n != 2*perAttempt {
						t.Fatalf("%d token requests %v after the first failure, want %d (one more attempt)", n, time.Since(failed), 2*perAttempt)
					}
					mu.Lock()
					for _, e := range failures {
						var h retryAfterHinter
						if !errors.As(e.Err, &h) || h.RetryAfterHint() != 120*time.Second || !errors.Is(e.Err, ErrTemporarilyUnavailable) {
							t.Errorf("refresh-failed event's error %v: want ErrTemporarilyUnavailable carrying the 120s hint", e.Err)
						}
					}
					if len(failures) != 2 {
						t.Errorf("refresh-failed events = %d, want 2", len(failures))
					}
					mu.Unlock()
					as.ClearFaults()
					time.Sleep(121 * time.Second)
					synctest.Wait()
					if n := requests(); n != 2*perAttempt+1 {
						t.Fatalf("%d token requests after the fault was cleared, want %d", n, 2*perAttempt+1)
					}
					if tok, err := c.Token(ctx); err != nil || tok.AccessToken == first.AccessToken {
						t.Fatalf("Token after recovery = %v, %v; want a new token", tok, err)
					}
				})
			})
		}
	}
}
