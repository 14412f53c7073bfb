package refresh

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/canary"
)

// Canary secrets (JWT-shaped access tokens, opaque refresh tokens) never
// appear in logs at debug level, events, error strings or the cache's own
// printed forms, across success, failure, persist failure, re-auth and
// rotation loss, even when the server and the store echo them in errors.
func TestNoSecretsInLogsEventsErrors(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var (
			secretsMu sync.Mutex
			secrets   []string
		)
		remember := func(s string) string {
			secretsMu.Lock()
			defer secretsMu.Unlock()
			secrets = append(secrets, s)
			return s
		}
		// Call 2 fails with a description and body that echo the refresh
		// token presented; call 3 loses the answer; call 4 is the reuse.
		var lastRT string
		var logs syncBuffer
		logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		f := scene{life: time.Minute, first: -time.Second,
			server: func(as *rotatingAS) {
				as.mkAT = func(g int, exp time.Time) string { return remember(canary.JWT("at", exp.Unix())) }
				as.mkRT = func(g int) string { return remember(canary.New("rt")) }
				as.fail = func(n int) error {
					if n == 2 {
						e := retrieveErr(400, "invalid_request", `{"error":"invalid_request","refresh_token":"`+lastRT+`"}`)
						e.ErrorDescription = "refresh token " + lastRT + " is malformed"
						return e
					}
					return nil
				}
				as.lost = func(n int) bool { return n == 3 }
			},
			upstream: func(as *rotatingAS) Upstream {
				return UpstreamFunc(func(ctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
					if cur != nil {
						lastRT = cur.RefreshToken
					}
					return as.Token(ctx, cur)
				})
			},
			options: func(o *Options) { o.Logger = logger },
		}.start(t)
		st, key, c, evs := f.st, f.key, f.c, f.ev
		lastRT = st.get(key).RefreshToken
		remember(st.get(key).AccessToken)
		remember(lastRT)

		var out strings.Builder
		record := func(tok *oauth2.Token, err error) {
			if tok != nil { // the token itself is the secret; print what surrounds it
				fmt.Fprintf(&out, "%v %q %v\n", tok.Expiry, tok.RefreshToken, tok.Type())
			}
			if err != nil {
				fmt.Fprintf(&out, "%v %+v %s %q\n", err, err, err.Error(), err)
			}
			fmt.Fprintf(&out, "%v %+v %#v %s\n", c, c, c, c)
			logger.Debug("cache", "cache", c)
		}
		// 1: refresh, but the save echoes the token in its error and fails.
		st.saveErr = fmt.Errorf("keychain rejected item %s", lastRT)
		st.failSaves = 1
		tok, err := c.Token(t.Context())
		record(tok, err)
		record(c.Token(t.Context())) // save retry succeeds
		// 2: refresh fails with an echoing error; old token kept.
		time.Sleep(55 * time.Second)
		record(c.Token(t.Context()))
		// 3: answer lost, then 4: reuse -> re-auth with rotation loss.
		time.Sleep(10 * time.Minute)
		record(c.Token(t.Context()))
		time.Sleep(10 * time.Minute)
		record(c.Token(t.Context()))

		for _, e := range evs.all() {
			fmt.Fprintf(&out, "%v %+v\n", e, e)
			if e.Err != nil {
				fmt.Fprintf(&out, "%v %+v\n", e.Err, e.Err)
			}
		}
		all := out.String() + "\n" + logs.String()
		secretsMu.Lock()
		defer secretsMu.Unlock()
		if found := canary.Find(all, secrets...); len(found) != 0 {
			t.Fatalf("%d secret(s) leaked, e.g. %.24s...; output:\n%s", len(found), found[0], all)
		}
		// The scenario really happened (the test can fail).
		for _, want := range []string{"refresh: refreshed", "refresh: persist_failed", "refresh: refresh_failed", "refresh: reauth_required", "possible rotation loss", `"level":"DEBUG"`} {
			if !strings.Contains(all, want) {
				t.Errorf("output lacks %q", want)
			}
		}
		if len(secrets) < 6 {
			t.Errorf("only %d secrets were issued", len(secrets))
		}
	})
}
