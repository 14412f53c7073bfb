package oauthtest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/canary"
)

// family is the set of tokens that descend from one grant (a login, a
// device approval, a Mint): revoking it revokes them all.
type family struct {
	id        int
	clientID  string
	subject   string
	scope     string
	resources []string
	nonce     string
	revoked   bool
	ats       []*accessToken
	rts       []*refreshToken
}

type accessToken struct {
	value    string
	clientID string
	subject  string
	scope    string
	audience string
	issued   time.Time
	expiry   time.Time
	revoked  bool
	fam      *family // nil for client credentials
	jkt      string  // DPoP key thumbprint it is bound to (cnf.jkt); "" for Bearer
}

type refreshToken struct {
	value   string
	fam     *family
	issued  time.Time
	expiry  time.Time // zero: never
	used    bool      // rotated away
	usedAt  time.Time
	revoked bool
	jkt     string // DPoP key thumbprint it is bound to (public clients only)
}

// TokenInfo describes a token the server issued (Server.Introspect). It
// holds no secret: not the token itself.
type TokenInfo struct {
	// Refresh is true for refresh tokens.
	Refresh bool
	// ClientID is the client the token was issued to.
	ClientID string
	// Subject is the user, or the client ID for client credentials.
	Subject string
	// Scope is the granted scope (space separated).
	Scope string
	// Audience is the access token's aud (its resource); "" for refresh
	// tokens.
	Audience string
	// Resources are the resources the token's grant is bound to.
	Resources []string
	// Expiry is when the token expires by the server's clock; zero for a
	// refresh token that never expires.
	Expiry time.Time
	// Family identifies the grant the token descends from: every token
	// of one login shares it, and reuse detection revokes them together.
	// 0 for client credentials tokens.
	Family int
	// Revoked: the token or its family was revoked.
	Revoked bool
	// Rotated: a refresh token that was exchanged already.
	Rotated bool
	// Active: usable now (not revoked, not expired by the server's clock,
	// not rotated away).
	Active bool
	// DPoPJKT is the RFC 7638 thumbprint of the DPoP key the token is
	// bound to (an access token's cnf.jkt; a public client's refresh
	// token), "" when it is not bound.
	DPoPJKT string
}

// Introspect describes a token the server issued, access or refresh; ok is
// false for any other string. Unlike the token endpoint it counts nowhere,
// so a test can look at tokens without changing what it measures.
func (s *Server) Introspect(token string) (TokenInfo, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	now := s.now()
	if at, ok := s.ats[token]; ok {
		info := TokenInfo{ClientID: at.clientID, Subject: at.subject, Scope: at.scope, Audience: at.audience,
			Expiry: at.expiry, Revoked: at.revoked || (at.fam != nil && at.fam.revoked), DPoPJKT: at.jkt}
		if at.fam != nil {
			info.Family, info.Resources = at.fam.id, slices.Clone(at.fam.resources)
		}
		info.Active = !info.Revoked && now.Before(at.expiry)
		return info, true
	}
	if rt, ok := s.rts[token]; ok {
		f := rt.fam
		info := TokenInfo{Refresh: true, ClientID: f.clientID, Subject: f.subject, Scope: f.scope,
			Resources: slices.Clone(f.resources), Expiry: rt.expiry, Family: f.id,
			Revoked: rt.revoked || f.revoked, Rotated: rt.used, DPoPJKT: rt.jkt}
		info.Active = !info.Revoked && !rt.used && (rt.expiry.IsZero() || now.Before(rt.expiry))
		return info, true
	}
	return TokenInfo{}, false
}

// RevokeToken revokes a token as the revocation endpoint would, for any
// client (a refresh token takes its whole family with it), and reports
// whether the server knew it. Use it to revoke tokens behind the client's
// back.
func (s *Server) RevokeToken(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.revokeLocked(token)
}

// revokeLocked revokes an access token, or a refresh token's family. The
// caller holds s.mu.
func (s *Server) revokeLocked(token string) bool {
	if at, ok := s.ats[token]; ok {
		at.revoked = true
		return true
	}
	if rt, ok := s.rts[token]; ok {
		s.revokeFamily(rt.fam)
		return true
	}
	return false
}

// revokeFamily revokes every token of f. The caller holds s.mu.
func (s *Server) revokeFamily(f *family) {
	if f == nil || f.revoked {
		return
	}
	f.revoked = true
	for _, at := range f.ats {
		at.revoked = true
	}
	for _, rt := range f.rts {
		rt.revoked = true
	}
	s.stats.FamilyRevocations++
}

// newFamily starts a token family. The caller holds s.mu.
func (s *Server) newFamily(clientID, subject, scope string, resources []string, nonce string) *family {
	s.families++
	return &family{id: s.families, clientID: clientID, subject: subject, scope: scope,
		resources: slices.Clone(resources), nonce: nonce}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func randomB64(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return b64(b)
}

// jwt builds an unsigned-but-signature-shaped JWT, padded to about size
// bytes with a "pad" claim when size > 0.
func jwt(typ string, claims map[string]any, size int) string {
	hdr := b64([]byte(`{"alg":"none","typ":"` + typ + `","kid":"oauthtest"}`))
	sig := randomB64(32)
	enc := func() string {
		p, _ := json.Marshal(claims)
		return hdr + "." + b64(p) + "." + sig
	}
	tok := enc()
	if deficit := size - len(tok); deficit > 16 {
		claims["pad"] = strings.Repeat("x", deficit*3/4-len(`,"pad":""`))
		tok = enc()
	}
	return tok
}

// mintAccess issues an access token, bound to the DPoP key with
// thumbprint jkt unless jkt is "". The caller holds s.mu.
func (s *Server) mintAccess(clientID, subject, scope, audience string, fam *family, jkt string) *accessToken {
	now := s.now()
	exp := now.Add(s.cfg.AccessTokenLifetime)
	aud := audience
	if aud == "" {
		aud = s.issuer
	}
	claims := map[string]any{
		"iss": s.issuer, "sub": subject, "aud": aud, "client_id": clientID,
		"iat": now.Unix(), "exp": exp.Unix(), "jti": canary.New("at"),
	}
	if scope != "" {
		claims["scope"] = scope
	}
	if jkt != "" {
		// RFC 9449 section 6.1: the JWT names the key it is bound to.
		claims["cnf"] = map[string]string{"jkt": jkt}
	}
	at := &accessToken{
		value:    jwt("at+jwt", claims, s.cfg.AccessTokenSize),
		clientID: clientID, subject: subject, scope: scope, audience: audience,
		issued: now, expiry: exp, fam: fam, jkt: jkt,
	}
	s.ats[at.value] = at
	if fam != nil {
		fam.ats = append(fam.ats, at)
	}
	s.stats.AccessTokensIssued++
	return at
}

// mintRefresh issues a refresh token in fam, bound to the DPoP key with
// thumbprint jkt unless jkt is "". The caller holds s.mu.
func (s *Server) mintRefresh(fam *family, jkt string) *refreshToken {
	now := s.now()
	rt := &refreshToken{value: canary.New("rt"), fam: fam, issued: now, jkt: jkt}
	if s.cfg.RefreshTokenLifetime > 0 {
		rt.expiry = now.Add(s.cfg.RefreshTokenLifetime)
	}
	s.rts[rt.value] = rt
	fam.rts = append(fam.rts, rt)
	s.stats.RefreshTokensIssued++
	return rt
}

// mintIDToken returns an id_token when the config or the scope asks for
// one. The caller holds s.mu.
func (s *Server) mintIDToken(fam *family) string {
	if fam == nil || (!s.cfg.IDToken && !slices.Contains(strings.Fields(fam.scope), "openid")) {
		return ""
	}
	now := s.now()
	claims := map[string]any{
		"iss": s.issuer, "sub": fam.subject, "aud": fam.clientID,
		"iat": now.Unix(), "exp": now.Add(s.cfg.AccessTokenLifetime).Unix(), "jti": canary.New("idt"),
	}
	if fam.nonce != "" {
		claims["nonce"] = fam.nonce
	}
	return jwt("JWT", claims, 0)
}

// tokenReply renders a successful token response in the configured shape.
// rt and idt may be "". The caller holds s.mu.
func (s *Server) tokenReply(at *accessToken, rt *refreshToken, idt string) *reply {
	c := &s.cfg
	secs := int64(c.AccessTokenLifetime / time.Second)
	type kv struct {
		k string
		v any // JSON value; nil means null
	}
	var fields []kv
	fields = append(fields, kv{"access_token", at.value})
	if !c.OmitTokenType {
		typ := c.TokenType
		if at.jkt != "" {
			typ = "DPoP" // RFC 9449 section 5: the sign that the token is bound
		}
		fields = append(fields, kv{"token_type", typ})
	}
	switch c.ExpiresIn {
	case ExpiresInNumber:
		fields = append(fields, kv{"expires_in", secs})
	case ExpiresInString:
		fields = append(fields, kv{"expires_in", strconv.FormatInt(secs, 10)})
	case ExpiresInFloat:
		fields = append(fields, kv{"expires_in", float64(secs) - 0.5})
	case ExpiresInNull:
		fields = append(fields, kv{"expires_in", nil})
	case ExpiresInZero:
		fields = append(fields, kv{"expires_in", 0})
	case ExpiresInNegative:
		fields = append(fields, kv{"expires_in", -secs})
	case ExpiresInHuge:
		fields = append(fields, kv{"expires_in", int64(1) << 40})
	case ExpiresInGarbage:
		fields = append(fields, kv{"expires_in", "soon"})
	}
	if rt != nil {
		fields = append(fields, kv{"refresh_token", rt.value})
		if c.SendRefreshTokenExpiresIn && !rt.expiry.IsZero() {
			fields = append(fields, kv{"refresh_token_expires_in", int64(rt.expiry.Sub(s.now()) / time.Second)})
		}
	}
	if at.scope != "" && !c.OmitScope {
		fields = append(fields, kv{"scope", at.scope})
	}
	if idt != "" {
		fields = append(fields, kv{"id_token", idt})
	}
	var rep *reply
	if c.FormResponse {
		v := url.Values{}
		for _, f := range fields {
			switch x := f.v.(type) {
			case nil:
				v.Set(f.k, "")
			case string:
				v.Set(f.k, x)
			default:
				v.Set(f.k, fmt.Sprint(x))
			}
		}
		rep = textReply(http.StatusOK, "application/x-www-form-urlencoded", v.Encode())
	} else {
		m := make(map[string]any, len(fields))
		for _, f := range fields {
			m[f.k] = f.v
		}
		rep = jsonReply(http.StatusOK, m)
		rep.header.Set("Content-Type", "application/json; charset=utf-8")
	}
	rep.header.Set("Cache-Control", "no-store")
	rep.header.Set("Pragma", "no-cache")
	return rep
}

// Grant describes the login Server.Mint issues tokens for.
type Grant struct {
	// ClientID is a registered client. Optional: default the first one.
	ClientID string
	// Subject is the user. Optional: default Config.Subject.
	Subject string
	// Scope is the granted scope (space separated). Optional.
	Scope string
	// Resources bind the grant to RFC 8707 resources (absolute URIs); the
	// access token's audience is the only one given, else the default
	// resource. Optional.
	Resources []string
	// NoRefreshToken mints an access token only.
	NoRefreshToken bool
	// DPoPJKT binds the tokens to the DPoP key with this RFC 7638
	// thumbprint: the access token (token type "DPoP"), and the refresh
	// token when the client is public. Optional.
	DPoPJKT string
}

// Mint issues tokens for g without any request, as if a login had just
// happened: for tests that start logged in, from a stored token. The
// token's Expiry is by the server's clock; it carries the refresh token
// (unless g.NoRefreshToken), and the extras "scope" and "id_token" (when
// one is issued, see Config.IDToken). Mint counts in Stats only as issued
// tokens, not as a request.
func (s *Server) Mint(g Grant) (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g.ClientID == "" {
		g.ClientID = s.cfg.Clients[0].ID
	}
	if s.clients[g.ClientID] == nil {
		return nil, fmt.Errorf("oauthtest: unknown client %q", g.ClientID)
	}
	if g.Subject == "" {
		g.Subject = s.cfg.Subject
	}
	for _, r := range g.Resources {
		if !validResource(r) {
			return nil, errors.New("oauthtest: resource is not an absolute URI")
		}
	}
	if g.DPoPJKT != "" && !validJKT(g.DPoPJKT) {
		return nil, errors.New("oauthtest: DPoPJKT is not a base64url SHA-256 thumbprint")
	}
	fam := s.newFamily(g.ClientID, g.Subject, g.Scope, g.Resources, "")
	aud, _ := s.audience(nil, fam)
	at := s.mintAccess(g.ClientID, g.Subject, g.Scope, aud, fam, g.DPoPJKT)
	typ := s.cfg.TokenType
	if g.DPoPJKT != "" {
		typ = "DPoP"
	}
	tok := &oauth2.Token{AccessToken: at.value, TokenType: typ, Expiry: at.expiry,
		ExpiresIn: int64(s.cfg.AccessTokenLifetime / time.Second)}
	if !g.NoRefreshToken {
		tok.RefreshToken = s.mintRefresh(fam, s.refreshJKT(s.clients[g.ClientID], g.DPoPJKT)).value
	}
	extra := map[string]any{}
	if g.Scope != "" {
		extra["scope"] = g.Scope
	}
	if idt := s.mintIDToken(fam); idt != "" {
		extra["id_token"] = idt
	}
	return tok.WithExtra(extra), nil
}
