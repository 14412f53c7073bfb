// Package transport provides the http.RoundTripper that attaches access tokens
// only to allowed origins and recovers once from a rejected token.
package transport
