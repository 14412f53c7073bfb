package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/tokenward/tokenward/client"
	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/store"
)

// Defaults of StallConfig.
const (
	DefaultStallWorkers   = 8
	DefaultStallDuration  = 40 * time.Second
	DefaultTokenLatency   = 200 * time.Millisecond
	DefaultTokenLifetime  = 12 * time.Second
	DefaultStallThreshold = 100 * time.Millisecond
)

// StallConfig configures [RunStall]. The zero value of every field means its
// default.
type StallConfig struct {
	// Workers is the number of goroutines sending requests. Default 8.
	Workers int
	// Duration is how long the workers send requests, after the first
	// request. Default 40 s: long enough for several refreshes.
	Duration time.Duration
	// TokenLatency is how long the token endpoint takes to answer. Default
	// 200 ms.
	TokenLatency time.Duration
	// TokenLifetime is the access tokens' lifetime (expires_in). Default
	// 12 s. Below 5 s tokenward stretches it to its minimum lifetime, so the
	// API would start refusing tokens: keep it at 5 s or more.
	TokenLifetime time.Duration
	// Threshold is the latency above which a request counts as stalled.
	// Default 100 ms.
	Threshold time.Duration
	// Pace is a pause after each request of a worker. Default 0: none.
	// Under testing/synctest it must be positive, or the fake clock would
	// never advance.
	Pace time.Duration
	// InMemory runs the server in memory (oauthtest.Config.InMemory), reached
	// through its Transport instead of loopback sockets, as testing/synctest
	// requires. Default false: real sockets.
	InMemory bool
}

func (c StallConfig) withDefaults() StallConfig {
	if c.Workers <= 0 {
		c.Workers = DefaultStallWorkers
	}
	if c.Duration <= 0 {
		c.Duration = DefaultStallDuration
	}
	if c.TokenLatency <= 0 {
		c.TokenLatency = DefaultTokenLatency
	}
	if c.TokenLifetime <= 0 {
		c.TokenLifetime = DefaultTokenLifetime
	}
	if c.Threshold <= 0 {
		c.Threshold = DefaultStallThreshold
	}
	return c
}

// StallResult is one row of the stall scenario.
type StallResult struct {
	// Client is [Tokenward] or [XOAuth2].
	Client string
	// FirstRequest is the latency of the first request, which waited for
	// the first token. It is not part of the figures below.
	FirstRequest time.Duration
	// Requests and Errors count the requests sent by the workers and those
	// that failed (an error or a status other than 200).
	Requests, Errors int
	// FirstError describes the first failure, without secrets.
	FirstError string
	// TokenCalls counts the token-endpoint requests, the first one
	// included.
	TokenCalls int
	// P50, P99 and Max summarise the workers' request latencies.
	P50, P99, Max time.Duration
	// Over counts the requests slower than the threshold.
	Over int
	// OverAtRefresh counts those of them that were in flight while a
	// token request was, and that stay over the threshold once the machine
	// pauses they overlap are taken out of their latency: the stalls a
	// refresh can have caused. The others are the machine's.
	OverAtRefresh int
	// Pauses counts the machine pauses seen while the workers ran (gaps of
	// more than 20 ms in which a bystander goroutine did not run);
	// PauseMax is the longest and PauseTotal their sum.
	Pauses               int
	PauseMax, PauseTotal time.Duration
	// Elapsed is how long the workers ran.
	Elapsed time.Duration
}

// RunStall runs the stall scenario for one client (Tokenward or XOAuth2)
// against a fresh fake server: one request to get the first token, then
// cfg.Workers goroutines sending requests for cfg.Duration. Both clients use
// client credentials, each written the way its documentation suggests:
// client.New(...).HTTPClient for tokenward, clientcredentials.Config.Client
// for x/oauth2, over equally configured base transports.
func RunStall(ctx context.Context, cfg StallConfig, which string) (StallResult, error) {
	cfg = cfg.withDefaults()
	res := StallResult{Client: which}
	fx, err := newFixture(cfg.TokenLifetime, cfg.TokenLatency, cfg.InMemory, cfg.Workers)
	if err != nil {
		return res, err
	}
	defer fx.close()

	rec := newTokenCallRecorder(fx.newBase(), fx.as.TokenURL())
	hc, closeClient, err := stallClient(ctx, fx, which, rec)
	if err != nil {
		return res, err
	}
	defer closeClient()
	target := fx.target()

	t0 := time.Now()
	if err := get(ctx, hc, target); err != nil {
		return res, fmt.Errorf("bench: %s: first request: %s", which, describe(err))
	}
	res.FirstRequest = time.Since(t0)

	latencies := make([][]time.Duration, cfg.Workers)
	slow := make([][]span, cfg.Workers) // the requests over the threshold
	errs := make([]int, cfg.Workers)
	firstErr := make([]error, cfg.Workers)
	var wg sync.WaitGroup
	mon := startPauseMonitor()
	start := time.Now()
	end := start.Add(cfg.Duration)
	for i := range cfg.Workers {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 1024)
			for ctx.Err() == nil {
				t := time.Now()
				if !t.Before(end) {
					break
				}
				err := get(ctx, hc, target)
				done := time.Now()
				d := done.Sub(t)
				lat = append(lat, d)
				if d > cfg.Threshold {
					slow[i] = append(slow[i], span{t, done})
				}
				if err != nil && ctx.Err() == nil {
					errs[i]++
					if firstErr[i] == nil {
						firstErr[i] = err
					}
				}
				if cfg.Pace > 0 {
					time.Sleep(cfg.Pace) // the workload's think time, not synchronisation
				}
			}
			latencies[i] = lat
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	pauses := mon.finish()
	if err := ctx.Err(); err != nil {
		return res, err
	}
	for _, p := range pauses {
		d := p.to.Sub(p.from)
		res.Pauses++
		res.PauseTotal += d
		res.PauseMax = max(res.PauseMax, d)
	}

	n := 0
	for _, l := range latencies {
		n += len(l)
	}
	all := make([]time.Duration, 0, n)
	for i := range cfg.Workers {
		all = append(all, latencies[i]...)
		res.Errors += errs[i]
		if res.FirstError == "" && firstErr[i] != nil {
			res.FirstError = describe(firstErr[i])
		}
	}
	res.Requests = len(all)
	slices.Sort(all)
	res.P50, res.P99, res.Max = percentile(all, 50), percentile(all, 99), percentile(all, 100)
	calls := rec.calls()
	for i := range cfg.Workers {
		for _, sp := range slow[i] {
			res.Over++
			if overlap(sp, calls) > 0 && sp.to.Sub(sp.from)-overlap(sp, pauses) > cfg.Threshold {
				res.OverAtRefresh++
			}
		}
	}
	res.TokenCalls = fx.as.Stats().Grants[oauthtest.GrantClientCredentials]
	return res, nil
}

// stallClient builds the HTTP client of one side over base and a function
// that releases it.
func stallClient(ctx context.Context, fx *fixture, which string, base http.RoundTripper) (*http.Client, func(), error) {
	switch which {
	case Tokenward:
		st, err := store.Open(ctx, func(o *store.Options) { o.Mode = store.ModeMemory })
		if err != nil {
			return nil, nil, err
		}
		cfg := fx.jobConfig(base)
		cfg.Store = st
		c, err := client.New(ctx, func(opts *client.Options) { *opts = cfg })
		if err != nil {
			return nil, nil, fmt.Errorf("bench: tokenward: %w", err)
		}
		hc, err := c.HTTPClient(ctx)
		if err != nil {
			c.Close()
			return nil, nil, fmt.Errorf("bench: tokenward: %w", err)
		}
		return hc, func() { c.Close(); closeIdle(base) }, nil
	case XOAuth2:
		cc := clientcredentials.Config{
			ClientID:     jobClientID,
			ClientSecret: fx.secret,
			TokenURL:     fx.as.TokenURL(),
			AuthStyle:    oauth2.AuthStyleInHeader,
		}
		return cc.Client(withBase(ctx, base)), func() { closeIdle(base) }, nil
	}
	return nil, nil, fmt.Errorf("bench: unknown client %q", which)
}

// tokenCallRecorder is a base transport that records when each request to
// the token endpoint was in flight.
type tokenCallRecorder struct {
	base       http.RoundTripper
	host, path string

	mu    sync.Mutex // guards spans
	spans []span
}

func newTokenCallRecorder(base http.RoundTripper, tokenURL string) *tokenCallRecorder {
	u, err := url.Parse(tokenURL)
	if err != nil {
		panic("bench: the fake server's token URL does not parse: " + err.Error())
	}
	return &tokenCallRecorder{base: base, host: u.Host, path: u.Path}
}

// RoundTrip implements http.RoundTripper.
func (r *tokenCallRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host != r.host || req.URL.Path != r.path {
		return r.base.RoundTrip(req)
	}
	t := time.Now()
	resp, err := r.base.RoundTrip(req)
	r.mu.Lock()
	r.spans = append(r.spans, span{t, time.Now()})
	r.mu.Unlock()
	return resp, err
}

// CloseIdleConnections closes the base's idle connections.
func (r *tokenCallRecorder) CloseIdleConnections() { closeIdle(r.base) }

// calls returns the recorded token requests, sorted by start. Both clients
// make one at a time, so they do not overlap.
func (r *tokenCallRecorder) calls() []span {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.spans)
	slices.SortFunc(out, func(a, b span) int { return a.from.Compare(b.from) })
	return out
}

func closeIdle(rt http.RoundTripper) {
	if c, ok := rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// percentile returns the p-th percentile (nearest rank) of sorted, or 0.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (len(sorted)*p + 99) / 100 // ceil(n*p/100)
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// WriteStallTable prints the scenario's parameters and one row per result.
func WriteStallTable(w io.Writer, cfg StallConfig, results []StallResult) error {
	cfg = cfg.withDefaults()
	fmt.Fprintf(w, "stall: %d goroutines for %s each, token endpoint latency %s, token lifetime %s, stalled = over %s\n",
		cfg.Workers, cfg.Duration, cfg.TokenLatency, cfg.TokenLifetime, cfg.Threshold)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "client\trequests\terrors\ttoken calls\tfirst request\tp50\tp99\tmax\tover %s\tof which at a refresh\tmachine pauses\t\n",
		cfg.Threshold)
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%d\t%d\t%d (max %s, total %s)\t\n", r.Client, r.Requests, r.Errors, r.TokenCalls,
			round(r.FirstRequest), round(r.P50), round(r.P99), round(r.Max), r.Over, r.OverAtRefresh,
			r.Pauses, round(r.PauseMax), round(r.PauseTotal))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "token calls include the first one; the first request (which waited for it) is not in p50/p99/max/over.")
	fmt.Fprintln(w, "at a refresh: in flight while a token request was, and still over the threshold without the machine pauses it overlaps.")
	fmt.Fprintf(w, "machine pauses: gaps over %s in which a bystander goroutine did not run (a busy host).\n", pauseFloor)
	for _, r := range results {
		if r.FirstError != "" {
			fmt.Fprintf(w, "%s: first error: %s\n", r.Client, r.FirstError)
		}
	}
	return nil
}

// round keeps three significant digits or so.
func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}
