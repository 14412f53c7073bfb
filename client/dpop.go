package client

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/internal/dpop"
	"github.com/tokenward/tokenward/internal/oauthwire"
	"github.com/tokenward/tokenward/internal/tokenx"
)

// DPoP (RFC 9449): the key lives with the credential. It is made at the
// first login or the first client-credentials token, travels in the
// token's extras (tokenx.KeyDPoPKey, the PKCS #8 bytes, a secret that the
// store keeps in Entry.KeyPair and the public token never carries) and
// under its thumbprint (tokenx.KeyDPoPJKT, not a secret), which is how the
// API requests' Prepare hook finds it.

// dpopConfig is the DPoP machinery of a grant; nil when DPoP is off.
type dpopConfig struct {
	alg       string   // Options.DPoPAlg: the algorithm of stored and given keys
	own       *heldKey // Options.DPoPKey, nil when keys are generated
	downgrade bool     // Options.DPoPAllowDowngrade
	nonces    *dpop.NonceCache
	skew      atomic.Int64 // the authorization server's clock ahead of ours, in ns, when worth correcting
	// apiSkew is the resource servers' clock ahead of ours, in ns, learnt
	// from an API that refused a proof's time; 0 until then, and API
	// proofs use skew. Kept apart so that an API cannot move the time of
	// the token endpoint's proofs.
	apiSkew atomic.Int64

	// What every API request with one token would otherwise compute
	// again: the token's key (found by thumbprint) and its ath claim.
	// Each is replaced when another token comes; neither is a secret
	// beyond what the token cache holds anyway.
	lastKey atomic.Pointer[heldKey]
	lastATH atomic.Pointer[athMemo]
}

// athMemo is the ath claim of one access token.
type athMemo struct {
	token, ath string
}

// heldKey is a parsed DPoP key and, when it can be exported, its PKCS #8
// form (what the store keeps).
type heldKey struct {
	k   *dpop.Key
	der []byte // nil for a key that cannot be exported (a hardware signer)
}

// dpopKeys caches parsed keys for the whole process: parsing PKCS #8 (and
// precomputing the JWK and thumbprint) for every token would be slow, and
// the Prepare hook of API requests finds a token's key by its thumbprint.
var dpopKeys = struct {
	mu    sync.RWMutex                   // read on every API request with a proof
	byDER map[[sha256.Size]byte]*heldKey // by the hash of PKCS #8 bytes and algorithm
	byJKT map[string]*heldKey
	own   map[string]bool // thumbprints of applications' keys (Options.DPoPKey)
}{byDER: map[[sha256.Size]byte]*heldKey{}, byJKT: map[string]*heldKey{}, own: map[string]bool{}}

// derID names PKCS #8 bytes read with alg in dpopKeys.byDER.
func derID(der []byte, alg string) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(alg))
	h.Write([]byte{0})
	h.Write(der)
	var id [sha256.Size]byte
	h.Sum(id[:0])
	return id
}

// register makes hk findable by its thumbprint and its bytes.
func register(hk *heldKey, alg string) *heldKey {
	dpopKeys.mu.Lock()
	defer dpopKeys.mu.Unlock()
	if old, ok := dpopKeys.byJKT[hk.k.Thumbprint()]; ok && (old.der != nil || hk.der == nil) {
		return old
	}
	dpopKeys.byJKT[hk.k.Thumbprint()] = hk
	if hk.der != nil {
		dpopKeys.byDER[derID(hk.der, alg)] = hk
	}
	return hk
}

// parseHeldKey returns the key of PKCS #8 bytes, parsed once per process.
func parseHeldKey(der []byte, alg string) (*heldKey, error) {
	id := derID(der, alg)
	dpopKeys.mu.RLock()
	hk, ok := dpopKeys.byDER[id]
	dpopKeys.mu.RUnlock()
	if ok {
		return hk, nil
	}
	k, err := dpop.ParseKey(der, alg)
	if err != nil {
		return nil, err
	}
	return register(&heldKey{k: k, der: append([]byte(nil), der...)}, alg), nil
}

// markOwn records that hk is an application's key (Options.DPoPKey): the
// application holds it anyway, and other Clients of the process (other
// profiles) may be logged in with it, so a Logout never forgets it.
func markOwn(hk *heldKey) {
	dpopKeys.mu.Lock()
	defer dpopKeys.mu.Unlock()
	dpopKeys.own[hk.k.Thumbprint()] = true
}

// forgetKey removes hk from the process's keys, once the credential it
// belongs to is logged out: its stored copy is deleted, and the parsed one
// should not outlive it. A generated key belongs to one credential; an
// application's key is kept.
func forgetKey(hk *heldKey) {
	dpopKeys.mu.Lock()
	defer dpopKeys.mu.Unlock()
	jkt := hk.k.Thumbprint()
	if dpopKeys.own[jkt] {
		return
	}
	if dpopKeys.byJKT[jkt] == hk {
		delete(dpopKeys.byJKT, jkt)
	}
	// Under every algorithm name it was read with ("" and "ES256" name
	// the same generated key).
	for id, k := range dpopKeys.byDER {
		if k == hk || k.k.Thumbprint() == jkt {
			delete(dpopKeys.byDER, id)
		}
	}
}

// keyByThumbprint returns the registered key with thumbprint jkt, or nil.
func keyByThumbprint(jkt string) *heldKey {
	dpopKeys.mu.RLock()
	defer dpopKeys.mu.RUnlock()
	return dpopKeys.byJKT[jkt]
}

// newHeldKey wraps k, exporting it when it can be.
func newHeldKey(k *dpop.Key, alg string) *heldKey {
	der, err := k.MarshalPKCS8()
	if err != nil {
		der = nil // a signer held outside the process: used, never stored
	}
	return register(&heldKey{k: k, der: der}, alg)
}

// initDPoP checks the DPoP options (New, before anything touches the
// network) and prepares the machinery.
func (g *grant) initDPoP() error {
	cfg := &g.cfg
	if !cfg.DPoP && cfg.DPoPKey == nil {
		if cfg.DPoPAlg != "" || cfg.DPoPAllowDowngrade {
			return failure(opConfig, "DPoPAlg or DPoPAllowDowngrade without DPoP or DPoPKey", ErrInvalidConfig)
		}
		return nil
	}
	if cfg.AccessToken != "" {
		return failure(opConfig, "DPoP with a fixed AccessToken: tokenward did not obtain that token and has no key it is bound to", ErrInvalidConfig)
	}
	d := &dpopConfig{alg: cfg.DPoPAlg, downgrade: cfg.DPoPAllowDowngrade, nonces: dpop.NewNonceCache(0)}
	if cfg.DPoPKey != nil {
		k, err := dpop.NewKey(cfg.DPoPKey, cfg.DPoPAlg)
		if err != nil {
			return failure(opConfig, "DPoPKey: "+plain(err), ErrInvalidConfig)
		}
		d.own = newHeldKey(k, cfg.DPoPAlg)
		markOwn(d.own)
	} else {
		switch cfg.DPoPAlg {
		case "", dpop.ES256:
		default:
			// Generated keys are ES256; another algorithm needs its key.
			return failure(opConfig, fmt.Sprintf("DPoPAlg %q without a DPoPKey: generated keys are ES256", cfg.DPoPAlg), ErrInvalidConfig)
		}
	}
	g.dpop = d
	return nil
}

// checkDPoPAlg refuses, before any token request, a key algorithm the
// server's discovery document does not list.
func (g *grant) checkDPoPAlg() error {
	if g.dpop == nil || g.disco == nil || len(g.disco.DPoPSigningAlgValuesSupported) == 0 {
		return nil
	}
	alg := g.dpop.keyAlg()
	for _, a := range g.disco.DPoPSigningAlgValuesSupported {
		if a == alg {
			return nil
		}
	}
	return failure(opConfig, fmt.Sprintf("DPoP: the key's algorithm %s is not among the %d the server accepts (dpop_signing_alg_values_supported)",
		alg, len(g.disco.DPoPSigningAlgValuesSupported)), ErrDPoPAlgorithm, ErrInvalidConfig)
}

// keyAlg is the algorithm of the proofs: the given key's, or ES256.
func (d *dpopConfig) keyAlg() string {
	if d.own != nil {
		return d.own.k.Alg()
	}
	return dpop.ES256
}

// isOwnKey reports whether hk is the application's key.
func (g *grant) isOwnKey(hk *heldKey) bool {
	return g.dpop.own != nil && g.dpop.own.k.Thumbprint() == hk.k.Thumbprint()
}

// newLoginKey returns the key of a new credential: the application's, or a
// new one.
func (g *grant) newLoginKey() (*heldKey, error) {
	if g.dpop.own != nil {
		return g.dpop.own, nil
	}
	k, err := dpop.Generate(dpop.ES256)
	if err != nil {
		return nil, err
	}
	return newHeldKey(k, ""), nil
}

// errKeyLost: a DPoP-bound login's key is not in the store (nor in this
// process) any more.
var errKeyLost = errors.New("the login's DPoP key is missing from the store, and its refresh token is bound to that key; log in again")

// credentialKey returns the key of the credential cur belongs to: the one
// it carries, or the one it names by thumbprint (this process's, or the
// application's). For a refresh-token request (refresh) of a DPoP-bound
// credential there is no other choice: its refresh token is bound to that
// key (a public client's, RFC 9449 section 5), and presenting it with
// another could make the server revoke the grant as stolen, so a lost key
// fails with errKeyLost and nothing is sent. Otherwise (a first token, a
// client-credentials token, a credential stored before DPoP was turned
// on) it is the application's key or a new one.
func (g *grant) credentialKey(cur *oauth2.Token, refresh bool) (*heldKey, error) {
	if der := tokenx.DPoPKey(cur); len(der) > 0 {
		return parseHeldKey(der, g.dpop.alg)
	}
	jkt := tokenx.String(cur, tokenx.KeyDPoPJKT)
	if jkt != "" {
		if hk := keyByThumbprint(jkt); hk != nil {
			return hk, nil
		}
		if own := g.dpop.own; own != nil && own.k.Thumbprint() == jkt {
			return own, nil
		}
	}
	if refresh && cur != nil && (jkt != "" || isDPoP(cur)) {
		return nil, errKeyLost
	}
	return g.newLoginKey()
}

// bindKey records hk in tok's extras: the key itself (when it can be
// exported; stored with the credential) and its thumbprint.
func bindKey(tok *oauth2.Token, hk *heldKey) {
	if tok == nil || hk == nil {
		return
	}
	m := tokenx.Extras(tok)
	if hk.der != nil {
		m[tokenx.KeyDPoPKey] = hk.der
	}
	m[tokenx.KeyDPoPJKT] = hk.k.Thumbprint()
	*tok = *tok.WithExtra(m)
}

// proofTime is the iat of a new proof for the authorization server: now,
// corrected by its clock skew when one large enough to matter was
// measured.
func (g *grant) proofTime() time.Time {
	return g.now().Add(time.Duration(g.dpop.skew.Load()))
}

// apiProofTime is the iat of a new proof for an API: corrected by the skew
// an API showed, if one did, else as for the authorization server (usually
// the same clock).
func (g *grant) apiProofTime() time.Time {
	if s := g.dpop.apiSkew.Load(); s != 0 {
		return g.now().Add(time.Duration(s))
	}
	return g.proofTime()
}

// maxAPISkew bounds the clock difference an API's answer may make proofs
// correct for: a clock more than a day off breaks TLS anyway, and an API
// must not push proof times arbitrarily far.
const maxAPISkew = 24 * time.Hour

// correctAPISkew reads the clock of an API that refused a proof: when its
// Date shows a skew that the proof's time did not correct for (more than
// skewThreshold from the correction used, at most maxAPISkew), API proofs
// are corrected from now on and it returns true, so that the request is
// sent once more. Otherwise the refusal was about something else.
func (g *grant) correctAPISkew(h http.Header) bool {
	now := g.now()
	skew, ok := oauthwire.ClockSkew(h, now, now)
	if !ok || skew > maxAPISkew || skew < -maxAPISkew {
		return false
	}
	used := g.apiProofTime().Sub(now)
	if d := skew - used; d <= skewThreshold && d >= -skewThreshold {
		return false
	}
	g.dpop.apiSkew.Store(int64(skew))
	return true
}

// noteSkew keeps a measured clock skew for proofs.
func (g *grant) noteSkew(skew time.Duration, ok bool) {
	if g.dpop == nil || !ok {
		return
	}
	if skew > skewThreshold || skew < -skewThreshold {
		g.dpop.skew.Store(int64(skew))
	} else {
		g.dpop.skew.Store(0)
	}
}

// apiKey returns the key with thumbprint jkt for an API request: the last
// one used when it is that key (the usual case: one token, request after
// request), else the process's, else the application's, else nil.
func (g *grant) apiKey(jkt string) *heldKey {
	if hk := g.dpop.lastKey.Load(); hk != nil && hk.k.Thumbprint() == jkt {
		return hk
	}
	hk := keyByThumbprint(jkt)
	if hk == nil && g.dpop.own != nil && g.dpop.own.k.Thumbprint() == jkt {
		hk = g.dpop.own
	}
	if hk != nil {
		g.dpop.lastKey.Store(hk)
	}
	return hk
}

// ath returns the ath claim of an access token, computed once per token.
func (g *grant) ath(accessToken string) string {
	if m := g.dpop.lastATH.Load(); m != nil && m.token == accessToken {
		return m.ath
	}
	m := &athMemo{token: accessToken, ath: dpop.AccessTokenHash(accessToken)}
	g.dpop.lastATH.Store(m)
	return m.ath
}

// forgetCredentialKey drops the parsed key of a logged-out credential tok
// from this process.
func (g *grant) forgetCredentialKey(tok *oauth2.Token) {
	if g.dpop == nil || tok == nil {
		return
	}
	jkt := tokenx.String(tok, tokenx.KeyDPoPJKT)
	if jkt == "" {
		return
	}
	if hk := keyByThumbprint(jkt); hk != nil {
		forgetKey(hk)
		if !g.isOwnKey(hk) {
			g.dpop.lastKey.CompareAndSwap(hk, nil)
		}
	}
	if m := g.dpop.lastATH.Load(); m != nil && m.token == tok.AccessToken {
		g.dpop.lastATH.CompareAndSwap(m, nil)
	}
}

// proof signs a proof for a request to u with hk, with the nonce last seen
// from u's origin; ath is the access token's hash for API requests, "" for
// token requests, and iat the proof's time.
func (g *grant) proof(hk *heldKey, method string, u *url.URL, ath string, iat time.Time) (string, error) {
	return hk.k.Proof(dpop.ProofParams{Method: method, Target: u, Now: iat, Nonce: g.dpop.nonces.ForURL(u), ATH: ath})
}

// noteNonce keeps the DPoP-Nonce of a response from u's origin.
func (g *grant) noteNonce(u *url.URL, h http.Header) {
	n := dpop.ResponseNonce(h)
	if n == "" {
		return
	}
	if origin, err := dpop.Origin(u.String()); err == nil {
		g.dpop.nonces.Set(origin, n)
	}
}

// isDPoP reports whether tok is a DPoP-bound token.
func isDPoP(tok *oauth2.Token) bool { return strings.EqualFold(tok.TokenType, "DPoP") }

// tokenTypes are the token types the caches accept.
func (g *grant) tokenTypes() []string {
	switch {
	case g.dpop == nil:
		return nil
	case g.dpop.downgrade:
		return []string{"DPoP", "Bearer"}
	}
	return []string{"DPoP"}
}
