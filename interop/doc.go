// Package interop holds tokenward's interoperability suite: tests, and no
// code of its own, that run tokenward against an OpenID provider it was not
// written with.
//
// The provider is github.com/zitadel/oidc/v3's pkg/op (an OpenID Certified
// implementation) with the in-memory storage and login pages of that
// module's example server, started in the test process on a random
// 127.0.0.1 port. tokenward is driven through its public packages only
// (client and store), the way an application would use it: discovery,
// client credentials, the browser login with PKCE (a cookie-keeping HTTP
// client plays the browser and submits the provider's own login form), the
// device flow (approved through the provider's own verification pages),
// refresh with rotation, revocation on logout, and the tokens reaching a
// small loopback API that checks them with the provider.
//
// It also covers an extra authorization parameter and its typed refusal
// (prompt=none without a session: ErrLoginRequired), private_key_jwt with
// the issuer as the assertion's audience, and the offline start (no
// request to the provider with a valid stored token; Status and Logout
// with the provider stopped).
//
// Not covered, and why: pushed authorization requests (the provider does
// not offer them; oauthtest does, and the client tests use it); token
// exchange and the JWT bearer grant (the provider offers them, tokenward
// has no public API for these grants yet).
//
// Where the provider departs from the RFCs, or its example storage is
// limited, the test that meets it says so in a comment. The suite runs in
// `go test -race ./...` and needs no network beyond loopback.
package interop
