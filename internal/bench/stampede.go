package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/store"
)

// Defaults of StampedeConfig.
const (
	DefaultStampedeGoroutines = 100
	DefaultStampedeProcesses  = 5
)

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
