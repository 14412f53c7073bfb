package client

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/tokenward/tokenward/internal/canary"

	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/store"
)

// env is one fake authorization server, one protected API on it, a memory
// store and a captured debug log, for a test.
type env struct {
	as    *oauthtest.Server
	api   *oauthtest.API
	store store.Store
	log   *syncBuffer
}

// syncBuffer captures log output for canary scans.
type syncBuffer = canary.Log

func newEnv(t *testing.T, cfg oauthtest.Config) *env {
	t.Helper()
	as := oauthtest.Start(t, cfg)
	api := oauthtest.StartAPI(t, as, "")
	st, err := store.Open(t.Context(), func(o *store.Options) { o.Mode = store.ModeMemory })
	if err != nil {
		t.Fatal(err)
	}
	return &env{as: as, api: api, store: st, log: &syncBuffer{}}
}

// config returns a login config for the default public client.
func (e *env) config() Options {
	return Options{
		Issuer:                e.as.Issuer(),
		ClientID:              oauthtest.DefaultClientID,
		Scopes:                []string{"read"},
		Resources:             []string{e.api.Resource()},
		AllowInsecureLoopback: true,
		Store:                 e.store,
		Logger:                slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Prompt:                io.Discard,
		OpenBrowser: func(u string) error {
			go e.as.Browse(context.Background(), u)
			return nil
		},
		HTTP: HTTPSettings{RetryWaitMin: 10e6, RetryWaitMax: 50e6},
	}
}

// confidential registers a client_secret client and returns its config.
func (e *env) confidential(t *testing.T, id, secret, method string) Options {
	t.Helper()
	if err := e.as.Update(func(c *oauthtest.Config) {
		c.Clients = append(c.Clients, oauthtest.Client{ID: id, Secret: secret, AuthMethod: method})
		if len(c.Clients) == 1 {
			c.Clients = append(c.Clients, oauthtest.Client{ID: oauthtest.DefaultClientID, RedirectURIs: []string{"http://127.0.0.1/callback", "http://[::1]/callback"}})
		}
	}); err != nil {
		t.Fatal(err)
	}
	cfg := e.config()
	cfg.ClientID, cfg.ClientSecret, cfg.Grant = id, secret, GrantClientCredentials
	cfg.OpenBrowser = nil
	return cfg
}

func mustNew(t *testing.T, cfg Options) *Client {
	t.Helper()
	c, err := New(t.Context(), with(cfg))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// get calls the API through the client's HTTP client.
func get(t *testing.T, hc *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func lines(s string) []string { return strings.Split(strings.TrimSpace(s), "\n") }

func readAll(r io.Reader) string {
	b, _ := io.ReadAll(r)
	return string(b)
}

// mustDefault returns c's default token handle.
func mustDefault(t *testing.T, c *Client) *Resource {
	t.Helper()
	r, err := c.defaultResource()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// with sets every field of the Options at once, for tests that build
// Options as values.
func with(cfg Options) func(*Options) { return func(o *Options) { *o = cfg } }
