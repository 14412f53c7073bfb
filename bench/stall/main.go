// Command stall measures how long API requests wait while the access token
// is refreshed, for tokenward and for golang.org/x/oauth2, one after the
// other in the same process (see package bench):
//
//	go run ./bench/stall [-duration 40s] [-latency 200ms] [-lifetime 12s] [-workers 8]
//
// Each client gets its own in-process fake authorization server (client
// credentials, token endpoint answering after -latency, tokens living
// -lifetime) and protected API on loopback sockets. After one first request,
// which waits for the first token and is reported on its own, -workers
// goroutines send requests without pause for -duration. One row per client:
// requests, errors, token-endpoint calls (the first included), the first
// request's latency, p50, p99 and max latency, and the number of requests
// slower than -threshold. It exits 1 when a request failed.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/tokenward/tokenward/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("stall", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg bench.StallConfig
	fs.IntVar(&cfg.Workers, "workers", bench.DefaultStallWorkers, "goroutines sending requests")
	fs.DurationVar(&cfg.Duration, "duration", bench.DefaultStallDuration, "how long each client is measured")
	fs.DurationVar(&cfg.TokenLatency, "latency", bench.DefaultTokenLatency, "token endpoint latency")
	fs.DurationVar(&cfg.TokenLifetime, "lifetime", bench.DefaultTokenLifetime, "access token lifetime (at least 5s)")
	fs.DurationVar(&cfg.Threshold, "threshold", bench.DefaultStallThreshold, "a request slower than this counts as stalled")
	only := fs.String("only", "", "measure only this client (tokenward or x-oauth2)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(stderr, "stall: unexpected arguments:", fs.Args())
		return 2
	}
	if cfg.Workers <= 0 || cfg.Duration <= 0 || cfg.TokenLatency <= 0 || cfg.TokenLifetime <= 0 || cfg.Threshold <= 0 {
		fmt.Fprintln(stderr, "stall: -workers, -duration, -latency, -lifetime and -threshold must be positive")
		return 2
	}
	clients := []string{bench.Tokenward, bench.XOAuth2}
	switch *only {
	case "":
	case bench.Tokenward, bench.XOAuth2:
		clients = []string{*only}
	default:
		fmt.Fprintf(stderr, "stall: -only must be %s or %s\n", bench.Tokenward, bench.XOAuth2)
		return 2
	}

	var results []bench.StallResult
	for _, c := range clients {
		fmt.Fprintf(stderr, "stall: measuring %s for %s...\n", c, cfg.Duration)
		r, err := bench.RunStall(ctx, cfg, c)
		if err != nil {
			fmt.Fprintln(stderr, "stall:", err)
			return 1
		}
		results = append(results, r)
	}
	if err := bench.WriteStallTable(stdout, cfg, results); err != nil {
		fmt.Fprintln(stderr, "stall:", err)
		return 1
	}
	for _, r := range results {
		if r.Errors > 0 {
			return 1
		}
	}
	return 0
}
