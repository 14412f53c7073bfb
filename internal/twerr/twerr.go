// Package twerr holds the few sentinel errors that more than one public
// package exports under its own name (store, refresh, transport and client
// re-export them as variables with the same value), so that errors.Is matches
// whichever name a caller uses.
package twerr

import "errors"

var (
	// ErrInvalidConfig: a configuration (client.Options, store.Options,
	// transport.Options, refresh.Options) is incomplete, contradictory or
	// unusable; the message says which field.
	ErrInvalidConfig = errors.New("invalid configuration")

	// ErrInsecureURL: a URL that would carry a credential is not https (plain
	// http is allowed only for loopback hosts, and only by explicit opt-in).
	ErrInsecureURL = errors.New("tokenward: insecure URL: https is required (http only for loopback hosts with AllowInsecureLoopback)")

	// ErrUnsupportedTokenType: the authorization server issued a token type
	// the configuration does not accept: other than Bearer, or with DPoP on,
	// other than DPoP (Bearer too only when a downgrade is allowed).
	ErrUnsupportedTokenType = errors.New("tokenward: unsupported token type")
)
