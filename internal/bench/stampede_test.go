package bench

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tokenward/tokenward/internal/leakscan"
	"github.com/tokenward/tokenward/store"
)

// TestMain lets the test binary act as a process of RunProcessStampede.
func TestMain(m *testing.M) {
	if IsStampedeChild() {
		os.Exit(StampedeChild(context.Background(), os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

// TestGoroutineStampede: one refresh for many callers in one process. 100
// goroutines on an expired token make one token call. x/oauth2's
// ReuseTokenSource also makes one (its mutex serialises the callers); the
// difference there is the wait, measured by the stall scenario.
func TestGoroutineStampede(t *testing.T) {
	t.Parallel()
	for _, grant := range []string{GrantLogin, GrantClientCredentials} {
		for _, c := range []string{Tokenward, XOAuth2} {
			t.Run(grant+"/"+c, func(t *testing.T) {
				t.Parallel()
				cfg := StampedeConfig{Grant: grant, TokenLatency: 50 * time.Millisecond, InMemory: true,
					StoreMode: store.ModePlaintextFile, Dir: t.TempDir()}
				r, err := RunGoroutineStampede(t.Context(), cfg, c)
				if err != nil {
					t.Fatal(err)
				}
				if r.TokenCalls != 1 || r.OK != DefaultStampedeGoroutines || r.Replays != 0 {
					t.Fatalf("%+v; want 1 token call and %d successful requests", r, DefaultStampedeGoroutines)
				}
			})
		}
	}
}

// TestProcessStampede: one refresh for many callers across processes. 5
// processes sharing a store make exactly one token call with tokenward.
// The same processes written the usual way with x/oauth2 (load the file,
// refresh, write back) each refresh, replay the rotated refresh token, and
// the server revokes the login: which shows the scenario really races.
func TestProcessStampede(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 15 processes")
	}
	t.Parallel()
	for _, tc := range []struct {
		grant, client string
	}{
		{GrantLogin, Tokenward},
		{GrantClientCredentials, Tokenward},
		{GrantLogin, XOAuth2},
	} {
		t.Run(tc.grant+"/"+tc.client, func(t *testing.T) {
			t.Parallel()
			cfg := StampedeConfig{Grant: tc.grant, StoreMode: store.ModePlaintextFile, Dir: t.TempDir(),
				Executable: os.Args[0], ChildArgs: []string{"-test.run=^$"}}
			r, err := RunProcessStampede(t.Context(), cfg, tc.client)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%+v", r)
			if tc.client == Tokenward {
				if r.TokenCalls != 1 || r.OK != DefaultStampedeProcesses || r.Replays != 0 || r.LoginRevoked {
					t.Fatalf("%+v; want exactly 1 token call and every process served", r)
				}
				return
			}
			if r.TokenCalls < 2 || r.Replays < 1 || !r.LoginRevoked {
				t.Fatalf("%+v; want several token calls, a replay and a revoked login", r)
			}
		})
	}
}

func TestStampedeTable(t *testing.T) {
	t.Parallel()
	cfg := StampedeConfig{Goroutines: 3}
	var out strings.Builder
	err := WriteStampedeTable(&out, cfg, []StampedeResult{
		{Case: "goroutines", N: 3, Client: Tokenward, Grant: GrantLogin, TokenCalls: 1, OK: 3},
		{Case: "processes", N: 5, Client: XOAuth2, Grant: GrantLogin, TokenCalls: 5, Failed: 5, Replays: 4, LoginRevoked: true,
			FirstError: "token endpoint: invalid_grant"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"3 goroutines  tokenward", "5 processes   x-oauth2", "YES", "first failure: token endpoint: invalid_grant"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if found := leakscan.Find(out.String()); len(found) > 0 {
		t.Fatalf("secret-shaped strings in the output: %v", found)
	}
}
