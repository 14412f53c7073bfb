package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/tokenward/tokenward/client"
	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/store"
)

// Defaults of StampedeConfig.
const (
	DefaultStampedeGoroutines = 100
	DefaultStampedeProcesses  = 5
)

// ChildEnv is the environment variable that makes a re-executed binary act
// as one process of [RunProcessStampede]: a program (or TestMain) that calls
// RunProcessStampede must check [IsStampedeChild] first and then run
// [StampedeChild] instead of its normal work.
const ChildEnv = "TOKENWARD_BENCH_STAMPEDE_CHILD"

// StampedeConfig configures [RunGoroutineStampede] and [RunProcessStampede].
// The zero value of every field means its default.
type StampedeConfig struct {
	// Goroutines is the number of goroutines of the goroutine case.
	// Default 100.
	Goroutines int
	// Processes is the number of processes of the process case. Default 5.
	Processes int
	// TokenLatency is how long the token endpoint takes to answer. Default
	// 200 ms: every caller arrives while the first refresh is in flight.
	TokenLatency time.Duration
	// Grant is GrantLogin (default: a refresh token, rotated on use, with
	// reuse detection) or GrantClientCredentials.
	Grant string
	// StoreMode is tokenward's store: store.ModeEncryptedFile (default),
	// store.ModePlaintextFile, store.ModeKeychain (needs a Secret Service
	// or the OS keychain; entries go under the service "tokenward-bench")
	// or store.ModeMemory (goroutine case only).
	StoreMode store.Mode
	// Dir holds the stores, lock files and x/oauth2's token files. Default:
	// a new temporary directory, removed afterwards.
	Dir string
	// InMemory runs the server of the goroutine case in memory, reached
	// through its Transport. The process case always uses loopback sockets.
	InMemory bool
	// Executable is the binary the process case re-executes, with
	// ChildEnv=1 in its environment and ChildArgs as arguments. Default:
	// os.Executable().
	Executable string
	// ChildArgs are the arguments of each re-executed process.
	ChildArgs []string
}

func (c StampedeConfig) withDefaults() StampedeConfig {
	if c.Goroutines <= 0 {
		c.Goroutines = DefaultStampedeGoroutines
	}
	if c.Processes <= 0 {
		c.Processes = DefaultStampedeProcesses
	}
	if c.TokenLatency <= 0 {
		c.TokenLatency = DefaultTokenLatency
	}
	if c.Grant == "" {
		c.Grant = GrantLogin
	}
	if c.StoreMode == "" {
		c.StoreMode = store.ModeEncryptedFile
	}
	return c
}

// StampedeResult is one row of the stampede scenario.
type StampedeResult struct {
	// Case is "goroutines" or "processes"; N how many of them.
	Case string
	N    int
	// Client is Tokenward or XOAuth2; Grant the grant used.
	Client, Grant string
	// TokenCalls counts the requests to the token endpoint.
	TokenCalls int
	// OK and Failed count the callers whose API request succeeded or not.
	OK, Failed int
	// FirstError describes the first failure, without secrets.
	FirstError string
	// Replays counts presentations of a refresh token that had been
	// presented before. With rotation the first replay makes the server
	// revoke the whole login (reuse detection, as RFC 9700 recommends for
	// refresh tokens of public clients): LoginRevoked, and the user has to
	// sign in again.
	Replays      int
	LoginRevoked bool
	// Elapsed is the time from the start signal to the last answer.
	Elapsed time.Duration
}

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

// RunGoroutineStampede starts one client (Tokenward or XOAuth2) on a token
// that has just expired, then lets cfg.Goroutines goroutines send one API
// request each at the same moment through one shared *http.Client, and
// counts the token-endpoint calls. tokenward's client reads the expired
// token from its store; x/oauth2's gets it as its initial token, as if
// loaded from disk.
func RunGoroutineStampede(ctx context.Context, cfg StampedeConfig, which string) (StampedeResult, error) {
	cfg = cfg.withDefaults()
	res := StampedeResult{Case: "goroutines", N: cfg.Goroutines, Client: which, Grant: cfg.Grant}
	fx, err := newFixture(time.Hour, cfg.TokenLatency, cfg.InMemory, cfg.Goroutines)
	if err != nil {
		return res, err
	}
	defer fx.close()
	tok, err := fx.expiredToken(cfg.Grant)
	if err != nil {
		return res, err
	}
	dir, cleanup, err := tempDir(cfg.Dir)
	if err != nil {
		return res, err
	}
	defer cleanup()

	base := fx.newBase()
	defer closeIdle(base)
	var hc *http.Client
	switch which {
	case Tokenward:
		st, err := store.Open(ctx, storeOptions(cfg.StoreMode, dir, randomPassphrase()))
		if err != nil {
			return res, fmt.Errorf("bench: opening the store: %w", err)
		}
		remove, err := fx.seedTokenward(ctx, st, cfg.Grant, tok)
		if err != nil {
			return res, err
		}
		defer remove()
		ccfg := fx.tokenwardConfig(cfg.Grant, base)
		ccfg.Store = st
		c, err := client.New(ctx, func(opts *client.Options) { *opts = ccfg })
		if err != nil {
			return res, fmt.Errorf("bench: tokenward: %w", err)
		}
		defer c.Close()
		if hc, err = c.HTTPClient(ctx); err != nil {
			return res, fmt.Errorf("bench: tokenward: %w", err)
		}
	case XOAuth2:
		ctx := withBase(ctx, base)
		hc = oauth2.NewClient(ctx, xoauth2Source(ctx, cfg.Grant, fx.as.TokenURL(), fx.secret, tok))
	default:
		return res, fmt.Errorf("bench: unknown client %q", which)
	}
	fx.as.ResetStats()

	target := fx.target()
	errs := make([]error, cfg.Goroutines)
	startSignal := make(chan struct{})
	var ready, wg sync.WaitGroup
	for i := range cfg.Goroutines {
		ready.Add(1)
		wg.Go(func() {
			ready.Done()
			<-startSignal
			errs[i] = get(ctx, hc, target)
		})
	}
	ready.Wait()
	t0 := time.Now()
	close(startSignal)
	wg.Wait()
	res.Elapsed = time.Since(t0)
	for _, err := range errs {
		res.count(err)
	}
	res.serverStats(fx.as)
	return res, ctx.Err()
}

// serverStats fills in what the server saw.
func (r *StampedeResult) serverStats(as *oauthtest.Server) {
	st := as.Stats()
	r.TokenCalls, r.LoginRevoked = st.TokenPosts, st.FamilyRevocations > 0
	seen := map[string]bool{}
	for _, p := range as.RefreshPresentations() {
		if seen[p.Token] {
			r.Replays++
		}
		seen[p.Token] = true
	}
}

func (r *StampedeResult) count(err error) {
	if err == nil {
		r.OK++
		return
	}
	r.Failed++
	if r.FirstError == "" {
		r.FirstError = describe(err)
	}
}

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

const (
	lineReady  = "READY"
	lineGo     = "GO"
	lineResult = "RESULT "
)

// RunProcessStampede starts one fake server with sockets, stores an access
// token that has just expired, starts cfg.Processes copies of
// cfg.Executable in child mode and, once every one of them has built its
// client, tells them all at once to send one API request; then it counts
// the token-endpoint calls.
//
// tokenward's processes each build a client.New on the same store
// (cfg.StoreMode under cfg.Dir); the store's file lock serialises their
// refreshes. x/oauth2's processes follow the usual hand-written pattern:
// read the token from a JSON file, wrap it in a TokenSource, send the
// request (the source refreshes the expired token), and write the token back
// if it changed; nothing serialises them.
func RunProcessStampede(ctx context.Context, cfg StampedeConfig, which string) (StampedeResult, error) {
	cfg = cfg.withDefaults()
	res := StampedeResult{Case: "processes", N: cfg.Processes, Client: which, Grant: cfg.Grant}
	if which != Tokenward && which != XOAuth2 {
		return res, fmt.Errorf("bench: unknown client %q", which)
	}
	if cfg.StoreMode == store.ModeMemory && which == Tokenward {
		return res, errors.New("bench: processes cannot share a memory store")
	}
	exe := cfg.Executable
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return res, err
		}
	}
	fx, err := newFixture(time.Hour, cfg.TokenLatency, false, 2)
	if err != nil {
		return res, err
	}
	defer fx.close()
	tok, err := fx.expiredToken(cfg.Grant)
	if err != nil {
		return res, err
	}
	dir, cleanup, err := tempDir(cfg.Dir)
	if err != nil {
		return res, err
	}
	defer cleanup()
	cc := childConfig{
		Client: which, Grant: cfg.Grant, Issuer: fx.as.Issuer(), TokenURL: fx.as.TokenURL(), APIURL: fx.api.URL(),
		Secret: fx.secret, StoreMode: cfg.StoreMode, Dir: dir, Passphrase: randomPassphrase(),
		TokenFile: filepath.Join(dir, "token.json"),
	}
	switch which {
	case Tokenward:
		st, err := store.Open(ctx, storeOptions(cc.StoreMode, cc.Dir, cc.Passphrase))
		if err != nil {
			return res, fmt.Errorf("bench: opening the store: %w", err)
		}
		remove, err := fx.seedTokenward(ctx, st, cfg.Grant, tok)
		if err != nil {
			return res, err
		}
		defer remove()
	case XOAuth2:
		if err := writeTokenFile(cc.TokenFile, tok); err != nil {
			return res, err
		}
	}
	fx.as.ResetStats()

	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	procs := make([]*child, cfg.Processes)
	defer func() {
		for _, p := range procs {
			if p != nil {
				p.stop()
			}
		}
	}()
	for i := range procs {
		p, err := startChild(ctx, exe, cfg.ChildArgs, cc)
		if err != nil {
			return res, err
		}
		procs[i] = p
	}
	// Barrier: every process has built its client before any request.
	for i, p := range procs {
		if err := p.expect(lineReady); err != nil {
			return res, fmt.Errorf("bench: process %d did not get ready: %w", i, err)
		}
	}
	t0 := time.Now()
	for _, p := range procs {
		io.WriteString(p.stdin, lineGo+"\n")
		p.stdin.Close()
	}
	for i, p := range procs {
		r, err := p.result()
		if err != nil {
			return res, fmt.Errorf("bench: process %d: %w", i, err)
		}
		if r.OK {
			res.count(nil)
		} else {
			res.count(errors.New(r.Error))
		}
	}
	res.Elapsed = time.Since(t0)
	res.serverStats(fx.as)
	return res, nil
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

// child is one re-executed process.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Scanner
	stderr *lockedBuffer
}

func startChild(ctx context.Context, exe string, args []string, cc childConfig) (*child, error) {
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(os.Environ(), ChildEnv+"=1")
	p := &child{cmd: cmd, stderr: &lockedBuffer{}}
	cmd.Stderr = p.stderr
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.out = bufio.NewScanner(stdout)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: starting %s: %w", exe, err)
	}
	b, _ := json.Marshal(cc)
	if _, err := p.stdin.Write(append(b, '\n')); err != nil {
		p.stop()
		return nil, fmt.Errorf("bench: configuring a process: %w", err)
	}
	return p, nil
}

// expect reads lines until want; anything else is an error.
func (p *child) expect(want string) error {
	if p.out.Scan() && p.out.Text() == want {
		return nil
	}
	return fmt.Errorf("expected %s; stderr: %s", want, p.stderr.tail())
}

// result reads the process's result line and waits for it to exit.
func (p *child) result() (childResult, error) {
	var r childResult
	found := false
	for p.out.Scan() {
		if line, ok := strings.CutPrefix(p.out.Text(), lineResult); ok {
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				return r, err
			}
			found = true
		}
	}
	err := p.cmd.Wait()
	p.cmd = nil
	if err != nil || !found {
		return r, fmt.Errorf("exit %v, result found: %v; stderr: %s", err, found, p.stderr.tail())
	}
	return r, nil
}

// stop kills a process that has not been waited for.
func (p *child) stop() {
	if p.cmd != nil && p.cmd.Process != nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
		p.cmd = nil
	}
}

// lockedBuffer collects a child's stderr.
type lockedBuffer struct {
	mu sync.Mutex // guards b
	b  []byte
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	return len(p), nil
}

// tail returns the end of the output (children print no secret).
func (l *lockedBuffer) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := string(l.b)
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	return strings.TrimSpace(s)
}

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

// WriteStampedeTable prints one row per result.
func WriteStampedeTable(w io.Writer, cfg StampedeConfig, results []StampedeResult) error {
	cfg = cfg.withDefaults()
	fmt.Fprintf(w, "stampede: token endpoint latency %s, the stored access token has just expired; tokenward store: %s\n",
		cfg.TokenLatency, cfg.StoreMode)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "grant\tcase\tclient\ttoken calls\tok\tfailed\trefresh token replays\tlogin revoked\telapsed\t\n")
	for _, r := range results {
		revoked := "no"
		if r.LoginRevoked {
			revoked = "YES"
		}
		fmt.Fprintf(tw, "%s\t%d %s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t\n", r.Grant, r.N, r.Case, r.Client, r.TokenCalls, r.OK, r.Failed,
			r.Replays, revoked, round(r.Elapsed))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range results {
		if r.FirstError != "" {
			fmt.Fprintf(w, "%s, %d %s, %s: first failure: %s\n", r.Grant, r.N, r.Case, r.Client, r.FirstError)
		}
	}
	return nil
}
