// Command quickstart shows tokenward end to end with nothing to configure:
// it starts a demo authorization server and a protected demo API on
// loopback, then walks through a client-credentials call, a user login
// (device flow, approved by the demo server), a stream of API calls while
// short-lived tokens are refreshed in the background, Status, a DPoP-bound
// token that a copy without its key cannot use, and Logout.
//
//	go run ./examples/quickstart
//
// Tokens go to the OS keychain when there is one (and are deleted at the
// end); otherwise the demo says why and keeps them in memory. It never
// writes a token to a file and never prints one.
package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenward/tokenward/client"
	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/refresh"
	"github.com/tokenward/tokenward/store"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	if err := run(ctx, os.Stdout, defaultOptions()); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// options are the demo's knobs (tests shorten the stream).
type options struct {
	tokenLifetime  time.Duration // lifetime of every access token
	refreshLatency time.Duration // how long the demo token endpoint takes to refresh
	stream         time.Duration // how long API calls are streamed
	workers        int
	keychain       bool // try the OS keychain first
	service        string
	// jobSecret is the demo job's client secret, registered at the demo
	// server: random for every run, as a real secret would be (tests set
	// one their leak scans recognise).
	jobSecret string
	// signerSecret is the DPoP demo client's secret, like jobSecret.
	signerSecret string
	// dpopKey is the DPoP demo client's key; nil (the default) lets
	// tokenward make one (tests pass one their leak scans recognise).
	dpopKey crypto.Signer
}

func defaultOptions() options {
	return options{tokenLifetime: 6 * time.Second, refreshLatency: 300 * time.Millisecond,
		stream: 10 * time.Second, workers: 8, keychain: true, service: "tokenward-quickstart",
		jobSecret: rand.Text(), signerSecret: rand.Text()}
}

func run(ctx context.Context, out io.Writer, o options) error {
	step := func(format string, a ...any) { fmt.Fprintf(out, "\n== "+format+"\n", a...) }
	say := func(format string, a ...any) { fmt.Fprintf(out, "   "+format+"\n", a...) }

	// The demo authorization server and API (in this process, on loopback).
	as, err := oauthtest.New(oauthtest.Config{
		Clients: []oauthtest.Client{
			{ID: "quickstart-job", Secret: o.jobSecret, AuthMethod: oauthtest.AuthClientSecretBasic},
			{ID: "quickstart-cli", RedirectURIs: []string{"http://127.0.0.1/callback"}},
			{ID: "quickstart-signer", Secret: o.signerSecret, AuthMethod: oauthtest.AuthClientSecretBasic},
		},
		// DPoP for the clients that ask for it (step 5); the others get
		// Bearer tokens as before.
		DPoP:                oauthtest.DPoPOptional,
		AccessTokenLifetime: o.tokenLifetime,
		DeviceInterval:      time.Second,
		DevicePendingPolls:  1,
		IDToken:             true,
		Subject:             "ada@example.com",
	})
	if err != nil {
		return err
	}
	defer as.Close()
	api, err := as.NewAPI("")
	if err != nil {
		return err
	}
	step("Demo authorization server at %s, demo API at %s", as.Issuer(), api.URL())

	st, err := openStore(ctx, o, say)
	if err != nil {
		return err
	}

	// 1. A server job: client credentials.
	step("1. Client credentials (a server job)")
	job, err := client.New(ctx, func(c *client.Options) {
		c.Issuer = as.Issuer() // endpoints come from discovery
		c.ClientID, c.ClientSecret = "quickstart-job", o.jobSecret
		c.Grant = client.GrantClientCredentials
		c.Resources = []string{api.Resource()} // the token's audience and only origin
		c.AllowInsecureLoopback = true         // the demo runs on plain http on loopback
		c.Store = st
	})
	if err != nil {
		return err
	}
	defer job.Close()
	// Whatever happens below, leave nothing behind in the keychain.
	var loggedOut bool
	defer func() {
		if !loggedOut {
			cleanup, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			job.Logout(cleanup)
		}
	}()
	jhc, err := job.HTTPClient(ctx)
	if err != nil {
		return err
	}
	for range 3 {
		if err := call(ctx, jhc, api.URL()+"/reports"); err != nil {
			return err
		}
	}
	say("3 API calls -> 200 OK, with %d token request (the token is cached and reused)", as.Stats().Grants[oauthtest.GrantClientCredentials])

	// 2. A user login, device flow. The demo server approves it itself.
	step("2. User login (device flow; the demo server approves it for you)")
	var refreshes, background, waited atomic.Int32
	var persistFailed atomic.Bool
	user, err := client.New(ctx, func(c *client.Options) {
		c.Issuer, c.ClientID = as.Issuer(), "quickstart-cli"
		c.Scopes, c.Resources = []string{"openid", "read"}, []string{api.Resource()}
		c.AllowInsecureLoopback = true
		c.Store = st
		c.DevicePrompt = func(ctx context.Context, d client.DeviceCode) {
			fmt.Fprintf(out, "   (a real app would show: open %s and enter the code it shows)\n", d.VerificationURI)
			<-ctx.Done()
		}
		// The demo's tokens live seconds, not minutes. Starting their
		// refresh at about half their life (instead of the default 80 %)
		// leaves the slow demo token endpoint several times its latency
		// before the last tenth of the lifetime, where requests would wait,
		// even on a busy machine. With real lifetimes the default leaves
		// minutes.
		c.RefreshOptions = []func(*refresh.Options){func(r *refresh.Options) { r.AdvisoryFraction = 0.5 }}
		c.Events = func(e client.Event) {
			switch e.Kind {
			case client.EventRefreshed, client.EventRefreshFailed:
				// Waiters: the requests the token cache held up for this
				// refresh (it counts them; no clock involved).
				waited.Add(int32(e.Waiters))
				if e.Kind == client.EventRefreshFailed {
					break
				}
				refreshes.Add(1)
				if e.Background {
					background.Add(1)
				}
			case client.EventPersistFailed:
				persistFailed.Store(true)
			}
		}
	})
	if err != nil {
		return err
	}
	defer user.Close()
	defer func() {
		if !loggedOut {
			cleanup, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			user.Logout(cleanup)
		}
	}()
	if err := user.Login(ctx, client.WithDevice()); err != nil {
		return err
	}
	status, err := user.Status(ctx)
	if err != nil {
		return err
	}
	say("logged in as %s; tokens saved to %s", status.Subject, status.Storage.Backend)

	// 3. A stream of API calls across several token lifetimes, with a slow
	// token endpoint: no request waits for a refresh.
	step("3. %s of API calls from %d goroutines; tokens live %s and are refreshed from about half their life; refreshing takes %s",
		o.stream, o.workers, o.tokenLifetime, o.refreshLatency)
	as.InjectFault(oauthtest.Fault{Kind: oauthtest.FaultDelay, Endpoint: oauthtest.EndpointToken, Grant: oauthtest.GrantRefreshToken, Delay: o.refreshLatency})
	hc, err := user.HTTPClient(ctx)
	if err != nil {
		return err
	}
	waitedBefore := waited.Load() // the login's first token use is not part of the stream
	lat, err := stream(ctx, hc, api.URL()+"/me", o.workers, o.stream)
	if err != nil {
		return err
	}
	slices.Sort(lat)
	say("%d requests, all 200 OK; %d token refresh(es), %d of them in the background", len(lat), refreshes.Load(), background.Load())
	say("median %s, p99 %s, slowest %s; requests that waited for a refresh: %d",
		pct(lat, 50), pct(lat, 99), lat[len(lat)-1].Round(time.Microsecond), waited.Load()-waitedBefore)
	if persistFailed.Load() {
		say("note: saving a token failed at least once; it was kept in memory and saved again")
	}

	// 4. Status: what is stored, without any secret.
	step("4. Status")
	if status, err = user.Status(ctx); err != nil {
		return err
	}
	say("subject %s, scopes %s", status.Subject, strings.Join(status.Scopes, " "))
	say("access token expires in %s; refresh token stored: %v", time.Until(status.AccessTokenExpiry).Round(time.Second), status.HasRefreshToken)
	where := status.Storage.Backend
	if status.Storage.Location != "" {
		where += ", " + status.Storage.Location
	}
	say("storage: %s; encrypted at rest: %v; survives restarts: %v", where, status.Storage.Encrypted, status.Storage.Persistent)

	// 5. DPoP: a token bound to a key of the client (RFC 9449).
	step("5. DPoP: a sender-constrained token")
	signer, err := client.New(ctx, func(c *client.Options) {
		c.Issuer = as.Issuer()
		c.ClientID, c.ClientSecret = "quickstart-signer", o.signerSecret
		c.Grant = client.GrantClientCredentials
		c.Resources = []string{api.Resource()}
		c.AllowInsecureLoopback = true
		c.Store = st
		c.DPoP = true         // tokenward makes an ES256 key and stores it with the token
		c.DPoPKey = o.dpopKey // nil: that generated key
	})
	if err != nil {
		return err
	}
	defer signer.Close()
	defer func() {
		if !loggedOut {
			cleanup, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			signer.Logout(cleanup)
		}
	}()
	if err := dpopStep(ctx, signer, as, api, say); err != nil {
		return err
	}

	// 6. Logout: revoke at the server, delete locally.
	step("6. Logout")
	before := as.Stats().Revocations
	if _, err := user.Logout(ctx); err != nil {
		return err
	}
	if _, err := job.Logout(ctx); err != nil {
		return err
	}
	if _, err := signer.Logout(ctx); err != nil { // deletes the DPoP key too
		return err
	}
	loggedOut = true
	after, err := user.Status(ctx)
	if err != nil {
		return err
	}
	say("%d tokens revoked at the server; logged in: %v", as.Stats().Revocations-before, after.LoggedIn)
	if _, err := user.Token(ctx); errors.Is(err, client.ErrReauthRequired) {
		say("the next call needs a new login (errors.Is(err, client.ErrReauthRequired))")
	}
	if s := api.Stats(); s.Foreign != 0 || s.Unknown != 0 {
		return fmt.Errorf("the demo API saw %d foreign and %d unknown tokens", s.Foreign, s.Unknown)
	}
	step("Done: no token was printed, written to a file, or left behind.")
	return nil
}

// openStore opens the OS keychain, or says why it cannot and uses memory.
func openStore(ctx context.Context, o options, say func(string, ...any)) (store.Store, error) {
	if o.keychain {
		// Mode is set explicitly so TOKENWARD_STORE cannot point the demo at
		// a plaintext file.
		st, err := store.Open(ctx, func(so *store.Options) { so.Mode = store.ModeKeychain; so.Service = o.service })
		if err == nil {
			say("tokens are stored in the OS keychain (%s, service %q) and deleted at the end", st.Status().Backend, o.service)
			return st, nil
		}
		if !errors.Is(err, store.ErrUnavailable) && !errors.Is(err, store.ErrLocked) && !errors.Is(err, store.ErrTimeout) {
			return nil, err
		}
		say("no usable OS keychain here:")
		say("  %s", err)
		say("an application would stop with this error (tokenward never downgrades silently);")
		say("this demo keeps its tokens in memory instead. Nothing is written to disk.")
	}
	return store.Open(ctx, func(so *store.Options) { so.Mode = store.ModeMemory })
}

// call GETs url and checks for 200.
func call(ctx context.Context, hc *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// stream calls url from workers goroutines for d and returns every
// request's latency.
func stream(ctx context.Context, hc *http.Client, url string, workers int, d time.Duration) ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(20 * time.Millisecond) // a steady, modest rate
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				start := time.Now()
				err := call(ctx, hc, url)
				took := time.Since(start)
				mu.Lock()
				switch {
				case err == nil:
					lat = append(lat, took)
				case ctx.Err() == nil && firstErr == nil:
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if len(lat) == 0 {
		return nil, errors.New("no request completed")
	}
	return lat, nil
}

func pct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted) - 1) * p / 100
	return sorted[i].Round(time.Microsecond)
}
