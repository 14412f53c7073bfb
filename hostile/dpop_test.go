package hostile

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokenward/tokenward/client"
	"github.com/tokenward/tokenward/internal/dpop"
	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/store"
)

// envDPoPName names a DPoP child: it calls the API at a path of its own,
// so that the parent can tell from the API's records which process sent
// which request.
const envDPoPName = "HOSTILE_DPOP_NAME"

// dpopPath is the API path the DPoP child called name calls.
func dpopPath(name string) string { return "/dpop/" + name }

// dpopChild is the child of TestDPoPKeySharedAcrossProcesses: a process
// started after the login, with DPoP on. It opens the shared file store,
// asks for the token (the parent expired it, so the client refreshes with
// a proof of whatever key the store holds), calls the API once with the
// token and reports the result. It never prints a token or the key, only
// a digest of the access token.
func dpopChild() int {
	ctx := context.Background()
	e := childEnvFromOS()
	st, err := e.openStore(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "store.Open:", err)
		return 1
	}
	cfg := e.childConfig(st)
	cfg.DPoP = true
	c, err := client.New(ctx, func(opts *client.Options) { *opts = cfg })
	if err != nil {
		fmt.Fprintln(os.Stderr, "client.New:", err)
		return 1
	}
	defer c.Close()
	tok, err := c.Token(ctx)
	r := childResult{OK: err == nil, Reauth: errors.Is(err, client.ErrReauthRequired)}
	if err != nil {
		r.Err = err.Error()
	} else {
		r.ATDigest = digest(tok.AccessToken)
		hc, err := c.HTTPClient(ctx)
		if err == nil {
			var resp *http.Response
			if resp, err = hc.Get(e.Resource + dpopPath(os.Getenv(envDPoPName))); err == nil {
				resp.Body.Close()
				r.APIStatus = resp.StatusCode
			}
		}
		if err != nil {
			r.APIErr = err.Error()
		}
	}
	b, _ := json.Marshal(r)
	fmt.Printf("RESULT %s\n", b)
	return 0
}

// dpopKeySecrets returns the forms in which a leaked DPoP private key
// (PKCS #8 bytes) could show up in output: the bytes themselves, in
// base64 and hex, and the private scalar alone, in base64url (the JWK's
// "d"), base64 and hex.
func dpopKeySecrets(t *testing.T, der []byte) []string {
	t.Helper()
	out := []string{string(der), base64.StdEncoding.EncodeToString(der), base64.RawURLEncoding.EncodeToString(der), hex.EncodeToString(der)}
	priv, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		t.Fatalf("the stored DPoP key does not parse: %v", err)
	}
	var d []byte
	switch k := priv.(type) {
	case *ecdsa.PrivateKey:
		if d, err = k.Bytes(); err != nil {
			t.Fatal(err)
		}
	case ed25519.PrivateKey:
		d = k.Seed()
	default:
		t.Fatalf("unexpected DPoP key type %T", priv)
	}
	return append(out, base64.RawURLEncoding.EncodeToString(d), base64.StdEncoding.EncodeToString(d), hex.EncodeToString(d))
}

// TestDPoPKeySharedAcrossProcesses proves that the DPoP key is kept with
// the credential and reused by every process that shares the store, after
// restarts (issue 15). This process logs in with DPoP against a server
// that requires it, into an encrypted file store. Then a new process
// starts on that store with an expired access token and refreshes, and
// after it two more start together, again on an expired access token. A
// public client's refresh token is bound to the key it was issued with and
// the server refuses it with any other key, so each accepted refresh
// proves the process signed with the stored key; the server's records also
// show the key of every proof at the API. Every process must have used the
// key this process made, the store must still hold that key, no refresh
// token may be presented twice, and neither the key nor any token may
// appear in the children's output.
func TestDPoPKeySharedAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	t.Parallel()
	ctx := t.Context()
	// A short lifetime, as DPoP deployments use; the test does not wait for
	// it but expires the stored token itself, so that each round refreshes
	// at once and deterministically.
	w := newWorld(t, oauthtest.Config{DPoP: oauthtest.DPoPRequired, AccessTokenLifetime: 2 * time.Minute})
	dir := t.TempDir()
	env := childEnv{Issuer: w.as.Issuer(), Resource: w.api.Resource(), Mode: store.ModeEncryptedFile,
		Dir: filepath.Join(dir, "data"), LockDir: filepath.Join(dir, "locks"), Passphrase: "hostile-passphrase"}
	st, err := env.openStore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w.st = st

	// The login, in this process.
	cfg := w.config()
	cfg.DPoP = true
	c := w.newClient(cfg)
	if err := w.rec.err(c.Login(ctx)); err != nil {
		t.Fatalf("login: %v", err)
	}

	// The key as another reader of the store sees it: a store opened
	// separately, as a process that starts later would.
	ps, err := env.openStore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e0, err := ps.Load(ctx, w.key())
	if err != nil {
		t.Fatalf("loading the login's entry: %v", err)
	}
	if len(e0.KeyPair) == 0 {
		t.Fatal("the stored entry holds no DPoP key: a later process could not prove possession")
	}
	keySecrets := dpopKeySecrets(t, e0.KeyPair)
	w.remember(keySecrets...)
	w.remember(e0.AccessToken, e0.RefreshToken, e0.IDToken)
	k, err := dpop.ParseKey(e0.KeyPair, "")
	if err != nil {
		t.Fatalf("parsing the stored DPoP key: %v", err)
	}
	jkt := k.Thumbprint()
	for what, tok := range map[string]string{"access": e0.AccessToken, "refresh": e0.RefreshToken} {
		if info, ok := w.as.Introspect(tok); !ok || info.DPoPJKT != jkt {
			t.Fatalf("the login's %s token is bound to %q (known %v), want the stored key's %q", what, info.DPoPJKT, ok, jkt)
		}
	}

	// expire makes the stored access token look expired, under the store
	// lock, so that the next process must refresh; the key and the refresh
	// token are kept as they are.
	expire := func() {
		t.Helper()
		unlock, err := ps.Lock(ctx, w.key())
		if err != nil {
			t.Fatal(err)
		}
		defer unlock()
		e, err := ps.Load(ctx, w.key())
		if err != nil {
			t.Fatal(err)
		}
		e.Expiry = time.Now().Add(-time.Minute)
		if err := ps.Save(ctx, w.key(), e); err != nil {
			t.Fatal(err)
		}
	}
	childNamed := func(name string) *child {
		return startChildWith(t, "dpop", env, []string{envDPoPName + "=" + name})
	}

	// One process alone, then two at once. Each round is checked before
	// the next, so that a failure names the round it happened in.
	results := map[string]childResult{}
	var children []*child
	for _, round := range [][]string{{"first"}, {"second", "third"}} {
		expire()
		var started []*child
		for _, name := range round {
			started = append(started, childNamed(name))
		}
		for i, name := range round {
			r := started[i].result(t)
			if !r.OK || r.APIStatus != http.StatusOK {
				t.Fatalf("the %s process: %+v; presentations %s; DPoP refusals %v", name, r, describePresentations(w.as), w.as.Stats().DPoPRefusals)
			}
			results[name] = r
		}
		children = append(children, started...)
	}

	// Every refresh was accepted, with a refresh token bound to the
	// stored key: a proof of another key would have been refused.
	pres := w.as.RefreshPresentations()
	if len(pres) < 2 {
		t.Fatalf("%d refreshes, want one per round at least: %s", len(pres), describePresentations(w.as))
	}
	for i, p := range pres {
		info, _ := w.as.Introspect(p.Token)
		if p.Outcome != oauthtest.RefreshRotated || info.DPoPJKT != jkt {
			t.Fatalf("refresh %d: outcome %q with a token bound to %q, want %q with the stored key's %q; presentations %s",
				i, p.Outcome, info.DPoPJKT, oauthtest.RefreshRotated, jkt, describePresentations(w.as))
		}
	}
	stats := w.as.Stats()
	if stats.RefreshTokensPresentedTwice != 0 {
		t.Fatalf("%d refresh tokens presented twice: %s", stats.RefreshTokensPresentedTwice, describePresentations(w.as))
	}
	w.assertNoReplay(false)
	if len(stats.DPoPRefusals) != 0 {
		t.Fatalf("the server refused DPoP proofs: %v", stats.DPoPRefusals)
	}

	// Each process's API request carried a proof of the stored key and
	// the access token that process reported, itself bound to that key.
	for name, r := range results {
		var seen int
		for _, req := range w.api.Requests() {
			if req.Path != dpopPath(name) {
				continue
			}
			seen++
			info, _ := w.as.Introspect(req.Token)
			switch {
			case req.Scheme != oauthtest.SchemeDPoP || req.DPoPJKT != jkt:
				t.Errorf("the %s process's API request: scheme %q, proof key %q; want DPoP with the stored key's %q", name, req.Scheme, req.DPoPJKT, jkt)
			case digest(req.Token) != r.ATDigest:
				t.Errorf("the %s process sent the API another access token than Token returned", name)
			case info.DPoPJKT != jkt:
				t.Errorf("the %s process's access token is bound to %q, want the stored key's %q", name, info.DPoPJKT, jkt)
			}
		}
		if seen != 1 {
			t.Errorf("the API saw %d requests from the %s process, want 1", seen, name)
		}
	}

	// The store still holds the same key, with a live token set bound to it.
	e1 := w.assertStoredActive()
	if !bytes.Equal(e1.KeyPair, e0.KeyPair) {
		t.Fatal("the stored DPoP key was replaced")
	}
	if info, _ := w.as.Introspect(e1.RefreshToken); info.DPoPJKT != jkt {
		t.Fatalf("the stored refresh token is bound to %q, want the stored key's %q", info.DPoPJKT, jkt)
	}
	w.remember(e1.AccessToken, e1.RefreshToken)

	var out string
	for _, ch := range children {
		out += ch.stdout.String() + ch.stderr.String()
	}
	if f := findSecrets(out, append(w.issuedSecrets(), keySecrets...)...); len(f) != 0 {
		t.Fatalf("secrets in the children's output: %v", f)
	}
	t.Logf("%d refreshes across 3 processes, all with the key %s; token endpoint proofs %d",
		len(pres), jkt, stats.DPoPProofs[oauthtest.EndpointToken])
}
