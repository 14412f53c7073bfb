package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/client"
	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/store"
)

// ChildEnv is the environment variable that makes a re-executed binary act
// as one process of [RunProcessStampede]: a program (or TestMain) that calls
// RunProcessStampede must check [IsStampedeChild] first and then run
// [StampedeChild] instead of its normal work.
const ChildEnv = "TOKENWARD_BENCH_STAMPEDE_CHILD"

// childConfig is what the parent tells each process, on its stdin: not in
// its arguments, which every user of the machine can read, nor in its
// environment, which its own children would inherit.
type childConfig struct {
	Client     string     `json:"client"`
	Grant      string     `json:"grant"`
	Issuer     string     `json:"issuer"`
	TokenURL   string     `json:"token_url"`
	APIURL     string     `json:"api_url"`
	Secret     string     `json:"secret"`
	StoreMode  store.Mode `json:"store_mode"`
	Dir        string     `json:"dir"`
	Passphrase string     `json:"passphrase"`
	TokenFile  string     `json:"token_file"`
}

// childResult is what a process reports on its stdout.
type childResult struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// The lines a process writes on its stdout (READY, RESULT) and reads on
// its stdin (GO), after its configuration.
const (
	lineReady  = "READY"
	lineGo     = "GO"
	lineResult = "RESULT "
)

// IsStampedeChild reports whether this process was started by
// [RunProcessStampede].
func IsStampedeChild() bool { return os.Getenv(ChildEnv) == "1" }

// StampedeChild is the body of one process of [RunProcessStampede]: it
// reads its configuration from in, builds its client, writes READY to out,
// waits for GO, sends one API request and writes its result. It returns the
// process's exit code.
func StampedeChild(ctx context.Context, in io.Reader, out io.Writer) int {
	sc := bufio.NewScanner(in)
	var cc childConfig
	if !sc.Scan() {
		fmt.Fprintln(os.Stderr, "stampede child: no configuration on stdin")
		return 2
	}
	if err := json.Unmarshal(sc.Bytes(), &cc); err != nil {
		fmt.Fprintln(os.Stderr, "stampede child: bad configuration:", err)
		return 2
	}
	send, err := childClient(ctx, cc)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stampede child:", describe(err))
		return 1
	}
	fmt.Fprintln(out, lineReady)
	if !sc.Scan() || sc.Text() != lineGo {
		fmt.Fprintln(os.Stderr, "stampede child: no start signal")
		return 1
	}
	r := childResult{OK: true}
	if err := send(); err != nil {
		r = childResult{Error: describe(err)}
	}
	b, _ := json.Marshal(r)
	fmt.Fprintf(out, "%s%s\n", lineResult, b)
	return 0
}

// childClient prepares the process's one request.
func childClient(ctx context.Context, cc childConfig) (func() error, error) {
	base := http.DefaultTransport.(*http.Transport).Clone()
	target := cc.APIURL + "/items"
	switch cc.Client {
	case Tokenward:
		st, err := store.Open(ctx, storeOptions(cc.StoreMode, cc.Dir, cc.Passphrase))
		if err != nil {
			return nil, err
		}
		var cfg client.Options
		if cc.Grant == GrantClientCredentials {
			cfg = client.Options{ClientID: jobClientID, ClientSecret: cc.Secret, AuthMethod: client.AuthSecretBasic, Grant: client.GrantClientCredentials}
		} else {
			cfg = client.Options{ClientID: oauthtest.DefaultClientID, Prompt: io.Discard}
		}
		cfg.Issuer, cfg.APIOrigins, cfg.AllowInsecureLoopback = cc.Issuer, []string{cc.APIURL}, true
		cfg.Store, cfg.HTTP.Transport = st, base
		c, err := client.New(ctx, func(opts *client.Options) { *opts = cfg })
		if err != nil {
			return nil, err
		}
		hc, err := c.HTTPClient(ctx)
		if err != nil {
			return nil, err
		}
		return func() error {
			defer c.Close()
			return get(ctx, hc, target)
		}, nil
	case XOAuth2:
		ctx := withBase(ctx, base)
		return func() error {
			tok, err := readTokenFile(cc.TokenFile)
			if err != nil {
				return err
			}
			ts := xoauth2Source(ctx, cc.Grant, cc.TokenURL, cc.Secret, tok)
			if err := get(ctx, oauth2.NewClient(ctx, ts), target); err != nil {
				return err
			}
			now, err := ts.Token()
			if err != nil {
				return err
			}
			if now.AccessToken != tok.AccessToken {
				return writeTokenFile(cc.TokenFile, now)
			}
			return nil
		}, nil
	}
	return nil, fmt.Errorf("unknown client %q", cc.Client)
}
