package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/redact"
	"github.com/tokenward/tokenward/internal/twerr"
)

// Errors returned by [Transport.RoundTrip] and [New]. Branch on them with
// [errors.Is].
var (
	// ErrInsecureURL is returned (wrapped) for an allowed origin that is not
	// https. Plain http is accepted only for loopback hosts (localhost,
	// 127.0.0.0/8, ::1) when [Options.AllowInsecureLoopback] is set.
	ErrInsecureURL = twerr.ErrInsecureURL

	// ErrUnsupportedTokenType is returned (wrapped) when the source hands out
	// a token whose type is neither Bearer nor one of
	// [Options.PrepareTokenTypes].
	ErrUnsupportedTokenType = twerr.ErrUnsupportedTokenType

	// ErrOriginNotAllowed is returned (wrapped) for a request to an origin
	// outside [Options.Origins] when [Options.RejectOtherOrigins] is set;
	// a request whose Host header or request line names another host than
	// its URL counts as one (see [Transport.RoundTrip]). Without that option
	// such requests are sent without a token.
	ErrOriginNotAllowed = errors.New("transport: origin not allowed")

	// ErrInvalidConfig is returned (wrapped) for an unusable configuration:
	// no Source, no Origins, or an origin that does not parse as
	// scheme://host[:port]. It is the one value every tokenward package
	// returns for a bad configuration: client.ErrInvalidConfig,
	// store.ErrInvalidConfig and refresh.ErrInvalidConfig are the same.
	ErrInvalidConfig = twerr.ErrInvalidConfig
)

// Source supplies access tokens. refresh.Cache implements it.
//
// Token must be safe for concurrent use. While the token is unchanged it
// should return the same pointer, which the transport uses to reuse the
// precomputed Authorization value; the returned token must not be modified.
type Source interface {
	Token(ctx context.Context) (*oauth2.Token, error)
}

// Invalidator is optionally implemented by a [Source]. Invalidate
// discards tok if, and only if, it is still the current token (a
// compare-and-swap on the cache), so that the next Token call fetches a new
// one; it reports whether it did. The transport calls it with exactly the
// token a resource server rejected.
type Invalidator interface {
	Invalidate(tok *oauth2.Token) bool
}

// Feedback is optionally implemented by a [Source] that wants to hear, per
// origin, what resource servers said of its tokens (refresh.Cache does, to
// tell a revoked token from one issued for another audience). origin is
// the allowed origin the request went to, as scheme://host:port.
//
// Accepted is called with the token of every request that origin answered
// with anything but a 401 or a 5xx (a server error says nothing about the
// token): the token works there. It runs on every such response, so it
// must be cheap. Rejected is called, instead of [Invalidator]'s
// Invalidate, with the token of a request answered 401 with
// error="invalid_token" (see [Transport.RoundTrip]); it reports whether
// the token was discarded, as Invalidate does.
type Feedback interface {
	Accepted(origin string, tok *oauth2.Token)
	Rejected(origin string, tok *oauth2.Token) bool
}

// SourceFunc adapts a function to [Source].
type SourceFunc func(ctx context.Context) (*oauth2.Token, error)

// Token calls f(ctx).
func (f SourceFunc) Token(ctx context.Context) (*oauth2.Token, error) { return f(ctx) }

// Transport is an [http.RoundTripper] that attaches an access token from
// its [Source] to requests for the allowed origins, and to nothing else.
// Create it with [New], which validates the configuration up front.
//
// A Transport is safe for concurrent use by multiple goroutines. Most users
// will get one from client.New instead.
type Transport struct {
	c *config // immutable after New
}

// Options configures a [Transport]. Every field is fixed at [New].
type Options struct {
	// Base sends the requests. Optional; nil means a clone of
	// http.DefaultTransport, made once per process and shared by every
	// Transport without a Base. Like any RoundTripper it must not modify
	// the request it is given; even so, each request carries its own
	// Authorization slice, so a Base that rewrites header values in place
	// cannot alter what later requests send.
	Base http.RoundTripper

	// Origins lists the origins (scheme://host[:port], no path, query or
	// user info) that receive the token. Required: at least one. Host names
	// compare case-insensitively and default ports are normalised, so
	// "https://api.example.com" and "https://API.example.com:443" are the same
	// origin. Every origin must be https, except loopback hosts when
	// AllowInsecureLoopback is set; others fail with [ErrInsecureURL].
	Origins []string

	// AllowInsecureLoopback permits http origins whose host is localhost,
	// an address in 127.0.0.0/8 or ::1 (local development and tests).
	// Optional; default false.
	AllowInsecureLoopback bool

	// RejectOtherOrigins makes requests to origins outside Origins fail with
	// [ErrOriginNotAllowed] instead of going out without a token. This
	// includes every redirect hop to another origin. Optional; default false.
	RejectOtherOrigins bool

	// InvalidateOnAny401 treats every 401 answer to a request that carried a
	// token like a 401 with a Bearer error="invalid_token" challenge.
	// Optional; default false (only invalid_token challenges count).
	InvalidateOnAny401 bool

	// Prepare, if set, is called for every request that carries a token,
	// after the Authorization header has been set, with the outgoing copy of
	// the request (never the caller's) and the token. It may add or replace
	// headers (for example a DPoP proof, RFC 9449) with req.Header.Set and
	// friends; it must not modify header values in place or any other field
	// shared with the caller's request (URL, Body). An error fails the
	// request. Optional.
	Prepare func(req *http.Request, tok *oauth2.Token) error

	// PrepareTokenTypes lists token types other than Bearer (for example
	// "DPoP") that Prepare knows how to send; compared case-insensitively.
	// For a token of such a type the transport sets Authorization to the
	// type as spelled here, a space and the token (RFC 9449 section 7.1's
	// "DPoP <token>"), and Prepare adds what else the type needs (a proof)
	// or replaces the header. A token of any other type than Bearer (or
	// empty, which means Bearer) fails with [ErrUnsupportedTokenType].
	// Ignored when Prepare is nil. Optional.
	PrepareTokenTypes []string

	// Answered, if set, is called with the caller's request, every
	// response to it that carried a token (a resend's included) and that
	// token, before the response is returned or a 401 is handled. resend asks for the
	// request to be sent once more with the same token, Prepare running
	// again: for a challenge the next attempt can meet, such as a DPoP
	// nonce (RFC 9449 section 9). It is honoured for a 401 only, once per
	// request, when the body can be replayed; the first response is then
	// drained and closed. A non-nil error fails the request with it (the
	// response is drained and closed), for an answer the caller should not
	// read as a plain 401, such as a refused DPoP proof. It runs on every
	// response, so it must be cheap. Optional.
	Answered func(req *http.Request, resp *http.Response, tok *oauth2.Token) (resend bool, err error)

	// Logger receives what the transport logs: refused or token-less
	// origins, token-source failures, rejected tokens and resends. It never
	// receives headers, bodies, query strings or tokens. Optional; nil means
	// discard.
	Logger *slog.Logger
}

// New returns a [Transport] that takes its tokens from src, configured by
// optFns, and validates the configuration: it fails with [ErrInsecureURL]
// for an origin that would send the token in clear text and with
// [ErrInvalidConfig] for other mistakes (no source, no origins, an origin
// with a path). For example:
//
//	t, err := transport.New(src, func(o *transport.Options) {
//		o.Origins = []string{"https://api.example.com"}
//	})
//
// If src also implements [Invalidator], a token rejected with a 401 is
// invalidated before the single resend (see [Transport.RoundTrip]); if it
// implements [Feedback], it hears per origin which tokens work and which
// are rejected.
func New(src Source, optFns ...func(*Options)) (*Transport, error) {
	var o Options
	for _, fn := range optFns {
		if fn != nil {
			fn(&o)
		}
	}
	c := compile(src, &o)
	if c.err != nil {
		return nil, c.err
	}
	return &Transport{c: c}, nil
}

// config is the validated, immutable form of a Transport's [Options].
type config struct {
	err          error
	src          Source
	inv          Invalidator // nil if src does not implement it
	fb           Feedback    // nil if src does not implement it
	base         http.RoundTripper
	origins      []origin
	reject       bool
	any401       bool
	prepare      func(*http.Request, *oauth2.Token) error
	prepareTypes []string
	answered     func(*http.Request, *http.Response, *oauth2.Token) (bool, error)
	log          *slog.Logger

	// auth caches the Authorization value of the last token seen; replaced
	// (never mutated) when the source hands out another token pointer.
	auth atomic.Pointer[authValue]
}

var defaultBase = sync.OnceValue(func() http.RoundTripper {
	if t, ok := http.DefaultTransport.(*http.Transport); ok {
		return t.Clone()
	}
	// Someone replaced http.DefaultTransport; respect their choice.
	return http.DefaultTransport
})

var discardLogger = slog.New(slog.DiscardHandler)

var errNoToken = errors.New("source returned no access token")

// localError marks an error the transport produced itself rather than
// received from Base: a refused origin, a token the source could not
// supply, an unsupported token type, a failing Prepare hook, a bad
// configuration, a Base that broke the RoundTripper contract. Repeating the
// request cannot change such an outcome, so the client of [NewRetryClient]
// never retries it, even when it wraps a network error (a token source
// whose token endpoint was unreachable: the source has its own retry
// policy). It is transparent otherwise: same message, and errors.Is and
// errors.As see what it wraps.
type localError struct{ err error }

func (e *localError) Error() string { return e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

// local marks err as produced by the transport (see localError).
func local(err error) error { return &localError{err} }

// errNotNew is the error of a Transport that New did not create.
var errNotNew = fmt.Errorf("transport: %w: the Transport was not created with transport.New", ErrInvalidConfig)

// zeroConfig serves a Transport that New did not create: every request
// fails with errNotNew.
var zeroConfig = &config{err: errNotNew, log: discardLogger}

func (t *Transport) cfg() *config {
	if t == nil || t.c == nil {
		return zeroConfig
	}
	return t.c
}

// compile validates the options and returns their immutable form. On error
// c.err is set; c.base and c.log are always usable.
func compile(src Source, t *Options) *config {
	c := &config{
		src:    src,
		base:   t.Base,
		reject: t.RejectOtherOrigins,
		any401: t.InvalidateOnAny401,
		log:    t.Logger,

		answered: t.Answered,
	}
	if c.base == nil {
		c.base = defaultBase()
	}
	if c.log == nil {
		c.log = discardLogger
	}
	if t.Prepare != nil {
		c.prepare = t.Prepare
		c.prepareTypes = append([]string(nil), t.PrepareTokenTypes...)
	}
	if c.src == nil {
		c.err = fmt.Errorf("transport: %w: no Source", ErrInvalidConfig)
		return c
	}
	c.inv, _ = c.src.(Invalidator)
	c.fb, _ = c.src.(Feedback)
	if len(t.Origins) == 0 {
		c.err = fmt.Errorf("transport: %w: no Origins; the token would never be sent", ErrInvalidConfig)
		return c
	}
	for _, s := range t.Origins {
		o, err := parseOrigin(s, t.AllowInsecureLoopback)
		if err != nil {
			c.err = err
			return c
		}
		c.origins = append(c.origins, o)
	}
	return c
}

// RoundTrip sends req through Base and, when req's origin is allowed,
// attaches the current token.
//
// It keeps the [http.RoundTripper] contract: it never modifies req (the
// token goes on a shallow copy with its own header map); it closes req.Body
// exactly once on every path, including errors and refused origins (by
// handing it to Base, which closes it, or by closing it itself); and it
// returns either a response or an error, never both, even when Base breaks
// that rule (a response that comes with an error is closed; nil, nil
// becomes an error). A 401 is a response, not an error.
//
// Origins: the token is attached only if everything a server, proxy or
// load balancer may route the request on names the allowed origin that
// net/http connects to for req.URL: req.URL's scheme, host and port match
// one of Origins (case and default ports aside); req.Host and any Host key
// in req.Header name the same host and port; and the request line net/http
// writes, the method and req.URL.RequestURI(), names no other target (see
// "Origin scoping" in the package documentation for the exact rule). Every
// other request, including each redirect hop that net/http follows to
// another origin, another port or from https to http, a request whose Host
// header would route it to another site behind the same address, and one
// whose URL.Opaque or path makes the request line name another host (Opaque
// "//evil.example/x" is written as "https://evil.example/x") or leaves it
// ambiguous, is sent unchanged without the token, or fails with
// [ErrOriginNotAllowed] when [Options.RejectOtherOrigins] is set. A request
// that gets the token loses any Authorization header the caller set,
// whatever the case of its key.
//
// 401: when a request that carried token T is answered 401 with a challenge
// of T's scheme carrying error="invalid_token" (or with any 401 when
// [Options.InvalidateOnAny401] is set), RoundTrip invalidates exactly T on
// the source ([Invalidator], compare-and-swap) and resends the request once
// with a fresh token, provided the body can be replayed (no body, or
// GetBody set) and the source hands out a different token. The first
// response is drained and closed before the resend; the answer to the
// resend is returned as it is, even another 401. If the request cannot be resent, the first 401 is
// returned (T is invalidated all the same, so the next request gets a new
// token). The source may refuse to invalidate T (refresh.Cache does when
// T replaced a rejected token moments ago and never worked): then the 401
// is returned as it is. Any other answer (but a 5xx) to a request that
// carried T tells the source that T works there ([Feedback]).
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	c := t.cfg()
	if c.err != nil {
		closeBody(req)
		return nil, local(c.err)
	}
	if req.URL == nil {
		closeBody(req)
		return nil, local(errors.New("transport: request has no URL"))
	}
	why, org := c.check(req)
	if why != permitted {
		return c.roundTripOther(req, why)
	}
	// The copy comes before the token: the loop that copies the header
	// also checks its Host keys, and a request whose Host key names another
	// host goes without the token like any other.
	o, ok := copyRequest(req)
	if !ok {
		return c.roundTripOther(req, otherField)
	}
	ctx := req.Context()
	tok, err := c.src.Token(ctx)
	if err == nil && (tok == nil || tok.AccessToken == "") {
		err = errNoToken
	}
	if err != nil {
		closeBody(req)
		c.log.LogAttrs(ctx, slog.LevelWarn, "transport: no token; request not sent",
			slog.String("method", req.Method), slog.Any("url", redact.URLValue{U: req.URL}),
			slog.String("error", redact.String(err.Error())))
		return nil, local(fmt.Errorf("transport: token: %w", err))
	}
	av, err := c.authFor(tok)
	if err != nil {
		closeBody(req)
		c.log.LogAttrs(ctx, slog.LevelError, "transport: token not usable; request not sent",
			slog.Any("url", redact.URLValue{U: req.URL}), slog.String("error", err.Error()))
		return nil, local(err)
	}
	out, err := c.withToken(o, av, req.Body)
	if err != nil {
		closeBody(req)
		return nil, local(err)
	}
	resp, err := c.send(out)
	if err == nil && c.answered != nil {
		resp, err = c.answer(req, av, resp, true)
	}
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		c.accepted(resp, org, av.tok)
		return resp, err
	}
	return c.rejected(req, org, av, resp)
}

// send hands out to Base and enforces "a response or an error, never both"
// on what comes back: a response that comes with an error is closed and
// dropped, and a Base that returns neither (nil, nil) gets an error instead
// of a nil response that would make the caller panic. In that case out.Body
// is closed, since a Base that broke the contract may not have closed it
// (closing it twice is the lesser harm).
func (c *config) send(out *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(out)
	switch {
	case err != nil:
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		return nil, err
	case resp == nil:
		closeBody(out)
		return nil, local(fmt.Errorf("transport: Base (%T) returned a nil *http.Response with a nil error", c.base))
	}
	return resp, nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// CloseIdleConnections closes the idle connections of Base, if it has that
// method (as *http.Transport does).
func (t *Transport) CloseIdleConnections() {
	type closeIdler interface{ CloseIdleConnections() }
	if ci, ok := t.cfg().base.(closeIdler); ok {
		ci.CloseIdleConnections()
	}
}
