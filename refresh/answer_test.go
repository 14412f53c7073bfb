package refresh

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/twerr"
)

// What the cache does with an authorization server's answer: the token
// types it accepts, a rotated refresh token in an answer it refuses, and a
// dead grant.

func TestUnsupportedTokenType(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		typ string
		ok  bool
	}{{"Bearer", true}, {"bearer", true}, {"BEARER", true}, {"", true}, {"DPoP", false}, {"mac", false}, {"N_A", false}} {
		t.Run(tc.typ, func(t *testing.T) {
			t.Parallel()
			c := mustNew(t, UpstreamFunc(func(context.Context, *oauth2.Token) (*oauth2.Token, error) {
				return &oauth2.Token{AccessToken: "a", TokenType: tc.typ, Expiry: time.Now().Add(time.Hour)}, nil
			}))
			defer c.Close()
			tok, err := c.Token(t.Context())
			if tc.ok && (err != nil || tok.Type() != "Bearer") {
				t.Fatalf("Token = %v, %v; want a Bearer token", tok, err)
			}
			if !tc.ok && (!errors.Is(err, ErrUnsupportedTokenType) || !errors.Is(err, twerr.ErrUnsupportedTokenType)) {
				t.Fatalf("Token error = %v, want ErrUnsupportedTokenType", err)
			}
		})
	}
}

// An answer the cache refuses (token_type N_A, DPoP) that carries a
// rotated refresh token: the new refresh token is kept and saved, and the
// retry presents it, never the spent one.
func TestRefusedAnswerKeepsRotatedRT(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		typ      string
		expiry   time.Duration // of the initial token, from now
		oldValid bool
	}{
		{"N_A", -time.Second, false},
		{"DPoP", 50 * time.Second, true}, // refreshed in the background while valid
	} {
		t.Run(tc.typ, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				n := 0
				f := scene{first: tc.expiry, options: idleOff, upstream: func(as *rotatingAS) Upstream {
					return UpstreamFunc(func(ctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
						tok, err := as.Token(ctx, cur)
						n++
						if err == nil && n == 1 {
							cp := *tok
							cp.TokenType = tc.typ
							return &cp, nil
						}
						return tok, err
					})
				}}.start(t)
				as, st, key, c, evs := f.as, f.st, f.key, f.c, f.ev
				if tc.oldValid {
					if _, err := c.Token(t.Context()); err != nil {
						t.Fatal(err)
					}
					time.Sleep(44 * time.Second) // past the advisory point, before the mandatory window
				}
				tok, err := c.Token(t.Context())
				if tc.oldValid {
					// The refresh starts in the background; the old token is served.
					if err != nil || tok.AccessToken != "at-0" {
						t.Fatalf("Token = %v, %v; want at-0", tok, err)
					}
					evs.wait(t, EventRefreshFailed, 1)
					if tok2, err := c.Token(t.Context()); err != nil || tok2 != tok {
						t.Fatalf("after the refused answer: %v, %v; want the same at-0 token", tok2, err)
					}
				} else if !errors.Is(err, ErrUnsupportedTokenType) {
					t.Fatalf("Token error = %v, want ErrUnsupportedTokenType", err)
				}
				if got := st.get(key); got.RefreshToken != "rt-1" || got.AccessToken != "at-0" {
					t.Fatalf("stored %q/%q after the refused answer, want at-0/rt-1 (the rotated refresh token kept)", got.AccessToken, got.RefreshToken)
				}
				time.Sleep(5 * time.Second) // past the backoff
				tok, err = c.Token(t.Context())
				if err != nil || tok.AccessToken != "at-2" {
					t.Fatalf("retry: %v, %v; want at-2", tok, err)
				}
				_, reuses, presented := as.stats()
				if reuses != 0 || len(presented) != 2 || presented[1] != "rt-1" {
					t.Fatalf("presented %v (reuses %d), want [rt-0 rt-1]", presented, reuses)
				}
				if got := st.get(key); got.RefreshToken != "rt-2" {
					t.Fatalf("stored %q, want rt-2", got.RefreshToken)
				}
			})
		})
	}
}

// invalid_grant: ErrReauthRequired, the dead token is deleted, the event
// fires; a still-valid access token is served until its mandatory window.
func TestReauthRequired(t *testing.T) {
	t.Parallel()
	t.Run("expired", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			f := scene{first: -time.Minute, server: func(as *rotatingAS) { as.revoked = true }}.start(t)
			st, key, c, evs := f.st, f.key, f.c, f.ev
			_, err := c.Token(t.Context())
			var e *Error
			if !errors.Is(err, ErrReauthRequired) || !errors.As(err, &e) || e.Code != "invalid_grant" || errors.Is(err, ErrPossibleRotationLoss) {
				t.Fatalf("err = %v; want ErrReauthRequired with code invalid_grant", err)
			}
			if st.get(key) != nil || st.deletes != 1 {
				t.Fatalf("the dead token is still stored (deletes %d)", st.deletes)
			}
			if evs.count(EventReauthRequired) != 1 {
				t.Fatalf("events %v, want one reauth_required", evs.all())
			}
		})
	})
	t.Run("while valid", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			f := scene{first: time.Minute}.start(t)
			as, key, c, st := f.as, f.key, f.c, f.st
			t0, err := c.Token(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			as.revoke()
			time.Sleep(52 * time.Second) // past the advisory point: the idle refresh fails
			if tok, err := c.Token(t.Context()); err != nil || tok != t0 {
				t.Fatalf("valid access token not served after invalid_grant: %v", err)
			}
			if st.get(key) != nil {
				t.Fatal("the dead token is still stored")
			}
			time.Sleep(5 * time.Second) // inside the mandatory window
			if _, err := c.Token(t.Context()); !errors.Is(err, ErrReauthRequired) {
				t.Fatalf("err = %v, want ErrReauthRequired", err)
			}
			if calls, _, _ := as.stats(); calls > 3 {
				t.Fatalf("upstream calls = %d: a dead grant must not be hammered", calls)
			}
		})
	})
	t.Run("removed by another process", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			f := scene{first: time.Minute}.start(t)
			as, key, c, st := f.as, f.key, f.c, f.st
			if _, err := c.Token(t.Context()); err != nil {
				t.Fatal(err)
			}
			st.Delete(t.Context(), key) // logout elsewhere
			time.Sleep(time.Minute)
			if _, err := c.Token(t.Context()); !errors.Is(err, ErrReauthRequired) {
				t.Fatalf("err = %v, want ErrReauthRequired (the token must not be resurrected)", err)
			}
			// The Upstream may be asked without a refresh token (a client
			// credentials grant could still succeed); the refresh token
			// itself is never presented again.
			if _, _, presented := as.stats(); len(presented) > 1 || (len(presented) == 1 && presented[0] != "") || st.get(key) != nil {
				t.Fatalf("presented %q, stored %v; want no refresh token presented and nothing stored", presented, st.get(key))
			}
		})
	})
}

// After invalid_grant ends the grant, a caller that asks for a token later
// hears why (the server's answer), not a generic "not logged in"; a new
// login ends that.
func TestDeadGrantKeepsItsCause(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		n := 0
		up := UpstreamFunc(func(ctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
			n++
			if cur == nil || cur.RefreshToken == "" {
				return nil, fmt.Errorf("%w: not logged in (no refresh token); call Login", ErrReauthRequired)
			}
			return nil, grantErr("invalid_grant", "Token revoked by an administrator")
		})
		c := mustNew(t, up)
		defer c.Close()
		if err := c.Set(t.Context(), &oauth2.Token{AccessToken: "at-0", RefreshToken: "rt-0", Expiry: time.Now().Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			time.Sleep(time.Minute)
			_, err := c.Token(t.Context())
			if !errors.Is(err, ErrReauthRequired) || !strings.Contains(err.Error(), "revoked by an administrator") {
				t.Fatalf("Token %d after the grant died: %v, want ErrReauthRequired naming the server's reason", i, err)
			}
		}
		if err := c.Set(t.Context(), &oauth2.Token{AccessToken: "at-1", RefreshToken: "rt-1", Expiry: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if tok, err := c.Token(t.Context()); err != nil || tok.AccessToken != "at-1" {
			t.Fatalf("after a new login: %v, %v", tok, err)
		}
	})
}
