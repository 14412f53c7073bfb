package client

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/oauthtest"
)

// jwt returns an unsigned JWT with the given claims.
func jwt(claims map[string]any) string {
	b, _ := json.Marshal(claims)
	return "eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString(b) + ".sig"
}

// The expiry is the earlier of expires_in and the JWT's exp, the latter
// converted to the local clock (from exp-iat, else the Date header's skew).
func TestTokenExpiry(t *testing.T) {
	t.Parallel()
	sent := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	server := sent.Add(-90 * time.Second) // the server's clock runs 90 s behind
	at := func(d time.Duration) time.Time { return sent.Add(d) }
	for _, tc := range []struct {
		name   string
		tok    *oauth2.Token
		skew   time.Duration
		skewOK bool
		want   time.Time
	}{
		{"opaque token: expires_in", &oauth2.Token{AccessToken: "opaque", Expiry: at(4 * time.Second)}, 0, false, at(4 * time.Second)},
		{"opaque token, no expires_in: unknown", &oauth2.Token{AccessToken: "opaque"}, 0, false, time.Time{}},
		{"JWT longer than expires_in: expires_in",
			&oauth2.Token{AccessToken: jwt(map[string]any{"iat": server.Unix(), "exp": server.Add(time.Hour).Unix()}), Expiry: at(4 * time.Second)},
			-90 * time.Second, true, at(4 * time.Second)},
		{"JWT shorter than expires_in: the JWT's lifetime from sent",
			&oauth2.Token{AccessToken: jwt(map[string]any{"iat": server.Unix(), "exp": server.Add(2 * time.Second).Unix()}), Expiry: at(time.Hour)},
			-90 * time.Second, true, at(2 * time.Second)},
		{"JWT without expires_in, iat: lifetime from sent, whatever the clocks",
			&oauth2.Token{AccessToken: jwt(map[string]any{"iat": server.Unix(), "exp": server.Add(time.Minute).Unix()})},
			0, false, at(time.Minute)},
		{"JWT without iat: exp corrected by the Date header's skew",
			&oauth2.Token{AccessToken: jwt(map[string]any{"exp": server.Add(time.Minute).Unix()})},
			-90 * time.Second, true, at(time.Minute)},
		{"JWT without iat, without Date: exp as it is",
			&oauth2.Token{AccessToken: jwt(map[string]any{"exp": server.Add(time.Minute).Unix()}), Expiry: at(time.Hour)},
			0, false, server.Add(time.Minute)},
		{"iat after exp: ignored",
			&oauth2.Token{AccessToken: jwt(map[string]any{"iat": server.Add(time.Hour).Unix(), "exp": server.Add(time.Minute).Unix()})},
			-90 * time.Second, true, at(time.Minute)},
		{"iat not a number: exp still counts",
			&oauth2.Token{AccessToken: jwt(map[string]any{"iat": "yesterday", "exp": server.Add(time.Minute).Unix()}), Expiry: at(time.Hour)},
			-90 * time.Second, true, at(time.Minute)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tokenExpiry(tc.tok, sent, tc.skew, tc.skewOK); !got.Equal(tc.want) {
				t.Fatalf("tokenExpiry = %v, want %v", got, tc.want)
			}
		})
	}
}

// Short tokens end to end: with 2 s and 4 s tokens (JWTs whose exp agrees
// with expires_in), a 300 ms token endpoint, a server clock that is right,
// 90 s ahead or 90 s behind, and 8 goroutines calling an API that enforces
// expiry strictly for 25 s: no request fails and the API never sees an
// expired token.
func TestShortTokensEndToEnd(t *testing.T) {
	t.Parallel()
	for _, life := range []time.Duration{2 * time.Second, 4 * time.Second} {
		for _, offset := range []time.Duration{0, 90 * time.Second, -90 * time.Second} {
			t.Run(fmt.Sprintf("life=%v/clock=%+v", life, offset), func(t *testing.T) {
				t.Parallel()
				synctest.Test(t, func(t *testing.T) {
					e := newFixture(t, oauthtest.Config{
						AccessTokenLifetime: life, ClockOffset: offset,
						Clients: []oauthtest.Client{{ID: "job", Secret: "job-secret"}},
					}, inMemory())
					as, api := e.as, e.api
					as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultDelay, Endpoint: oauthtest.EndpointToken, Delay: 300 * time.Millisecond})
					c := e.client(t, clientCredentials("job", "job-secret"), func(o *Options) { o.Scopes, o.Logger = nil, nil })
					hc, err := c.HTTPClient(t.Context())
					if err != nil {
						t.Fatal(err)
					}
					t0 := time.Now()
					var mu sync.Mutex
					var calls, failed int
					var wg sync.WaitGroup
					for range 8 {
						wg.Go(func() {
							for time.Since(t0) < 25*time.Second {
								resp, err := hc.Get(api.URL() + "/things")
								mu.Lock()
								calls++
								switch {
								case err != nil:
									failed++
									t.Errorf("GET at %v: %v", time.Since(t0), err)
								case resp.StatusCode != http.StatusOK:
									failed++
									t.Errorf("GET at %v: %s", time.Since(t0), resp.Status)
								}
								mu.Unlock()
								if resp != nil {
									resp.Body.Close()
								}
								time.Sleep(10 * time.Millisecond)
							}
						})
					}
					wg.Wait()
					s := api.Stats()
					t.Logf("%d requests, %d failed; API: %d ok, %d rejected; %d token requests",
						calls, failed, s.OK, s.Rejected, as.Stats().Requests[oauthtest.EndpointToken])
					if s.Rejected != 0 {
						t.Fatalf("the API rejected %d requests (expired tokens sent), want 0", s.Rejected)
					}
				})
			})
		}
	}
}

// A server whose clock is 10 minutes ahead: tokens are refreshed before
// they expire by the server's clock, and the skew is reported.
func TestServerClockAhead(t *testing.T) {
	t.Parallel()
	for _, mode := range []oauthtest.ExpiresInMode{oauthtest.ExpiresInNumber, oauthtest.ExpiresInOmit} {
		t.Run(fmt.Sprint(mode), func(t *testing.T) {
			t.Parallel()
			e := newFixture(t, oauthtest.Config{ClockOffset: 10 * time.Minute, AccessTokenLifetime: time.Hour, ExpiresIn: mode})
			cfg := e.config()
			var skews []time.Duration
			var mu sync.Mutex
			cfg.Events = func(ev Event) {
				if ev.Kind == EventClockSkew {
					mu.Lock()
					skews = append(skews, ev.Skew)
					mu.Unlock()
				}
			}
			c := mustNew(t, cfg)
			login(t, c)
			tok, err := c.Token(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			info, ok := e.as.Introspect(tok.AccessToken)
			if !ok {
				t.Fatal("token unknown to the server")
			}
			// The server's expiry, in local time.
			serverExpiryLocal := info.Expiry.Add(-10 * time.Minute)
			if tok.Expiry.After(serverExpiryLocal.Add(2 * time.Second)) {
				t.Fatalf("client thinks the token expires at %v, the server at %v (local)", tok.Expiry, serverExpiryLocal)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(skews) == 0 || skews[0] < 9*time.Minute || skews[0] > 11*time.Minute {
				t.Fatalf("clock skew events %v", skews)
			}
		})
	}
}
