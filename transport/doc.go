// Package transport provides the [http.RoundTripper] that attaches access
// tokens only to allowed origins, cheaply, and recovers once from a token the
// resource server rejects. Most users will get it from client.New instead
// of using it directly.
//
// # Using it
//
// [New] takes the token [Source] and option functions that set the fields
// of [Options], and validates them at once:
//
//	tr, err := transport.New(cache, func(o *transport.Options) {
//		o.Origins = []string{"https://api.example.com"} // required
//		o.Base = base                                   // optional
//	})
//	hc := &http.Client{Transport: tr}
//
// The source is usually refresh.Cache; [SourceFunc] adapts a function. A
// source that also implements [Invalidator] lets the transport discard a
// token the resource server rejected, and one that implements [Feedback]
// hears, per origin, which tokens work and which are rejected. New fails with [ErrInsecureURL] for an origin
// that would carry the token in clear text and with [ErrInvalidConfig] for
// any other mistake (no source, no origins, an origin with a path); that
// error is the same value in every tokenward package. A [Transport] that
// New did not create refuses every request with ErrInvalidConfig.
//
// # Data flow
//
// For each request, [Transport.RoundTrip]:
//
//  1. checks the request's origin (scheme, host, port), and the Host header
//     and request line it will carry, against [Options.Origins] (see
//     "Origin scoping" below); a request to any other origin is sent
//     unchanged, without a token (or refused with [ErrOriginNotAllowed]
//     when [Options.RejectOtherOrigins] is set);
//  2. asks the [Source] for the current token with the request's
//     context (refresh.Cache answers from memory while the token is fresh);
//  3. sends a shallow copy of the request with its own header map and the
//     Authorization value, which is computed once per token (the source
//     returns the same pointer while the token is unchanged) and reused for
//     every request; the optional [Options.Prepare] hook may add headers
//     or sign the copy (the hook point for DPoP, RFC 9449);
//  4. on a 401 with error="invalid_token", invalidates that token and
//     resends once (below).
//
// It keeps the net/http contract: the caller's request is never modified,
// its body is closed exactly once on every path, and the result is a
// response or an error, never both.
//
// # Origin scoping
//
// The token goes only to the origins listed in Options.Origins, compared
// by scheme, host (ASCII, case-insensitive) and port (default ports
// normalised). net/http opens the connection to the URL's host, but a
// reverse proxy or load balancer in front of it routes on what the request
// says: the Host header and the request line. So a request gets the token
// only when all of these name the same allowed origin:
//
//   - the URL's scheme, host and port (brackets only around an IPv6
//     address: net/url drops them, but a front end would not know the
//     name "[api.example.com]" and might route it to its default site);
//   - the Host header: req.Host when set, and any Host key in req.Header
//     under any letter case (net/http ignores the key "Host" there but
//     writes "host" as a second Host header);
//   - the request line, which net/http writes from the method and
//     req.URL.RequestURI(). The method must be a token and not CONNECT
//     (whose target is a tunnel's). The target must be origin-form, a path
//     starting with exactly one "/" (not "//x" or "/\x", which some parsers
//     read as a host, nor "*", nor "evil.example/x" or "@evil.example/x",
//     which net/http glues to the host for a forward proxy, as in
//     "http://localhost:8080@evil.example/x"), checked on both Path and
//     RawPath; or URL.Opaque of that form; or an Opaque "//host/..."
//     (written as "scheme://host/...") or "scheme://host/..." whose scheme,
//     host and port are exactly the URL's, without user info and with a "/"
//     after the port unless nothing, not even a query, follows. Opaque and
//     the query must be visible ASCII: a space, or a byte some parsers take
//     for one, makes the line's target a guess.
//
// A request that fails any of these counts as another origin. The caller's
// own Authorization header, under any letter case of the key, is dropped
// from a request that gets the token.
// net/http's Client calls the transport again for every redirect hop, so a
// redirect to another host, to another port of the same host or from https
// to http goes out without the token, for 301, 302, 303, 307 and 308 alike.
// (golang.org/x/oauth2's Transport adds the token on every hop; see
// golang/oauth2#500.) Origins must be https; http is accepted only for
// loopback hosts with [Options.AllowInsecureLoopback], and [New] fails with
// [ErrInsecureURL] otherwise. Only Bearer tokens are sent, unless Prepare
// declares the token type in [Options.PrepareTokenTypes]; any other type
// fails with [ErrUnsupportedTokenType].
//
// # The 401 rule
//
// When a request that carried token T gets a 401 whose WWW-Authenticate has
// a challenge of T's scheme with error="invalid_token" (or any 401, with
// [Options.InvalidateOnAny401]), the transport calls [Invalidator].Invalidate(T),
// which discards T only if it is still current (compare-and-swap, so a token
// refreshed meanwhile by another request survives). If the body can be
// replayed (no body, or GetBody set) and the source now returns a different
// token, the first response is drained and closed and the request is sent
// once more; whatever that returns, even another 401, goes to the caller.
// Before that rule, [Options.Answered] sees every response to a request
// that carried a token: it may ask for one resend of a 401 with the same
// token (Prepare runs again; a DPoP nonce challenge is answered so), or
// fail the request with an error of its own (a refused DPoP proof).
// There is never a second resend. Any answer but a 401 or a 5xx to a
// request that carried T tells a [Feedback] source that T works at that
// origin (a [Feedback] source hears of the rejection through Rejected, with
// the origin, instead of Invalidate).
// [ParseChallenges] is the RFC 9110 parser used for this, and
// [BearerErrorFrom] exposes insufficient_scope (RFC 6750) and
// insufficient_user_authentication (RFC 9470) details.
//
// # Retries
//
// API retries belong outside the transport, so that each attempt asks the
// source for a current token (a token that expires during a backoff is not
// reused). [NewRetryClient] builds that stack, configured by option
// functions that set the fields of [RetryOptions]:
//
//	returned http.Client -> retry loop -> inner http.Client -> Transport -> Base
//
// It retries only idempotent requests (or those marked with
// [WithIdempotent]) whose body can be replayed without buffering, caps every
// wait (Retry-After included) and the total time, hands the last response to
// the caller, and sets the redirect policy and per-attempt timeout on the
// inner client, where they take effect. It never retries an error the
// Transport produced itself (a refused origin, a token the source could
// not supply, an unsupported token type, a failing Prepare hook), even one
// that wraps a network error: the token source has its own retry policy.
//
// # Logging
//
// Options.Logger (log/slog, discarded by default) receives one line per
// unusual event: a request sent without a token because of its origin
// (debug), a refused origin or a failing token source (warn), an unusable
// token (error), a rejected token and a resend (info). Lines carry the
// method, the URL cut to scheme://host/path, the challenge's error code and
// error strings passed through internal/redact. Headers (Authorization,
// Proxy-Authorization, Cookie, Set-Cookie, DPoP, ...), bodies, query strings
// and tokens are never logged. The retry client logs through
// RetryOptions.Logger with the same redaction, never through a default
// logger of its own.
package transport
