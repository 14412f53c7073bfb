// Package httpretry holds the HTTP retry mechanics tokenward's packages
// share, each in one place:
//
//   - [Engine], the one retry loop (go-retryablehttp underneath) that both
//     the token-endpoint client and the API retry client run on. Each of
//     them is only a policy: a [Policy] deciding which failed attempt may
//     be repeated, and a [BodyFunc] building every attempt's body afresh.
//     The engine owns the rest: the wait formula, the Retry-After cap and
//     the total budget, the connection signal of each attempt, the attempt
//     count, and a logger that reduces URLs and scrubs secrets.
//   - [ParseRetryAfter], the parser of Retry-After.
//   - [NotSent], the one answer to "can this failed request have reached
//     the server?", on which the promise never to replay a single-use
//     credential (a rotated refresh token, an authorization code) rests.
//   - [RetryableStatus] and [Permanent], the statuses and errors worth, or
//     not worth, another attempt.
package httpretry
