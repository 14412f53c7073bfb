package oauthtest

import (
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tokenward/tokenward/internal/oauthwire"
)

// assertionLeeway tolerates clock differences on exp, nbf and iat.
const assertionLeeway = 60 * time.Second

// authenticate identifies and authenticates the client of a token,
// device authorization or revocation request (RFC 6749 section 2.3). The
// client must use exactly its registered method. The caller holds s.mu.
func (s *Server) authenticate(r *http.Request) (*Client, *reply) {
	user, pass, hasBasic := r.BasicAuth()
	assertion := r.PostForm.Get("client_assertion")
	_, hasPostSecret := r.PostForm["client_secret"]
	presented := AuthNone
	n := 0
	if hasBasic {
		presented, n = AuthClientSecretBasic, n+1
	}
	if hasPostSecret {
		presented, n = AuthClientSecretPost, n+1
	}
	if assertion != "" {
		presented, n = AuthPrivateKeyJWT, n+1
	}
	if n > 1 {
		s.stats.ClientAuthFailures++
		return nil, oauthError(http.StatusBadRequest, "invalid_request", "more than one client authentication method")
	}
	fail := func(desc string) (*Client, *reply) {
		s.stats.ClientAuthFailures++
		rep := oauthError(http.StatusUnauthorized, "invalid_client", desc)
		if hasBasic {
			rep.header.Set("WWW-Authenticate", `Basic realm="oauthtest"`)
		}
		return nil, rep
	}
	id := r.PostForm.Get("client_id")
	switch presented {
	case AuthClientSecretBasic:
		// RFC 6749 section 2.3.1: both parts are form-urlencoded.
		u, err1 := url.QueryUnescape(user)
		p, err2 := url.QueryUnescape(pass)
		if err1 != nil || err2 != nil {
			return fail("malformed basic credentials")
		}
		user, pass = u, p
		if id != "" && id != user {
			return fail("client_id does not match the authenticated client")
		}
		id = user
	case AuthPrivateKeyJWT:
		if iss := unverifiedClaim(assertion, "iss"); id == "" {
			id = iss
		}
	}
	if id == "" {
		return fail("client_id missing")
	}
	c := s.clients[id]
	if c == nil {
		return fail("unknown client")
	}
	if presented != c.method() {
		return fail("client must authenticate with " + c.method())
	}
	switch presented {
	case AuthClientSecretBasic:
		if subtle.ConstantTimeCompare([]byte(pass), []byte(c.Secret)) != 1 {
			return fail("wrong client secret")
		}
	case AuthClientSecretPost:
		if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("client_secret")), []byte(c.Secret)) != 1 {
			return fail("wrong client secret")
		}
	case AuthPrivateKeyJWT:
		if r.PostForm.Get("client_assertion_type") != oauthwire.ClientAssertionType {
			return fail("wrong client_assertion_type")
		}
		if err := s.verifyAssertion(assertion, c, r); err != nil {
			return fail("client assertion rejected: " + err.Error())
		}
	}
	return c, nil
}

func unverifiedClaim(jws, name string) string {
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		return ""
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return ""
	}
	v, _ := m[name].(string)
	return v
}

// verifyAssertion checks a private_key_jwt assertion (RFC 7523 section 3):
// signature by the registered key with the algorithm its type implies,
// iss = sub = client id, aud naming this server, exp in the future (and not
// more than an hour away), nbf passed, jti never seen before. The caller
// holds s.mu.
func (s *Server) verifyAssertion(jws string, c *Client, r *http.Request) error {
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		return errors.New("not a JWS")
	}
	hb, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	cb, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return errors.New("bad base64url")
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(hb, &hdr) != nil {
		return errors.New("bad header")
	}
	want, err := oauthwire.AssertionAlg(c.PublicKey)
	if err != nil || hdr.Alg != want {
		return errors.New("unexpected alg")
	}
	if !verifyProofSig(c.PublicKey, hdr.Alg, []byte(parts[0]+"."+parts[1]), sig) {
		return errors.New("bad signature")
	}
	var claims struct {
		Iss string          `json:"iss"`
		Sub string          `json:"sub"`
		Aud json.RawMessage `json:"aud"`
		Exp *float64        `json:"exp"`
		Nbf *float64        `json:"nbf"`
		Jti string          `json:"jti"`
	}
	if json.Unmarshal(cb, &claims) != nil {
		return errors.New("bad claims")
	}
	if claims.Iss != c.ID || claims.Sub != c.ID {
		return errors.New("iss and sub must be the client id")
	}
	var auds []string
	if json.Unmarshal(claims.Aud, &auds) != nil {
		var one string
		if json.Unmarshal(claims.Aud, &one) != nil {
			return errors.New("bad aud")
		}
		auds = []string{one}
	}
	okAud := false
	for _, a := range auds {
		if a == s.issuer || a == s.issuer+PathToken || a == s.issuer+r.URL.Path {
			okAud = true
		}
	}
	if !okAud {
		return errors.New("aud does not name this server")
	}
	now := s.now()
	if claims.Exp == nil || math.IsNaN(*claims.Exp) {
		return errors.New("exp missing")
	}
	exp := time.Unix(int64(*claims.Exp), 0)
	if !now.Before(exp.Add(assertionLeeway)) {
		return errors.New("expired")
	}
	if exp.After(now.Add(time.Hour + assertionLeeway)) {
		return errors.New("exp too far in the future")
	}
	if claims.Nbf != nil && time.Unix(int64(*claims.Nbf), 0).After(now.Add(assertionLeeway)) {
		return errors.New("not yet valid")
	}
	if claims.Jti == "" {
		return errors.New("jti missing")
	}
	for j, e := range s.jtis {
		if now.After(e.Add(assertionLeeway)) {
			delete(s.jtis, j)
		}
	}
	key := c.ID + "\x00" + claims.Jti
	if _, seen := s.jtis[key]; seen {
		return errors.New("jti replayed")
	}
	s.jtis[key] = exp
	return nil
}
