// Command stampede counts the token-endpoint calls made when many callers
// find the same expired token at once, for tokenward and for
// golang.org/x/oauth2 (see package bench):
//
//	go run ./bench/stampede [-goroutines 100] [-processes 5] [-latency 200ms] [-grant all] [-store encrypted-file]
//
// The goroutine case: one process, one shared *http.Client, -goroutines
// goroutines each sending one API request at the same moment. The process
// case: -processes copies of this binary (re-executed, told the fake
// server's URL on their stdin) sharing one token store, each sending one
// request at the same moment. tokenward's processes share a store of the
// -store mode in a temporary directory and its cross-process lock;
// x/oauth2's processes read the token from a JSON file, refresh it through
// their TokenSource and write it back, with no lock, as hand-written code
// usually does. -grant is login (a rotating refresh token), client_credentials
// or all. It exits 1 when the scenario could not run.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/tokenward/tokenward/internal/bench"
	"github.com/tokenward/tokenward/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if bench.IsStampedeChild() {
		os.Exit(bench.StampedeChild(ctx, os.Stdin, os.Stdout))
	}
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("stampede", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg bench.StampedeConfig
	fs.IntVar(&cfg.Goroutines, "goroutines", bench.DefaultStampedeGoroutines, "goroutines of the goroutine case (0 skips it)")
	fs.IntVar(&cfg.Processes, "processes", bench.DefaultStampedeProcesses, "processes of the process case (0 skips it)")
	fs.DurationVar(&cfg.TokenLatency, "latency", bench.DefaultTokenLatency, "token endpoint latency")
	grant := fs.String("grant", "all", "login, client_credentials or all")
	mode := fs.String("store", string(store.ModeEncryptedFile), "tokenward's store: encrypted-file, plaintext-file or keychain")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(stderr, "stampede: unexpected arguments:", fs.Args())
		return 2
	}
	if cfg.Goroutines < 0 || cfg.Processes < 0 || cfg.TokenLatency <= 0 || cfg.Goroutines+cfg.Processes == 0 {
		fmt.Fprintln(stderr, "stampede: -goroutines and -processes must not be negative nor both 0, -latency must be positive")
		return 2
	}
	grants := []string{bench.GrantLogin, bench.GrantClientCredentials}
	switch *grant {
	case "all":
	case bench.GrantLogin, bench.GrantClientCredentials:
		grants = []string{*grant}
	default:
		fmt.Fprintln(stderr, "stampede: -grant must be login, client_credentials or all")
		return 2
	}
	m, err := store.ParseMode(*mode)
	if err != nil || m == store.ModeMemory {
		fmt.Fprintln(stderr, "stampede: -store must be encrypted-file, plaintext-file or keychain")
		return 2
	}
	cfg.StoreMode = m

	var results []bench.StampedeResult
	for _, g := range grants {
		cfg.Grant = g
		for _, c := range []string{bench.Tokenward, bench.XOAuth2} {
			if cfg.Goroutines > 0 {
				r, err := bench.RunGoroutineStampede(ctx, cfg, c)
				if err != nil {
					fmt.Fprintf(stderr, "stampede: %s, goroutines, %s: %v\n", g, c, err)
					return 1
				}
				results = append(results, r)
			}
		}
		for _, c := range []string{bench.Tokenward, bench.XOAuth2} {
			if cfg.Processes > 0 {
				r, err := bench.RunProcessStampede(ctx, cfg, c)
				if err != nil {
					fmt.Fprintf(stderr, "stampede: %s, processes, %s: %v\n", g, c, err)
					return 1
				}
				results = append(results, r)
			}
		}
	}
	if err := bench.WriteStampedeTable(stdout, cfg, results); err != nil {
		fmt.Fprintln(stderr, "stampede:", err)
		return 1
	}
	return 0
}
