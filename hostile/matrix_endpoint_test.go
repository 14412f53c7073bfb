package hostile

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenward/tokenward/client"
	"github.com/tokenward/tokenward/oauthtest"
	"github.com/tokenward/tokenward/refresh"
)

// outcome is what the calls after a matrix row's failure lead to.
type outcome int

const (
	// recovers: the stored token set survived the failure unchanged; once the
	// fault is gone the next refresh succeeds and the store holds a token set
	// the server honours, with no refresh token replayed.
	recovers outcome = iota
	// graceRecovers: like recovers, but the server had consumed the refresh
	// token the client could not learn the successor of, and accepts it once
	// more inside its reuse grace window (the configuration to ask of a
	// provider, since a lost response cannot be told from a theft
	// otherwise).
	graceRecovers
	// reauth: the server consumed the refresh token and the answer never
	// reached the client, without a grace window: the only correct end state
	// is re-authentication (ErrReauthRequired, the dead entry removed, no
	// refresh loop).
	reauth
	// refusedAfterRotation: the server rotated the refresh token into an
	// answer the client must refuse (a token type it cannot send). The
	// refresh token it presented is spent, so it must never be presented
	// again: the client keeps and saves the rotated refresh token from the
	// refused answer, and the next refresh presents that one (no reuse
	// detected, no family revoked).
	refusedAfterRotation
)

// endpointRow is one row of the token endpoint matrix: the login's access
// token has expired, the refresh fails as inject says, and the row checks
// the error, its deadline, the number of refresh requests the server
// received (a second one would be a blind replay) and what follows.
type endpointRow struct {
	name   string
	server oauthtest.Config // the fake server's configuration
	world  func(*world)     // client-side settings (grace, transport, ...)
	inject func(*world)     // the failure, injected after the token was seeded
	want   []error          // sentinels the error must match; nil: the call succeeds
	check  func(*testing.T, *world, error)
	limit  time.Duration // deadline of the failing call
	posts  int           // refresh requests the server received during it
	settle func(*world)  // waits until the server is done with the failure
	then   outcome
	grace  bool // the server's grace window may legitimately be used
	// orRetried: the failure may also happen while connecting, when
	// nothing can have been sent; then one retry is allowed and succeeds.
	orRetried bool
	caller    time.Duration // the caller's own deadline, when the row has one
	// recovery bounds the wait for a token once the fault is cleared;
	// zero means 5 s. A row whose server asked to wait needs that long
	// more: the cache makes no attempt before the server's Retry-After.
	recovery time.Duration
}

// fault returns an inject function for f on the refresh grant.
func fault(f oauthtest.Fault) func(*world) {
	return func(w *world) {
		f.Endpoint, f.Grant = oauthtest.EndpointToken, oauthtest.GrantRefreshToken
		if f.Times == 0 {
			f.Times = 1
		}
		w.as.InjectFault(f)
	}
}

// update returns an inject function that reconfigures the server.
func update(fn func(*oauthtest.Config)) func(*world) {
	return func(w *world) {
		if err := w.as.Update(fn); err != nil {
			w.t.Fatal(err)
		}
	}
}

// withGrace configures a 30 s refresh-token reuse grace on both sides.
func withGrace(w *world) { w.rotationGrace = 30 * time.Second }

// abandoned waits until the fake server has given up a request held by
// FaultHang (its client went away), so that releasing the fault later cannot
// process it.
func abandoned(w *world) {
	if !eventually(5*time.Second, func() bool { return strings.Contains(w.asLog.String(), "request abandoned while held") }) {
		w.t.Fatal("the server never noticed that the client gave up the held request")
	}
}

// countingTransport counts the response body bytes its caller read.
type countingTransport struct {
	base http.RoundTripper
	n    atomic.Int64
}

// RoundTrip implements http.RoundTripper, counting the body as it is read.
func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(r)
	if err == nil {
		resp.Body = &countingBody{ReadCloser: resp.Body, n: &c.n}
	}
	return resp, err
}

// CloseIdleConnections passes the call on to the base transport.
func (c *countingTransport) CloseIdleConnections() {
	if ci, ok := c.base.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

// Read reads from the body and counts the bytes.
func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// endpointRows is the token endpoint matrix (refresh grant).
func endpointRows() []endpointRow {
	noHTML := func(t *testing.T, w *world, err error) {
		if msg := err.Error(); strings.Contains(msg, "<") || len(msg) > 1024 {
			t.Fatalf("the error repeats the HTML body or is unbounded: %q", msg)
		}
	}
	noTrap := func(t *testing.T, w *world, err error) {
		if reqs := w.as.Trap().Requests(); len(reqs) != 0 {
			t.Fatalf("the redirect was followed: the trap received %d request(s)", len(reqs))
		}
	}
	var rows []endpointRow
	add := func(r endpointRow) {
		if r.limit == 0 {
			r.limit = 3 * time.Second
		}
		rows = append(rows, r)
	}
	add(endpointRow{name: "500", inject: fault(oauthtest.Fault{Kind: oauthtest.FaultStatus500}),
		want: []error{client.ErrTemporarilyUnavailable}, posts: 1})
	add(endpointRow{name: "502-html", inject: fault(oauthtest.Fault{Kind: oauthtest.FaultBadGateway}),
		want: []error{client.ErrTemporarilyUnavailable}, posts: 1, check: noHTML})
	add(endpointRow{name: "503", inject: fault(oauthtest.Fault{Kind: oauthtest.FaultUnavailable}),
		want: []error{client.ErrTemporarilyUnavailable}, posts: 1})
	add(endpointRow{name: "429-retry-after", inject: fault(oauthtest.Fault{Kind: oauthtest.FaultRateLimited, RetryAfter: "7"}),
		want: []error{client.ErrRateLimited, client.ErrTemporarilyUnavailable}, posts: 1, recovery: 7*time.Second + 5*time.Second,
		check: func(t *testing.T, w *world, err error) {
			var rl *client.RateLimitError
			if !errors.As(err, &rl) || rl.RetryAfter != 7*time.Second {
				t.Fatalf("want a *RateLimitError with the server's 7 s hint, got %#v", rl)
			}
		}})
	add(endpointRow{name: "reset-before-request-read",
		world:  func(w *world) { w.noIssuer = true }, // the token request opens the first connection
		inject: func(w *world) { w.as.ResetNextConnections(1) },
		want:   []error{client.ErrNetwork}, posts: 0, orRetried: true})
	add(endpointRow{name: "reset-after-request-written", inject: fault(oauthtest.Fault{Kind: oauthtest.FaultReset}),
		want: []error{client.ErrNetwork}, posts: 1})
	add(endpointRow{name: "response-lost-after-rotation", inject: fault(oauthtest.Fault{Kind: oauthtest.FaultResponseLost}),
		want: []error{client.ErrNetwork}, posts: 1, then: reauth})
	add(endpointRow{name: "response-lost-after-rotation/grace", server: oauthtest.Config{ReuseGrace: 30 * time.Second}, world: withGrace,
		inject: fault(oauthtest.Fault{Kind: oauthtest.FaultResponseLost}),
		want:   nil, posts: 2, then: graceRecovers, grace: true})
	add(endpointRow{name: "hung-endpoint", world: func(w *world) { w.httpTimeout = 500 * time.Millisecond },
		inject: fault(oauthtest.Fault{Kind: oauthtest.FaultHang}),
		want:   []error{client.ErrTokenEndpointTimeout, client.ErrNetwork}, limit: 1500 * time.Millisecond, posts: 1, settle: abandoned})
	add(endpointRow{name: "hung-endpoint/caller-deadline", world: func(w *world) { w.httpTimeout = time.Second },
		inject: fault(oauthtest.Fault{Kind: oauthtest.FaultHang}), caller: 200 * time.Millisecond,
		want: []error{context.DeadlineExceeded}, limit: 450 * time.Millisecond, posts: 1, settle: abandoned})
	add(endpointRow{name: "1GiB-body",
		world: func(w *world) {
			w.transport = &countingTransport{base: http.DefaultTransport.(*http.Transport).Clone()}
		},
		inject: fault(oauthtest.Fault{Kind: oauthtest.FaultHugeBody}),
		want:   []error{client.ErrBadResponse}, limit: 5 * time.Second, posts: 1,
		check: func(t *testing.T, w *world, err error) {
			if n := w.transport.(*countingTransport).n.Load(); n > 1<<20+64<<10 {
				t.Fatalf("the client read %d bytes of the body; it must stop after 1 MiB", n)
			}
		}})
	add(endpointRow{name: "malformed-json/before-processing", inject: fault(oauthtest.Fault{Kind: oauthtest.FaultMalformedJSON, Before: true}),
		want: []error{client.ErrBadResponse}, posts: 1})
	add(endpointRow{name: "malformed-json/after-rotation", inject: fault(oauthtest.Fault{Kind: oauthtest.FaultMalformedJSON}),
		want: []error{client.ErrBadResponse}, posts: 1, then: reauth})
	add(endpointRow{name: "malformed-json/after-rotation/grace", server: oauthtest.Config{ReuseGrace: 30 * time.Second}, world: withGrace,
		inject: fault(oauthtest.Fault{Kind: oauthtest.FaultMalformedJSON}),
		want:   []error{client.ErrBadResponse}, posts: 1, then: graceRecovers, grace: true})
	add(endpointRow{name: "wrong-content-type/json-body-as-text-html", inject: fault(oauthtest.Fault{Kind: oauthtest.FaultWrongContentType}),
		want: nil, posts: 1})
	add(endpointRow{name: "wrong-content-type/html-sign-in-page", inject: fault(oauthtest.Fault{Kind: oauthtest.FaultHTMLPage}),
		want: []error{client.ErrBadResponse}, posts: 1, check: noHTML})
	for _, tt := range []struct {
		name, typ string
		omit      bool
		want      []error
	}{
		{"token-type/DPoP", "DPoP", false, []error{client.ErrUnsupportedTokenType}},
		{"token-type/N_A", "N_A", false, []error{client.ErrUnsupportedTokenType}},
		{"token-type/lowercase-bearer", "bearer", false, nil},
		{"token-type/missing", "", true, nil},
	} {
		r := endpointRow{name: tt.name, want: tt.want, posts: 1,
			inject: update(func(c *oauthtest.Config) { c.TokenType, c.OmitTokenType = tt.typ, tt.omit })}
		if tt.want == nil {
			r.check = apiWorks
		} else {
			// The server rotated the refresh token into an answer the client
			// must refuse; it goes back to Bearer afterwards.
			r.settle = update(func(c *oauthtest.Config) { c.TokenType = "Bearer" })
			r.then = refusedAfterRotation
		}
		add(r)
	}
	for _, m := range []struct {
		name string
		mode oauthtest.ExpiresInMode
	}{
		{"string", oauthtest.ExpiresInString}, {"float", oauthtest.ExpiresInFloat}, {"missing", oauthtest.ExpiresInOmit},
		{"null", oauthtest.ExpiresInNull}, {"zero", oauthtest.ExpiresInZero}, {"negative", oauthtest.ExpiresInNegative},
		{"2^40", oauthtest.ExpiresInHuge}, {"garbage", oauthtest.ExpiresInGarbage},
	} {
		add(endpointRow{name: "expires-in/" + m.name, inject: update(func(c *oauthtest.Config) { c.ExpiresIn = m.mode }),
			want: nil, posts: 1, check: expiryChecks(m.mode)})
	}
	for _, status := range []int{301, 302, 303, 307, 308} {
		add(endpointRow{name: "redirect/" + http.StatusText(status), inject: fault(oauthtest.Fault{Kind: oauthtest.FaultRedirect, Status: status}),
			want: []error{client.ErrBadResponse}, posts: 1, check: noTrap})
	}
	return rows
}

// apiWorks checks that the refreshed token is accepted by the API.
func apiWorks(t *testing.T, w *world, _ error) {
	t.Helper()
	c := w.lastClient
	hc, err := c.HTTPClient(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get(w.api.URL() + "/after-refresh")
	if err != nil {
		t.Fatalf("API call: %v", w.rec.err(err))
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("API call with the refreshed token: status %d", resp.StatusCode)
	}
}

// expiryChecks returns the checks of an expires_in row: the client's expiry
// is finite and never later than the server's (the JWT exp is used when
// expires_in is unusable), except that an explicit huge expires_in is
// trusted up to refresh.DefaultMaxLifetime; the token works at the API; and
// asking for it again does not refresh again (no refresh loop).
func expiryChecks(mode oauthtest.ExpiresInMode) func(*testing.T, *world, error) {
	return func(t *testing.T, w *world, _ error) {
		t.Helper()
		c := w.lastClient
		tok, err := c.Token(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		info, ok := w.as.Introspect(tok.AccessToken)
		if !ok {
			t.Fatal("the server does not know the access token")
		}
		now := time.Now()
		switch {
		case tok.Expiry.IsZero() || !tok.Expiry.After(now):
			t.Fatalf("expiry %v is not a finite time in the future", tok.Expiry)
		case mode == oauthtest.ExpiresInHuge:
			if tok.Expiry.After(now.Add(refresh.DefaultMaxLifetime + time.Second)) {
				t.Fatalf("expiry %v beyond the 24 h cap", tok.Expiry)
			}
		case tok.Expiry.After(info.Expiry.Add(time.Second)):
			t.Fatalf("the client believes the token lives until %v, the server says %v", tok.Expiry, info.Expiry)
		}
		if e, _ := w.stored(); e == nil || e.Expiry.IsZero() {
			t.Fatal("the stored entry has no expiry")
		}
		for range 200 {
			if _, err := c.Token(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		if n := refreshPosts(w.as); n != 1 {
			t.Fatalf("%d refresh requests for one refreshed token: a refresh loop", n)
		}
		apiWorks(t, w, nil)
	}
}

// TestTokenEndpointFaults runs the token endpoint rows of the matrix against
// the refresh grant (RELIABILITY.md, "Token endpoint").
func TestTokenEndpointFaults(t *testing.T) {
	t.Parallel()
	for _, row := range endpointRows() {
		t.Run(row.name, func(t *testing.T) {
			t.Parallel()
			runEndpointRow(t, row)
		})
	}
}

// runEndpointRow runs one row: seed an expired token set, inject the
// failure, call Token, check the error, its deadline and the requests the
// server received, then what follows (row.then).
func runEndpointRow(t *testing.T, row endpointRow) {
	w := newWorld(t, row.server)
	if row.world != nil {
		row.world(w)
	}
	rt0 := w.seed()
	c := w.newClient(w.config())
	w.lastClient = c
	if row.inject != nil {
		row.inject(w)
	}

	ctx := t.Context()
	if row.caller > 0 {
		var cancel func()
		ctx, cancel = context.WithTimeout(ctx, row.caller)
		defer cancel()
	}
	start := time.Now()
	_, err := c.Token(ctx)
	elapsed := time.Since(start)
	w.rec.err(err)
	within(t, "the failing call", elapsed, row.limit)
	posts := row.posts
	switch {
	case row.orRetried && err == nil:
		// The reset reached the client during connect ("dial ... connection
		// reset by peer"): provably nothing was sent, so the request was
		// retried on a new connection, once.
		posts = 1
		if !strings.Contains(w.log.String(), "dial tcp") {
			t.Fatal("the refresh succeeded, but not after a dial error")
		}
		t.Log("the reset hit the dial: retried once on a new connection")
	case row.want == nil:
		if err != nil {
			t.Fatalf("Token = %v, want success", err)
		}
	case !isAll(err, row.want...):
		t.Fatalf("Token = %v (%#v), want an error matching %v", err, err, row.want)
	}
	if row.check != nil {
		row.check(t, w, err)
	}
	if row.settle != nil {
		row.settle(w)
	}
	if n := refreshPosts(w.as); n != posts {
		t.Fatalf("the server received %d refresh requests during the failing call, want %d (a blind replay?); presentations %s", n, posts, describePresentations(w.as))
	}
	w.as.ClearFaults()

	switch row.then {
	case recovers, graceRecovers:
		if row.want != nil && err != nil {
			e, ok := w.stored()
			if !ok || e.RefreshToken != rt0 {
				t.Fatalf("the failure changed or removed the stored token set (present %v)", ok)
			}
		}
		recovery := row.recovery
		if recovery == 0 {
			recovery = 5 * time.Second
		}
		if err := tokenEventually(t, c, recovery); err != nil {
			t.Fatalf("no recovery after the fault: %v", err)
		}
		w.assertStoredActive()
		w.assertNoReplay(row.grace)
		if row.then == graceRecovers && w.as.Stats().GraceReuses != 1 {
			t.Fatalf("grace reuses = %d, want exactly 1", w.as.Stats().GraceReuses)
		}
	case reauth:
		var err error
		if !eventually(5*time.Second, func() bool {
			_, err = c.Token(t.Context())
			return errors.Is(err, client.ErrReauthRequired)
		}) {
			t.Fatalf("Token = %v, want ErrReauthRequired once the consumed refresh token is refused", err)
		}
		w.rec.err(err)
		if _, ok := w.stored(); ok {
			t.Fatal("the dead token set is still stored")
		}
		if st, err := c.Status(t.Context()); err != nil || st.LoggedIn {
			t.Fatalf("Status = %+v, %v; want logged out", st, err)
		}
		posts := refreshPosts(w.as)
		for range 20 {
			if _, err := c.Token(t.Context()); !errors.Is(err, client.ErrReauthRequired) {
				t.Fatalf("Token after re-auth = %v", err)
			}
		}
		if n := refreshPosts(w.as); n != posts {
			t.Fatalf("%d more refresh requests after the re-authentication state: a refresh loop", n-posts)
		}
		if n := refreshPosts(w.as); n != 2 {
			t.Fatalf("%d refresh requests in all, want 2 (the lost one and the one the server refused); presentations %s", n, describePresentations(w.as))
		}
		if row.name == "response-lost-after-rotation" && !errors.Is(err, refresh.ErrPossibleRotationLoss) {
			t.Fatalf("re-authentication after a lost response is not marked ErrPossibleRotationLoss: %v", err)
		}
	case refusedAfterRotation:
		// The answer was refused, but the server had rotated the refresh
		// token into it: the rotated refresh token must have been kept and
		// saved (next to the access token still in use), or the next
		// refresh would replay the spent one. The SDK once dropped it: this
		// row failed until it kept it.
		e := w.assertStoredActive()
		if e.RefreshToken == rt0 {
			t.Fatalf("the store still holds the refresh token the server consumed; the rotated one from the refused %s answer was not saved; presentations %s", row.name, describePresentations(w.as))
		}
		if info, _ := w.as.Introspect(e.RefreshToken); !info.Refresh {
			t.Fatal("the stored refresh token is not a refresh token the server issued")
		}
		rotated := e.RefreshToken
		// The next refresh (the access token is still the expired one)
		// presents the rotated refresh token, and nothing else.
		recovery := row.recovery
		if recovery == 0 {
			recovery = 5 * time.Second
		}
		if err := tokenEventually(t, c, recovery); err != nil {
			t.Fatalf("no refresh with the rotated refresh token after the refused answer: %v; presentations %s", w.rec.err(err), describePresentations(w.as))
		}
		ps := w.as.RefreshPresentations()
		if len(ps) != 2 || ps[0].Token != rt0 || ps[1].Token != rotated || ps[1].Outcome != oauthtest.RefreshRotated {
			t.Fatalf("presentations %s, want the seeded refresh token then the rotated one from the refused answer, each once and rotated", describePresentations(w.as))
		}
		w.assertNoReplay(false)
		if e := w.assertStoredActive(); e.RefreshToken == rotated {
			t.Fatal("the refresh succeeded but the store still holds the refresh token it consumed")
		}
		apiWorks(t, w, nil)
	}
}
