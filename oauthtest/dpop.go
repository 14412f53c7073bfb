package oauthtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"hash"
	"math"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DPoPMode says whether the server and its APIs use DPoP (RFC 9449).
type DPoPMode int

// DPoP modes (Config.DPoP).
const (
	// DPoPOff ignores DPoP headers altogether, as a server that does not
	// know DPoP does: every token is a Bearer token. The default.
	DPoPOff DPoPMode = iota
	// DPoPOptional binds the tokens of requests that carry a valid DPoP
	// proof (token_type "DPoP") and issues Bearer tokens to the others;
	// APIs accept both schemes but refuse a bound token shown as Bearer.
	DPoPOptional
	// DPoPRequired refuses token requests without a DPoP proof, and APIs
	// accept only the DPoP scheme.
	DPoPRequired
)

var dpopModeNames = [...]string{"off", "optional", "required"}

// String returns the mode's name ("off", "optional", "required").
func (m DPoPMode) String() string {
	if m >= 0 && int(m) < len(dpopModeNames) {
		return dpopModeNames[m]
	}
	return "DPoPMode(" + strconv.Itoa(int(m)) + ")"
}

// DefaultDPoPSigningAlgs are the proof algorithms accepted when
// Config.DPoPSigningAlgs is empty.
var DefaultDPoPSigningAlgs = []string{"ES256", "EdDSA", "PS256", "RS256"}

// dpopSupportedAlgs are the asymmetric JWS algorithms this server can
// verify; Config.DPoPSigningAlgs must name only these.
var dpopSupportedAlgs = []string{"ES256", "ES384", "ES512", "EdDSA", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}

// Reasons a DPoP proof is refused, the second half of the keys of
// Stats.DPoPRefusals ("token:htu").
const (
	DPoPRefusedMissing    = "missing"     // no DPoP header where one is required
	DPoPRefusedMultiple   = "multiple"    // more than one DPoP header
	DPoPRefusedMalformed  = "malformed"   // not a compact JWS with JSON header and claims
	DPoPRefusedTyp        = "typ"         // typ is not dpop+jwt
	DPoPRefusedAlg        = "alg"         // none, symmetric, or not in DPoPSigningAlgs
	DPoPRefusedJWK        = "jwk"         // jwk missing, malformed, or not fitting alg
	DPoPRefusedPrivateKey = "private-key" // jwk has private members
	DPoPRefusedSignature  = "signature"   // signature does not verify with jwk
	DPoPRefusedClaims     = "claims"      // a required claim missing or of the wrong type
	DPoPRefusedHTM        = "htm"         // htm is not the request's method
	DPoPRefusedHTU        = "htu"         // htu is not the request's URL
	DPoPRefusedIAT        = "iat"         // iat outside the acceptance window
	DPoPRefusedReplay     = "jti-replay"  // jti seen before within the window
	DPoPRefusedNonce      = "nonce"       // nonce present but not the current one
	DPoPRefusedATH        = "ath"         // ath missing or not the token's hash
	DPoPRefusedKey        = "key"         // the proof's key is not the one the token or code is bound to
	DPoPRefusedDowngrade  = "downgrade"   // a DPoP-bound token shown with the Bearer scheme
	DPoPRefusedBearer     = "bearer"      // the Bearer scheme where DPoP is required
)

// EndpointAPI is the name the APIs count under in Stats.DPoPProofs,
// Stats.DPoPRefusals and Stats.DPoPNonceChallenges (all APIs together).
const EndpointAPI = "api"

// dpopProof is a proof that passed every check.
type dpopProof struct {
	jkt string // RFC 7638 SHA-256 thumbprint of its key
	raw string
}

// dpopError is a refused proof: nonce is true when the only fault was a
// missing or stale nonce (answered use_dpop_nonce).
type dpopError struct {
	reason string
	desc   string
	nonce  bool
}

func (e *dpopError) Error() string { return e.desc }

func refuse(reason, desc string) *dpopError { return &dpopError{reason: reason, desc: desc} }

// proofCheck is what a proof is checked against: the request it came
// with, the nonce the server expects ("" when nonces are off) and, at an
// API, the access token it must carry the hash of.
type proofCheck struct {
	r      *http.Request
	nonce  string
	token  string
	useATH bool
}

// checkProof validates the DPoP proof of a request as RFC 9449 section
// 4.3 lists it, and records its jti. The caller holds s.mu.
func (s *Server) checkProof(pc proofCheck) (*dpopProof, *dpopError) {
	vals := pc.r.Header.Values("DPoP")
	switch {
	case len(vals) == 0:
		return nil, refuse(DPoPRefusedMissing, "DPoP proof required")
	case len(vals) > 1:
		// Two proofs cannot both be the one the request was signed with.
		return nil, refuse(DPoPRefusedMultiple, "more than one DPoP header")
	}
	raw := strings.TrimSpace(vals[0])
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, refuse(DPoPRefusedMalformed, "DPoP proof is not a compact JWS")
	}
	hb, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	cb, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return nil, refuse(DPoPRefusedMalformed, "DPoP proof is not base64url")
	}
	var hdr struct {
		Typ  *string                    `json:"typ"`
		Alg  string                     `json:"alg"`
		JWK  map[string]json.RawMessage `json:"jwk"`
		Crit json.RawMessage            `json:"crit"`
	}
	if json.Unmarshal(hb, &hdr) != nil {
		return nil, refuse(DPoPRefusedMalformed, "DPoP proof header is not a JSON object")
	}
	if hdr.Typ == nil || *hdr.Typ != "dpop+jwt" {
		return nil, refuse(DPoPRefusedTyp, `DPoP proof typ must be "dpop+jwt"`)
	}
	if hdr.Crit != nil {
		// No extension is understood here, so any critical one must fail.
		return nil, refuse(DPoPRefusedMalformed, "DPoP proof has crit header parameters")
	}
	if !slices.Contains(dpopSupportedAlgs, hdr.Alg) || !slices.Contains(s.cfg.DPoPSigningAlgs, hdr.Alg) {
		return nil, refuse(DPoPRefusedAlg, "DPoP proof alg "+strconv.Quote(hdr.Alg)+" not accepted")
	}
	if hdr.JWK == nil {
		return nil, refuse(DPoPRefusedJWK, "DPoP proof has no jwk")
	}
	for _, m := range []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"} {
		if _, ok := hdr.JWK[m]; ok {
			return nil, refuse(DPoPRefusedPrivateKey, "DPoP proof jwk holds private key member "+strconv.Quote(m))
		}
	}
	pub, jkt, derr := parseProofJWK(hdr.JWK, hdr.Alg)
	if derr != nil {
		return nil, derr
	}
	if !verifyProofSig(pub, hdr.Alg, []byte(parts[0]+"."+parts[1]), sig) {
		return nil, refuse(DPoPRefusedSignature, "DPoP proof signature does not verify with its jwk")
	}
	var claims struct {
		JTI   *string  `json:"jti"`
		HTM   *string  `json:"htm"`
		HTU   *string  `json:"htu"`
		IAT   *float64 `json:"iat"`
		ATH   *string  `json:"ath"`
		Nonce *string  `json:"nonce"`
	}
	if json.Unmarshal(cb, &claims) != nil {
		return nil, refuse(DPoPRefusedClaims, "DPoP proof claims are not a JSON object with the right types")
	}
	switch {
	case claims.JTI == nil || *claims.JTI == "":
		return nil, refuse(DPoPRefusedClaims, "DPoP proof has no jti")
	case claims.HTM == nil:
		return nil, refuse(DPoPRefusedClaims, "DPoP proof has no htm")
	case claims.HTU == nil:
		return nil, refuse(DPoPRefusedClaims, "DPoP proof has no htu")
	case claims.IAT == nil || math.IsNaN(*claims.IAT) || math.IsInf(*claims.IAT, 0):
		return nil, refuse(DPoPRefusedClaims, "DPoP proof has no iat")
	}
	if *claims.HTM != pc.r.Method {
		return nil, refuse(DPoPRefusedHTM, "DPoP proof htm does not match the request method")
	}
	want := requestURL(pc.r)
	got, ok := normalizeHTU(*claims.HTU)
	if !ok || got != want {
		return nil, refuse(DPoPRefusedHTU, "DPoP proof htu does not match the request URL")
	}
	now := s.now()
	if *claims.IAT < 0 || *claims.IAT > 1e11 {
		// Far beyond any window; converting it could overflow.
		return nil, refuse(DPoPRefusedIAT, "DPoP proof iat out of range")
	}
	sec, frac := math.Modf(*claims.IAT)
	iat := time.Unix(int64(sec), int64(frac*1e9))
	if iat.Before(now.Add(-s.cfg.DPoPProofWindow)) {
		return nil, refuse(DPoPRefusedIAT, "DPoP proof iat too old")
	}
	if iat.After(now.Add(s.cfg.DPoPProofSkew)) {
		return nil, refuse(DPoPRefusedIAT, "DPoP proof iat in the future")
	}
	if pc.useATH {
		sum := sha256.Sum256([]byte(pc.token))
		if claims.ATH == nil || *claims.ATH != b64(sum[:]) {
			return nil, refuse(DPoPRefusedATH, "DPoP proof ath does not match the access token")
		}
	}
	if pc.nonce != "" && (claims.Nonce == nil || *claims.Nonce != pc.nonce) {
		e := refuse(DPoPRefusedNonce, "nonce required in DPoP proof")
		if claims.Nonce != nil {
			e.desc = "DPoP proof nonce is not the current one"
		}
		e.nonce = true
		return nil, e
	}
	// The jti is remembered per key for as long as its proof could be
	// accepted, so a copied proof cannot be sent again.
	key := sha256.Sum256([]byte(jkt + "\x00" + *claims.JTI))
	for k, exp := range s.dpopJTIs {
		if now.After(exp) {
			delete(s.dpopJTIs, k)
		}
	}
	if _, seen := s.dpopJTIs[key]; seen {
		return nil, refuse(DPoPRefusedReplay, "DPoP proof jti already used")
	}
	s.dpopJTIs[key] = iat.Add(s.cfg.DPoPProofWindow + s.cfg.DPoPProofSkew)
	return &dpopProof{jkt: jkt, raw: raw}, nil
}

// parseProofJWK turns the proof's jwk into a public key fit for alg and
// computes its RFC 7638 thumbprint.
func parseProofJWK(jwk map[string]json.RawMessage, alg string) (crypto.PublicKey, string, *dpopError) {
	str := func(name string) (string, bool) {
		var v string
		raw, ok := jwk[name]
		if !ok || json.Unmarshal(raw, &v) != nil || v == "" {
			return "", false
		}
		return v, true
	}
	bad := func(desc string) (crypto.PublicKey, string, *dpopError) {
		return nil, "", refuse(DPoPRefusedJWK, "DPoP proof jwk: "+desc)
	}
	dec := func(v string) []byte {
		b, err := base64.RawURLEncoding.DecodeString(v)
		if err != nil {
			return nil
		}
		return b
	}
	kty, _ := str("kty")
	// The thumbprint is the SHA-256 of the required members, in
	// lexicographic order, without whitespace (RFC 7638 section 3).
	thumb := func(members ...string) string {
		var b strings.Builder
		b.WriteByte('{')
		for i, m := range members {
			if i > 0 {
				b.WriteByte(',')
			}
			v, _ := str(m)
			k, _ := json.Marshal(m)
			val, _ := json.Marshal(v)
			b.Write(k)
			b.WriteByte(':')
			b.Write(val)
		}
		b.WriteByte('}')
		sum := sha256.Sum256([]byte(b.String()))
		return b64(sum[:])
	}
	switch {
	case strings.HasPrefix(alg, "ES"):
		curves := map[string]struct {
			crv string
			c   elliptic.Curve
		}{"ES256": {"P-256", elliptic.P256()}, "ES384": {"P-384", elliptic.P384()}, "ES512": {"P-521", elliptic.P521()}}
		want := curves[alg]
		crv, _ := str("crv")
		xs, okx := str("x")
		ys, oky := str("y")
		if kty != "EC" || crv != want.crv || !okx || !oky {
			return bad("an EC key on " + want.crv + " is needed for " + alg)
		}
		size := (want.c.Params().BitSize + 7) / 8
		x, y := dec(xs), dec(ys)
		if len(x) != size || len(y) != size {
			return bad("x and y must be full-length base64url")
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(want.c, append(append([]byte{4}, x...), y...))
		if err != nil {
			return bad("point not on the curve")
		}
		return pub, thumb("crv", "kty", "x", "y"), nil
	case alg == "EdDSA":
		crv, _ := str("crv")
		xs, _ := str("x")
		x := dec(xs)
		if kty != "OKP" || crv != "Ed25519" || len(x) != ed25519.PublicKeySize {
			return bad("an OKP Ed25519 key is needed for EdDSA")
		}
		return ed25519.PublicKey(x), thumb("crv", "kty", "x"), nil
	default: // RS*, PS*
		ns, okn := str("n")
		es, oke := str("e")
		n, e := dec(ns), dec(es)
		if kty != "RSA" || !okn || !oke || len(n) == 0 || len(e) == 0 || len(e) > 4 {
			return bad("an RSA key is needed for " + alg)
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pub.N.BitLen() < 2048 || pub.E < 3 || pub.E%2 == 0 {
			return bad("RSA key weaker than 2048 bits or with a bad exponent")
		}
		return pub, thumb("e", "kty", "n"), nil
	}
}

// verifyProofSig checks a JWS signature made with alg (JWA, RFC 7518): of a
// DPoP proof, and of a private_key_jwt client assertion.
func verifyProofSig(pub crypto.PublicKey, alg string, input, sig []byte) bool {
	if k, ok := pub.(ed25519.PublicKey); ok {
		return alg == "EdDSA" && ed25519.Verify(k, input, sig)
	}
	var h hash.Hash
	var ch crypto.Hash
	switch alg[2:] {
	case "256":
		h, ch = sha256.New(), crypto.SHA256
	case "384":
		h, ch = sha512.New384(), crypto.SHA384
	case "512":
		h, ch = sha512.New(), crypto.SHA512
	default:
		return false
	}
	h.Write(input)
	digest := h.Sum(nil)
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return false
		}
		r, s := new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:])
		return ecdsa.Verify(k, digest, r, s)
	case *rsa.PublicKey:
		if strings.HasPrefix(alg, "PS") {
			// JWA fixes the salt length to the hash's size.
			return rsa.VerifyPSS(k, ch, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
		}
		return rsa.VerifyPKCS1v15(k, ch, digest, sig) == nil
	}
	return false
}

// requestURL is the URL a request was sent to, without query and
// fragment, normalised as normalizeHTU does.
func requestURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	u, _ := normalizeHTU(scheme + "://" + r.Host + r.URL.EscapedPath())
	return u
}

// normalizeHTU applies the syntax-based and scheme-based normalisation of
// RFC 3986 sections 6.2.2 and 6.2.3 (as RFC 9449 section 4.3 advises) and
// drops query and fragment, which htu is compared without. ok is false
// for anything but an absolute http(s) URL.
func normalizeHTU(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || u.Host == "" {
		return "", false
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return "", false
	}
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if p := u.Port(); p != "" && !(scheme == "http" && p == "80") && !(scheme == "https" && p == "443") {
		host += ":" + p
	}
	user := ""
	if u.User != nil {
		user = u.User.String() + "@"
	}
	path := normalizePercent(u.EscapedPath())
	path = removeDotSegments(path)
	if path == "" {
		path = "/"
	}
	return scheme + "://" + user + host + path, true
}

// normalizePercent upper-cases percent-encodings and decodes those of
// unreserved characters (RFC 3986 section 6.2.2.1 and 6.2.2.2).
func normalizePercent(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) {
			if v, err := strconv.ParseUint(p[i+1:i+3], 16, 8); err == nil {
				c := byte(v)
				if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
					b.WriteByte(c)
				} else {
					b.WriteString(strings.ToUpper(p[i : i+3]))
				}
				i += 2
				continue
			}
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// removeDotSegments is RFC 3986 section 5.2.4.
func removeDotSegments(p string) string {
	var out []string
	segs := strings.Split(p, "/")
	for i, seg := range segs {
		switch seg {
		case ".":
			if i == len(segs)-1 {
				out = append(out, "")
			}
		case "..":
			if len(out) > 1 {
				out = out[:len(out)-1]
			}
			if i == len(segs)-1 {
				out = append(out, "")
			}
		default:
			out = append(out, seg)
		}
	}
	return strings.Join(out, "/")
}

// validJKT: a base64url SHA-256 thumbprint (43 characters, 32 bytes).
func validJKT(s string) bool {
	b, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil && len(b) == sha256.Size
}

// errDPoPConfig reports an unusable DPoP configuration.
func errDPoPConfig(msg string) error { return errors.New("oauthtest: " + msg) }
