// Package dpop builds the client side of OAuth 2.0 Demonstrating Proof of
// Possession (RFC 9449): the proof key and its public JWK and thumbprint,
// the signed proof JWT sent in the DPoP header of token and API requests,
// the per-origin cache of server nonces, and the parsing of the answers
// that ask for a nonce or reject a proof.
//
// A Key is built once (Generate, NewKey or ParseKey) and precomputes
// everything that does not change between proofs: the JOSE header with the
// public JWK, the thumbprint, the signing parameters. A proof then only
// encodes its claims and signs, so it is cheap enough for every request.
//
// # The htu claim
//
// RFC 9449 section 4.2 defines htu as the HTTP target URI of the request
// without its query and fragment, and section 4.3 asks servers to compare
// it after the syntax-based and scheme-based normalisation of RFC 3986
// section 6.2.2 and 6.2.3. Servers that do not normalise compare with the
// URI they rebuild from the request, which never names a default port. So
// HTU writes the form that both kinds of server accept:
//   - scheme and host in lower case (both are case-insensitive);
//   - no user information (it is not part of an HTTP target URI, and it
//     could carry a password into a claim sent on every request);
//   - the port only when it is not the scheme's default (443 for https, 80
//     for http), and never an empty one ("host:");
//   - the path exactly as net/http writes it on the request line
//     (url.URL.EscapedPath), "/" when it is empty; percent-encodings and
//     dot segments are left alone, because the server sees them as sent;
//   - no query, no fragment.
//
// Only http and https URLs with an ASCII host are accepted: net/http sends
// a non-ASCII host in its punycode form, which this package does not
// compute, and a proof with the wrong htu would be refused anyway.
//
// Nonces are kept per origin in the ASCII serialisation of RFC 6454
// section 6.2 (scheme://host, with the port only when it is not the
// default), which Origin returns.
//
// Nothing in this package prints key material: a Key's String, GoString,
// Format and LogValue show only its algorithm and thumbprint, and
// ProofParams hides its access token the same way.
package dpop
