package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/tokenward/tokenward/client"
	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/store"
)

// expiredToken mints the token set the scenario starts from: its access
// token expired a second ago (a login's refresh token is still good).
func (f *fixture) expiredToken(grant string) (*oauth2.Token, error) {
	g := oauthtest.Grant{ClientID: oauthtest.DefaultClientID}
	if grant == GrantClientCredentials {
		g = oauthtest.Grant{ClientID: jobClientID, NoRefreshToken: true}
	}
	tok, err := f.as.Mint(g)
	if err != nil {
		return nil, fmt.Errorf("bench: minting the initial token: %w", err)
	}
	tok.Expiry = time.Now().Add(-time.Second)
	tok.ExpiresIn = 0
	return tok, nil
}

// storeOptions are the options of tokenward's store under dir.
func storeOptions(mode store.Mode, dir, passphrase string) func(*store.Options) {
	return func(o *store.Options) {
		o.Mode = mode
		o.Dir = filepath.Join(dir, "store")
		o.LockDir = filepath.Join(dir, "locks")
		o.Passphrase = passphrase
		o.Service = "tokenward-bench"
	}
}

// tokenwardConfig is the client configuration of grant.
func (f *fixture) tokenwardConfig(grant string, base http.RoundTripper) client.Options {
	if grant == GrantClientCredentials {
		return f.jobConfig(base)
	}
	return f.loginConfig(base)
}

// seedTokenward stores tok where a tokenward client of grant looks for it,
// and checks through the client's own Status that it does find it there.
// The returned function deletes the entry (which matters for the keychain).
func (f *fixture) seedTokenward(ctx context.Context, st store.Store, grant string, tok *oauth2.Token) (func(), error) {
	cfg := f.tokenwardConfig(grant, f.newBase())
	cfg.Store = st
	name := store.Key{Issuer: f.as.Issuer(), ClientID: cfg.ClientID}.String()
	if err := st.Save(ctx, name, store.EntryFromToken(tok)); err != nil {
		return nil, fmt.Errorf("bench: seeding the store: %w", err)
	}
	remove := func() { st.Delete(context.WithoutCancel(ctx), name) }
	c, err := client.New(ctx, func(opts *client.Options) { *opts = cfg })
	if err != nil {
		remove()
		return nil, fmt.Errorf("bench: tokenward: %w", err)
	}
	defer c.Close()
	s, err := c.Status(ctx)
	if err == nil && !s.AccessTokenExpiry.Equal(tok.Expiry) {
		err = errors.New("the client does not see the seeded token (store key mismatch)")
	}
	if err != nil {
		remove()
		return nil, fmt.Errorf("bench: tokenward status: %w", err)
	}
	return remove, nil
}

// xoauth2Source returns the token source a user of x/oauth2 builds from a
// token loaded from disk: for a login oauth2.Config.TokenSource (a
// ReuseTokenSource that refreshes with the refresh token), for client
// credentials a ReuseTokenSource over clientcredentials.Config.TokenSource.
func xoauth2Source(ctx context.Context, grant, tokenURL, secret string, tok *oauth2.Token) oauth2.TokenSource {
	if grant == GrantClientCredentials {
		cc := clientcredentials.Config{ClientID: jobClientID, ClientSecret: secret, TokenURL: tokenURL, AuthStyle: oauth2.AuthStyleInHeader}
		return oauth2.ReuseTokenSource(tok, cc.TokenSource(ctx))
	}
	cfg := oauth2.Config{ClientID: oauthtest.DefaultClientID, Endpoint: oauth2.Endpoint{TokenURL: tokenURL, AuthStyle: oauth2.AuthStyleInParams}}
	return cfg.TokenSource(ctx, tok)
}

// tempDir returns dir, or a new temporary directory and a function that
// removes it.
func tempDir(dir string) (string, func(), error) {
	if dir != "" {
		return dir, func() {}, nil
	}
	d, err := os.MkdirTemp("", "tokenward-bench-")
	if err != nil {
		return "", nil, err
	}
	return d, func() { os.RemoveAll(d) }, nil
}

func randomPassphrase() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// writeTokenFile and readTokenFile keep an x/oauth2 token as JSON in a
// 0600 file, the way hand-written code usually persists it.
func writeTokenFile(path string, tok *oauth2.Token) error {
	b, err := json.Marshal(tok)
	if err != nil {
		return err
	}
	tmp := path + ".tmp" + randomPassphrase()[:8]
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func readTokenFile(path string) (*oauth2.Token, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var tok oauth2.Token
	if err := json.Unmarshal(b, &tok); err != nil {
		return nil, err
	}
	return &tok, nil
}
