// Command server-job is a background job that calls an API with the client
// credentials grant from many goroutines at once, and shows that tokenward
// fetches one token per lifetime for all of them (not one per worker or per
// request), refreshing it in the background before it expires.
//
//	TOKENWARD_CLIENT_SECRET=... server-job --issuer https://as.example \
//	    --client-id my-job --resource https://api.example --url https://api.example/items
//
// Flags: --issuer, --client-id, --scopes, --resource, --url (the API to
// call), --workers (default 32), --duration (default 30s),
// --allow-insecure-loopback. The secret comes only from
// TOKENWARD_CLIENT_SECRET. Tokens are kept in memory (a job has no user and
// can always fetch a new one); nothing is written to disk.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenward/tokenward/client"
	"github.com/tokenward/tokenward/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runWith(ctx, args, stdout, stderr, nil)
}

// runWith is run with a test seam: configure, when non-nil, adjusts the
// client.Options before the client is created (tests observe its events).
// main never sets it.
func runWith(ctx context.Context, args []string, stdout, stderr io.Writer, configure func(*client.Options)) int {
	fs := flag.NewFlagSet("server-job", flag.ContinueOnError)
	fs.SetOutput(stderr)
	issuer := fs.String("issuer", os.Getenv("TOKENWARD_ISSUER"), "issuer URL")
	clientID := fs.String("client-id", os.Getenv("TOKENWARD_CLIENT_ID"), "client ID")
	scopes := fs.String("scopes", "", "space-separated scopes")
	resource := fs.String("resource", "", "RFC 8707 resource indicator of the API")
	target := fs.String("url", "", "API URL to call")
	workers := fs.Int("workers", 32, "concurrent workers")
	duration := fs.Duration("duration", 30*time.Second, "how long to run")
	insecure := fs.Bool("allow-insecure-loopback", false, "accept http:// URLs on loopback hosts")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *issuer == "" || *clientID == "" || *target == "" {
		fmt.Fprintln(stderr, "server-job: --issuer, --client-id and --url are required")
		return 2
	}
	u, err := url.Parse(*target)
	if err != nil || u.Host == "" {
		fmt.Fprintln(stderr, "server-job: --url must be an absolute URL")
		return 2
	}
	st, err := store.Open(ctx, func(o *store.Options) { o.Mode = store.ModeMemory })
	if err != nil {
		fmt.Fprintln(stderr, "server-job:", err)
		return 1
	}

	var fetches, background atomic.Int32
	cfg := client.Options{
		Issuer: *issuer, ClientID: *clientID, ClientSecret: os.Getenv("TOKENWARD_CLIENT_SECRET"),
		Grant: client.GrantClientCredentials, Scopes: strings.Fields(*scopes),
		APIOrigins:            []string{u.Scheme + "://" + u.Host},
		AllowInsecureLoopback: *insecure,
		Store:                 st,
		Events: func(e client.Event) {
			if e.Kind == client.EventRefreshed {
				fetches.Add(1)
				if e.Background {
					background.Add(1)
				}
				fmt.Fprintf(stdout, "token fetched (background: %v), valid until %s\n", e.Background, e.Expiry.Format(time.TimeOnly))
			}
		},
	}
	if *resource != "" {
		cfg.Resources = []string{*resource}
	}
	if configure != nil {
		configure(&cfg)
	}
	c, err := client.New(ctx, func(opts *client.Options) { *opts = cfg })
	if err != nil {
		fmt.Fprintln(stderr, "server-job:", err)
		return 1
	}
	defer c.Close()
	hc, err := c.HTTPClient(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "server-job:", err)
		return 1
	}

	ctx, cancel := context.WithTimeout(ctx, *duration)
	defer cancel()
	var ok, failed atomic.Int64
	var maxLatency atomic.Int64
	var firstErr sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				t0 := time.Now()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, *target, nil)
				resp, err := hc.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if ctx.Err() != nil {
					return
				}
				for d := int64(time.Since(t0)); ; {
					cur := maxLatency.Load()
					if d <= cur || maxLatency.CompareAndSwap(cur, d) {
						break
					}
				}
				if err != nil || resp.StatusCode != http.StatusOK {
					failed.Add(1)
					firstErr.Do(func() {
						if err != nil {
							fmt.Fprintln(stderr, "server-job: request failed:", err)
						} else {
							fmt.Fprintln(stderr, "server-job: request failed:", resp.Status)
						}
					})
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Round(time.Millisecond)
	fmt.Fprintf(stdout, "%d workers, %s: %d requests OK, %d failed; %d token fetches (%d in the background); slowest request %s\n",
		*workers, elapsed, ok.Load(), failed.Load(), fetches.Load(), background.Load(), time.Duration(maxLatency.Load()).Round(time.Microsecond))
	if failed.Load() > 0 {
		return 1
	}
	return 0
}
