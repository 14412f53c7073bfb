// Package oauthtest provides a fake OAuth 2.0 authorization server and
// protected API for testing code that uses OAuth, in the spirit of
// net/http/httptest.
//
// A test starts a Server with Start (or New, and Close when done), points
// the code under test at Server.Issuer (discovery) or at the endpoint URLs
// (TokenURL, AuthorizeURL, DeviceAuthorizationURL, RevocationURL), and
// starts a protected API with StartAPI (or Server.NewAPI) for the tokens to
// be used on:
//
//	func TestReportJob(t *testing.T) {
//		srv := oauthtest.Start(t, oauthtest.Config{
//			Clients: []oauthtest.Client{{ID: "reports", Secret: "s3cret"}},
//		})
//		api := oauthtest.StartAPI(t, srv, "https://reports.example")
//
//		runJob(t, srv.TokenURL(), api.URL()) // the code under test
//
//		if n := srv.Stats().Grants[oauthtest.GrantClientCredentials]; n != 1 {
//			t.Errorf("%d token requests, want 1", n)
//		}
//	}
//
// # What it serves
//
// A Server listens on 127.0.0.1 with a random port (plain HTTP, or HTTPS
// with a self-signed certificate when Config.TLS is set) and serves:
//
//	/.well-known/oauth-authorization-server   RFC 8414 discovery
//	/.well-known/openid-configuration         OpenID Connect discovery (the same document)
//	/authorize                                authorization code with S256 PKCE, RFC 9207 iss
//	/par                                      RFC 9126 pushed authorization requests
//	/token                                    client_credentials, authorization_code,
//	                                          refresh_token (rotation, reuse detection),
//	                                          device_code (RFC 8628), RFC 8707 resource
//	/device_authorization                     RFC 8628 device authorization
//	/device                                   verification page (approve or deny)
//	/revoke                                   RFC 7009 revocation
//	/userinfo                                 minimal OpenID Connect userinfo
//
// Logins are approved at once, as Config.Subject: Server.Authorize plays
// the browser's visit to the authorization endpoint and returns the
// redirect to the client's callback, Server.Browse also delivers it, and
// device logins are approved after Config.DevicePendingPolls polls (or by
// Server.ApproveDevice with Config.DeviceManualApproval).
// Server.Mint issues tokens without any request, for tests that start
// logged in. Config.NoSession answers prompt=none with login_required, and
// Config.AuthorizeError any other authorization error.
//
// # Pushed authorization requests
//
// The PAR endpoint (RFC 9126, advertised in discovery as
// pushed_authorization_request_endpoint) authenticates the client as the
// token endpoint does, checks the parameters the authorization endpoint
// checks, and answers 201 with a request_uri
// ("urn:ietf:params:oauth:request_uri:...") that expires after
// Config.PARLifetime (one minute). The authorization endpoint then takes
// client_id and request_uri in place of the parameters, and accepts each
// request_uri once. With Config.RequirePAR, discovery says
// require_pushed_authorization_requests and the authorization endpoint
// refuses every request that does not name a pushed one.
// Stats.PushedRequests counts accepted pushes, and
// Server.EndpointRequests lists the parameters each endpoint received
// (credentials hidden), so a test can prove that the browser saw only
// client_id and request_uri, or that an extra parameter reached the token
// endpoint.
//
// Each API (NewAPI) runs on an origin of its own and accepts only
// unexpired, unrevoked access tokens the server issued for its resource
// (the token's audience); it records every credential it is shown
// (API.Requests, API.Tokens), so a test can check that each API received
// only its own tokens. The Trap, on yet another origin, records whatever
// is redirected to it.
//
// # Faults, counters and the clock
//
// Server.InjectFault makes an endpoint fail in the ways real servers and
// networks do: 5xx answers, 429 with Retry-After, OAuth errors, connection
// resets before or after the request was processed (a lost response),
// hanging or slow answers, huge or malformed bodies, HTML pages and
// redirects. Server.Stats counts requests per endpoint and grant, issued,
// rotated and replayed tokens, reuse detections and revocations, and
// Server.RefreshPresentations lists every refresh token presented, so a
// test can prove promises such as "no refresh token was presented twice".
// Config.ClockOffset runs the server's clock ahead of or behind the
// client's, and Config.Now replaces it.
//
// # In memory, for testing/synctest
//
// Server.Transport reaches the server, its APIs and its trap in memory,
// with no socket. With Config.InMemory the server opens no listener at all;
// create such a server inside a testing/synctest bubble and the whole
// exchange, expiry included, runs on the bubble's fake clock. (A goroutine
// blocked on a real socket is never durably blocked, so a listening server
// would keep the fake clock from advancing.)
//
//	func TestTokenExpiry(t *testing.T) {
//		synctest.Test(t, func(t *testing.T) {
//			srv := oauthtest.Start(t, oauthtest.Config{InMemory: true, AccessTokenLifetime: time.Minute})
//			hc := &http.Client{Transport: srv.Transport()}
//			// ... the code under test, with hc; time.Sleep(time.Hour)
//			// returns at once, and the server's tokens expire.
//		})
//	}
//
// # What it is not
//
// It is not an authorization server to deploy, nor a reference for one.
// Its tokens are shaped like JWTs but unsigned (alg "none"), every login is
// approved without a user, nothing is persisted, and it has no protection
// against anyone who can reach its port: run it on loopback, in tests.
//
// The server never logs a secret: Config.Logger sees endpoints, grant
// types, statuses and fault kinds only, and the types that hold
// credentials (Client, Config, APIRequest, Presentation, DeviceInfo,
// TrapRequest) print them as [REDACTED] through fmt and log/slog, while
// their fields stay readable by the test. Everything is safe for
// concurrent use.
package oauthtest
