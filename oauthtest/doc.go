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
// and, with Config.DPoP, checks DPoP proofs (RFC 9449) at the token, PAR
// and userinfo endpoints and at every API.
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
// # DPoP
//
// Config.DPoP turns on DPoP (RFC 9449), off by default: a server with it
// off ignores DPoP headers, as one that does not know DPoP does. With
// DPoPOptional a token request that carries a DPoP proof gets a token of
// type "DPoP" bound to the proof's key (its RFC 7638 thumbprint is the
// access token's cnf.jkt and TokenInfo.DPoPJKT), and one without a proof a
// Bearer token; DPoPRequired refuses token requests without a proof, and
// its APIs take only the DPoP scheme. Discovery advertises
// dpop_signing_alg_values_supported (Config.DPoPSigningAlgs).
//
// Proofs are checked as strictly as RFC 9449 section 4.3 says: exactly one
// DPoP header holding a compact JWS; typ "dpop+jwt"; an asymmetric alg
// among DPoPSigningAlgs (never none or an HMAC); a public jwk of the kind
// alg needs, without private members; a valid signature; htm equal to the
// request method; htu equal to the request URL without query and fragment,
// after RFC 3986 normalisation; iat within Config.DPoPProofWindow in the
// past and Config.DPoPProofSkew in the future, by the server's clock
// (ClockOffset and Now included); a jti not seen from that key while the
// proof could be accepted. A failed check is answered 400
// invalid_dpop_proof with a description at the token and PAR endpoints,
// and 401 with WWW-Authenticate: DPoP error="invalid_dpop_proof" and
// algs="..." at an API. With Config.DPoPNonceAS (token and PAR endpoints)
// or Config.DPoPNonceAPI (APIs and userinfo) the proof must also carry the
// current nonce, else the answer is use_dpop_nonce with a DPoP-Nonce
// header (400 at the token endpoint, a 401 challenge at an API); every
// answer carries the current nonce, and Server.RotateDPoPNonce replaces
// both nonces, the authorization server's and the APIs', which differ.
//
// Bindings follow the RFC: a public client's refresh token is bound to the
// key of the proof it was issued with (section 5), so a refresh with
// another key or none is refused invalid_grant, before reuse detection and
// without revoking anything; a confidential client's is not. An
// authorization request or pushed request may carry dpop_jkt, and a pushed
// request a DPoP proof instead (sections 10 and 10.1; both must then
// agree): the code is then redeemed only with a proof of that key, else
// invalid_grant. An API (and userinfo) takes "Authorization: DPoP <token>"
// with a proof whose ath is the token's hash and whose key is the token's;
// a bound token shown as Bearer is refused with a Bearer
// error="invalid_token" challenge per RFC 6750 (section 7.2) and a DPoP
// challenge naming the algorithms. Server.Mint binds with Grant.DPoPJKT.
//
// Stats.DPoPProofs counts the proofs accepted by endpoint,
// Stats.DPoPRefusals the refusals by endpoint and reason ("token:htu",
// "api:downgrade"), Stats.DPoPNonceChallenges the use_dpop_nonce answers;
// APIRequest.Scheme and APIRequest.DPoPJKT say how each API request was
// authorised, without keeping the proof. Server.LastDPoPProof returns the
// last proof an endpoint accepted, for a test to replay it.
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
