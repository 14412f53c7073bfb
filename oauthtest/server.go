// Package oauthtest is an in-process OAuth 2.0 authorization server and
// protected API for tests, benchmarks, the fault suite and the quickstart
// demo. It is not a real server: tokens are JWT-shaped but unsigned, and
// every approval is automatic unless a test says otherwise.
//
// A Server listens on 127.0.0.1 with a random port (plain HTTP, or TLS with
// a self-signed certificate when Config.TLS is set) and serves:
//
//	/.well-known/oauth-authorization-server   RFC 8414 discovery
//	/.well-known/openid-configuration         OpenID Connect discovery (same document;
//	                                          Config.OIDCDiscoveryOnly serves only this one)
//	/authorize                                authorization code + S256 PKCE, RFC 9207 iss
//	/token                                    client_credentials, authorization_code,
//	                                          refresh_token (rotation, reuse detection),
//	                                          device_code (RFC 8628), RFC 8707 resource
//	/device_authorization                     RFC 8628 device authorization
//	/device                                   verification page (approve / deny)
//	/revoke                                   RFC 7009 revocation
//	/userinfo                                 minimal OpenID userinfo
//
// Protected APIs (NewAPI) accept only tokens this server issued for their
// resource, and record every credential they are shown. Faults (InjectFault)
// make any endpoint fail in the ways real servers and networks do. Counters
// and records (Stats, RefreshPresentations) let tests prove promises such as
// "no refresh token was presented twice".
//
// Requests reach the server over the network (URL, HTTPClient) or in memory
// (Transport), which runs each handler in a goroutine of its own, with no
// socket. For testing/synctest, create the server inside the bubble with
// Config.InMemory: a goroutine blocked on a real socket is never durably
// blocked, so a listening server would keep the fake clock from advancing.
//
// The server never logs a secret: the Logger sees endpoints, grant types,
// statuses and fault kinds only. Everything is safe for concurrent use.
//
// This file and the package's other non-test files do not import testing;
// Start is the helper for tests.
package oauthtest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenward/tokenward/internal/oauthwire"
)

// Endpoint names, used by Config.DisabledEndpoints, Fault.Endpoint and
// Stats.Requests.
const (
	EndpointDiscovery           = "discovery"
	EndpointAuthorize           = "authorize"
	EndpointToken               = "token"
	EndpointDeviceAuthorization = "device_authorization"
	EndpointDeviceVerification  = "device"
	EndpointRevocation          = "revoke"
	EndpointUserinfo            = "userinfo"
)

// Paths of the endpoints, relative to Issuer().
const (
	PathAuthorize           = "/authorize"
	PathToken               = "/token"
	PathDeviceAuthorization = "/device_authorization"
	PathDeviceVerification  = "/device"
	PathRevocation          = "/revoke"
	PathUserinfo            = "/userinfo"
)

// Grant types (the grant_type parameter).
const (
	GrantClientCredentials = "client_credentials"
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantDeviceCode        = oauthwire.GrantTypeDeviceCode
)

// Client authentication methods.
const (
	AuthNone              = oauthwire.AuthMethodNone
	AuthClientSecretBasic = oauthwire.AuthMethodClientSecretBasic
	AuthClientSecretPost  = oauthwire.AuthMethodClientSecretPost
	AuthPrivateKeyJWT     = oauthwire.AuthMethodPrivateKeyJWT
)

// DefaultClientID is the public client registered when Config.Clients is
// empty: auth method none, every grant but client_credentials, redirect
// URIs http://127.0.0.1/callback and http://[::1]/callback (any port).
const DefaultClientID = "tokenward-demo"

// DefaultSubject is the end user every login is approved as, unless
// Config.Subject says otherwise.
const DefaultSubject = "oauthtest-user"

// Client is a registered client.
type Client struct {
	// ID is the client_id. Required.
	ID string
	// Secret is the client secret of client_secret_basic and
	// client_secret_post clients.
	Secret string
	// AuthMethod is how the client must authenticate at the token,
	// device authorization and revocation endpoints. Presenting any other
	// method (or two at once) fails with invalid_client, which catches
	// clients that guess (PITFALLS O-08). Optional: defaults to
	// private_key_jwt when PublicKey is set, client_secret_basic when
	// Secret is set, else none.
	AuthMethod string
	// PublicKey verifies private_key_jwt assertions: an *rsa.PublicKey or
	// *ecdsa.PublicKey.
	PublicKey crypto.PublicKey
	// RedirectURIs are the registered redirect URIs. A loopback URI
	// (http://127.0.0.1/... or http://[::1]/...) matches any port (RFC 8252
	// section 7.3); others match exactly.
	RedirectURIs []string
	// Scopes the client may request. Optional: empty allows any scope.
	Scopes []string
	// Grants the client may use. Optional: empty allows every grant, except
	// that client_credentials needs a confidential client.
	Grants []string
}

func (c *Client) method() string {
	switch {
	case c.AuthMethod != "":
		return c.AuthMethod
	case c.PublicKey != nil:
		return AuthPrivateKeyJWT
	case c.Secret != "":
		return AuthClientSecretBasic
	}
	return AuthNone
}

func (c *Client) allowsGrant(g string) bool {
	if g == GrantClientCredentials && c.method() == AuthNone {
		return false
	}
	return len(c.Grants) == 0 || slices.Contains(c.Grants, g)
}

// ExpiresInMode selects how token responses carry expires_in. The server's
// own idea of the token's lifetime (what the API enforces) is always
// Config.AccessTokenLifetime.
type ExpiresInMode int

// expires_in modes.
const (
	ExpiresInNumber   ExpiresInMode = iota // 3600 (the default)
	ExpiresInString                        // "3600"
	ExpiresInFloat                         // 3599.5
	ExpiresInOmit                          // absent
	ExpiresInNull                          // null
	ExpiresInZero                          // 0
	ExpiresInNegative                      // -3600
	ExpiresInHuge                          // 2^40
	ExpiresInGarbage                       // "soon"
)

// Config configures a Server. The zero value is a well-behaved RFC-conformant
// server with one public client (DefaultClientID). Every field may be
// changed later with Server.Update, except TLS and Logger.
type Config struct {
	// Clients are the registered clients. Optional: empty registers the
	// public DefaultClientID.
	Clients []Client

	// TLS serves HTTPS with a self-signed certificate for 127.0.0.1, ::1
	// and localhost; clients trust it through Server.CertPool, TLSConfig or
	// HTTPClient.
	TLS bool
	// InMemory starts no listener: the server, its APIs and its trap are
	// reachable only through Server.Transport. Their URLs still name
	// 127.0.0.1 ports (reserved and released at once, so dialing them fails
	// fast). Create such a server inside a testing/synctest bubble and the
	// whole exchange, clock included, runs on the bubble's fake time.
	InMemory bool
	// Logger receives one Debug line per request (endpoint, grant, status,
	// fault kind; never a secret). Optional: default discards.
	Logger *slog.Logger

	// Now is the server's clock. Optional: default time.Now.
	Now func() time.Time
	// ClockOffset is added to Now: the server's clock runs ahead (positive)
	// or behind. Token expiry, the Date header and every expiry check use
	// the offset clock.
	ClockOffset time.Duration

	// AccessTokenLifetime is the lifetime of access tokens. Optional:
	// default one hour.
	AccessTokenLifetime time.Duration
	// RefreshTokenLifetime is the lifetime of each refresh token. Optional:
	// zero means refresh tokens do not expire.
	RefreshTokenLifetime time.Duration
	// AccessTokenSize is the approximate length of access tokens in bytes.
	// Optional: default 800.
	AccessTokenSize int
	// TokenType is the token_type sent ("Bearer", "bearer", "DPoP", "N_A").
	// Optional: default "Bearer".
	TokenType string
	// OmitTokenType leaves token_type out of token responses.
	OmitTokenType bool
	// ExpiresIn selects the shape of expires_in in token responses.
	ExpiresIn ExpiresInMode
	// SendRefreshTokenExpiresIn adds refresh_token_expires_in when refresh
	// tokens expire (RefreshTokenLifetime > 0).
	SendRefreshTokenExpiresIn bool
	// IDToken issues an id_token on every user grant; without it an
	// id_token is issued only when the scope contains "openid".
	IDToken bool
	// Subject is the user every login is approved as. Optional: default
	// DefaultSubject.
	Subject string
	// OmitScope leaves scope out of token responses.
	OmitScope bool
	// FormResponse sends token responses form-encoded
	// (application/x-www-form-urlencoded), as GitHub does by default.
	FormResponse bool

	// DisableRotation makes refresh tokens reusable (a non-rotating IdP):
	// refreshing does not issue a new refresh token.
	DisableRotation bool
	// EchoRefreshToken, with DisableRotation, sends the same refresh token
	// back in every refresh response (some IdPs do, most omit it).
	EchoRefreshToken bool
	// ReuseGrace lets a rotated refresh token be used again for this long
	// after its first use (Okta/Auth0 style overlap); each such reuse mints
	// new tokens and counts in Stats.GraceReuses. Outside the window a reuse
	// revokes the whole token family (unless DisableReuseDetection).
	ReuseGrace time.Duration
	// DisableReuseDetection answers a reused refresh token with
	// invalid_grant without revoking its family.
	DisableReuseDetection bool

	// Resources are the allowed RFC 8707 resource indicators. Optional:
	// empty allows any absolute URI. Every NewAPI's resource is allowed
	// as well.
	Resources []string
	// DefaultResource is the audience of access tokens requested without a
	// resource parameter (when the grant is not bound to exactly one
	// resource). Optional: when empty, the first API created sets it.
	DefaultResource string

	// OmitCallbackIss leaves iss out of authorization responses (RFC 9207),
	// and discovery then does not claim to send it.
	OmitCallbackIss bool
	// CallbackIss replaces the iss sent in authorization responses (for
	// mix-up tests). Optional.
	CallbackIss string
	// AuthorizeError makes /authorize answer with this error code
	// ("access_denied") instead of a code.
	AuthorizeError string
	// CodeLifetime is the lifetime of authorization codes. Optional:
	// default one minute.
	CodeLifetime time.Duration

	// DeviceInterval is the polling interval advertised and enforced
	// (polling faster is answered with slow_down and adds 5 s for good).
	// Optional: default 5 s; rounded up to whole seconds on the wire.
	DeviceInterval time.Duration
	// OmitDeviceInterval leaves interval out of device authorization
	// responses; DeviceIntervalZero sends 0. Either way 5 s is enforced, as
	// RFC 8628 tells clients to assume.
	OmitDeviceInterval, DeviceIntervalZero bool
	// DeviceCodeLifetime is the device code's expires_in. Optional: default
	// ten minutes.
	DeviceCodeLifetime time.Duration
	// DevicePendingPolls is how many polls are answered
	// authorization_pending before the grant is approved automatically.
	DevicePendingPolls int
	// DeviceManualApproval disables automatic approval: approve with
	// Server.ApproveDevice or the /device page.
	DeviceManualApproval bool
	// DeviceNoIntervalCheck stops answering early polls with slow_down.
	DeviceNoIntervalCheck bool

	// DiscoveryIssuer replaces the issuer in discovery documents (for
	// mix-up tests). Optional.
	DiscoveryIssuer string
	// OIDCDiscoveryOnly serves the discovery document only at
	// /.well-known/openid-configuration, as an OpenID provider without
	// RFC 8414 metadata does: /.well-known/oauth-authorization-server
	// answers 404 (and still counts in Stats.Discovery).
	OIDCDiscoveryOnly bool
	// DisabledEndpoints lists endpoint names (EndpointRevocation, ...) that
	// are not advertised and answer 404.
	DisabledEndpoints []string
}

// Server is a fake authorization server. Create it with New; Close it when
// done.
type Server struct {
	inMemory bool
	issuer   string
	host     string
	hs       *http.Server
	resetLn  *resetListener
	cert     *x509.Certificate
	tlsCert  *tls.Certificate
	closed   chan struct{}
	closing  sync.Once
	handler  http.Handler
	trap     *Trap
	resetMem atomic.Int64 // memory-transport "connections" to reset

	mu         sync.RWMutex // guards everything below
	cfg        Config
	logger     *slog.Logger
	clients    map[string]*Client
	faults     []*faultState
	hang       chan struct{} // closed by ReleaseHangs
	codes      map[string]*authCode
	devices    map[string]*deviceGrant // by device code
	userCodes  map[string]*deviceGrant
	ats        map[string]*accessToken
	rts        map[string]*refreshToken
	families   int
	jtis       map[string]time.Time // private_key_jwt jti -> exp
	slowDown   int                  // device polls to answer slow_down
	stats      Stats
	presented  []Presentation
	rtSeen     map[string]int
	apis       []*API
	hosts      map[string]http.Handler // host:port -> handler, for Transport
	defaultAud string                  // set by the first API when Config.DefaultResource is empty
}

// New starts a server on 127.0.0.1 with a random port.
func New(cfg Config) (*Server, error) {
	s := &Server{
		closed:    make(chan struct{}),
		hang:      make(chan struct{}),
		codes:     map[string]*authCode{},
		devices:   map[string]*deviceGrant{},
		userCodes: map[string]*deviceGrant{},
		ats:       map[string]*accessToken{},
		rts:       map[string]*refreshToken{},
		jtis:      map[string]time.Time{},
		rtSeen:    map[string]int{},
		hosts:     map[string]http.Handler{},
	}
	s.stats.init()
	s.inMemory = cfg.InMemory
	if err := s.setConfig(cfg); err != nil {
		return nil, err
	}
	s.logger = cfg.Logger
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if cfg.TLS {
		if err := s.makeCert(); err != nil {
			return nil, err
		}
	}
	s.handler = s.routes()
	ln, err := s.listen(s.handler, true)
	if err != nil {
		return nil, err
	}
	s.issuer = ln.url
	s.host = ln.host
	s.hs = ln.hs
	s.resetLn = ln.reset
	s.hosts[s.host] = s.handler
	ln.serve()
	s.trap, err = s.newTrap()
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// setConfig validates cfg, applies defaults and installs it. The caller
// holds s.mu or has not published s yet.
func (s *Server) setConfig(cfg Config) error {
	cfg.Clients = slices.Clone(cfg.Clients)
	if len(cfg.Clients) == 0 {
		cfg.Clients = []Client{{
			ID:           DefaultClientID,
			RedirectURIs: []string{"http://127.0.0.1/callback", "http://[::1]/callback"},
		}}
	}
	clients := map[string]*Client{}
	for i := range cfg.Clients {
		c := &cfg.Clients[i]
		if c.ID == "" {
			return errors.New("oauthtest: client without ID")
		}
		if _, dup := clients[c.ID]; dup {
			return fmt.Errorf("oauthtest: client %q registered twice", c.ID)
		}
		switch c.method() {
		case AuthNone:
		case AuthClientSecretBasic, AuthClientSecretPost:
			if c.Secret == "" {
				return fmt.Errorf("oauthtest: client %q: %s needs a Secret", c.ID, c.method())
			}
		case AuthPrivateKeyJWT:
			if _, err := oauthwire.AssertionAlg(c.PublicKey); err != nil {
				return fmt.Errorf("oauthtest: client %q: %w", c.ID, err)
			}
		default:
			return fmt.Errorf("oauthtest: client %q: unknown auth method %q", c.ID, c.AuthMethod)
		}
		for _, u := range c.RedirectURIs {
			if p, err := url.Parse(u); err != nil || p.Scheme == "" || p.Host == "" || p.Fragment != "" {
				return fmt.Errorf("oauthtest: client %q: redirect URI %q is not absolute", c.ID, u)
			}
		}
		clients[c.ID] = c
	}
	for _, r := range cfg.Resources {
		if !validResource(r) {
			return fmt.Errorf("oauthtest: resource %q is not an absolute URI without fragment", r)
		}
	}
	if cfg.DefaultResource != "" && !validResource(cfg.DefaultResource) {
		return fmt.Errorf("oauthtest: default resource %q is not an absolute URI without fragment", cfg.DefaultResource)
	}
	if cfg.AccessTokenLifetime <= 0 {
		cfg.AccessTokenLifetime = time.Hour
	}
	if cfg.RefreshTokenLifetime < 0 {
		cfg.RefreshTokenLifetime = 0
	}
	if cfg.AccessTokenSize <= 0 {
		cfg.AccessTokenSize = 800
	}
	if cfg.TokenType == "" {
		cfg.TokenType = "Bearer"
	}
	if cfg.Subject == "" {
		cfg.Subject = DefaultSubject
	}
	if cfg.CodeLifetime <= 0 {
		cfg.CodeLifetime = time.Minute
	}
	if cfg.DeviceInterval <= 0 {
		cfg.DeviceInterval = oauthwire.DefaultDeviceInterval
	}
	if cfg.DeviceCodeLifetime <= 0 {
		cfg.DeviceCodeLifetime = 10 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s.cfg = cfg
	s.clients = clients
	return nil
}

// Update changes the configuration under the server's lock, for the
// following requests. fn gets a copy of the current Config (defaults
// filled in); changes to TLS, InMemory and Logger are ignored. An invalid result is
// rejected and the old configuration kept.
func (s *Server) Update(fn func(*Config)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cp := s.cfg
	cp.Clients = slices.Clone(cp.Clients)
	cp.Resources = slices.Clone(cp.Resources)
	cp.DisabledEndpoints = slices.Clone(cp.DisabledEndpoints)
	fn(&cp)
	cp.TLS, cp.InMemory, cp.Logger = s.cfg.TLS, s.cfg.InMemory, s.cfg.Logger
	return s.setConfig(cp)
}

// Config returns a copy of the current configuration.
func (s *Server) Config() Config {
	s.mu.RLock()
	defer s.mu.RUnlock()
	cp := s.cfg
	cp.Clients = slices.Clone(cp.Clients)
	cp.Resources = slices.Clone(cp.Resources)
	cp.DisabledEndpoints = slices.Clone(cp.DisabledEndpoints)
	return cp
}

// now returns the server's clock. The caller holds s.mu (read or write).
func (s *Server) now() time.Time { return s.cfg.Now().Add(s.cfg.ClockOffset) }

// Now returns the server's clock (Config.Now plus Config.ClockOffset).
func (s *Server) Now() time.Time {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.now()
}

// Issuer returns the server's base URL ("http://127.0.0.1:PORT"), which is
// its issuer identifier.
func (s *Server) Issuer() string { return s.issuer }

// URL returns Issuer() + path.
func (s *Server) URL(path string) string { return s.issuer + path }

// TokenURL returns the token endpoint URL.
func (s *Server) TokenURL() string { return s.issuer + PathToken }

// AuthorizeURL returns the authorization endpoint URL.
func (s *Server) AuthorizeURL() string { return s.issuer + PathAuthorize }

// DeviceAuthorizationURL returns the device authorization endpoint URL.
func (s *Server) DeviceAuthorizationURL() string { return s.issuer + PathDeviceAuthorization }

// RevocationURL returns the revocation endpoint URL.
func (s *Server) RevocationURL() string { return s.issuer + PathRevocation }

// Trap returns the server's trap: a listener on another origin that
// records every request it receives (the default target of redirect
// faults and API redirect routes).
func (s *Server) Trap() *Trap { return s.trap }

// Close shuts the server, its APIs and its trap down: listeners and
// connections are closed and hanging requests released. It is safe to call
// more than once.
func (s *Server) Close() {
	s.closing.Do(func() {
		close(s.closed)
		closeHTTP(s.hs)
		s.mu.RLock()
		apis := slices.Clone(s.apis)
		s.mu.RUnlock()
		for _, a := range apis {
			closeHTTP(a.hs)
		}
		if s.trap != nil {
			closeHTTP(s.trap.hs)
		}
	})
}

// CertPool returns a pool holding the server's certificate (nil without
// TLS).
func (s *Server) CertPool() *x509.CertPool {
	if s.cert == nil {
		return nil
	}
	p := x509.NewCertPool()
	p.AddCert(s.cert)
	return p
}

// TLSConfig returns a client TLS configuration that trusts the server (nil
// without TLS). Each call returns a new value.
func (s *Server) TLSConfig() *tls.Config {
	if s.cert == nil {
		return nil
	}
	return &tls.Config{RootCAs: s.CertPool(), MinVersion: tls.VersionTLS12}
}

// HTTPClient returns a new *http.Client that reaches the server, its APIs
// and its trap over the network, trusts their certificate, follows no
// redirects and gives up after 30 s.
func (s *Server) HTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = s.TLSConfig()
	tr.Proxy = nil
	return &http.Client{
		Transport:     tr,
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// makeCert creates a self-signed ECDSA certificate for the loopback names.
func (s *Server) makeCert() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("oauthtest: %w", err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "oauthtest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("oauthtest: %w", err)
	}
	s.cert, err = x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("oauthtest: %w", err)
	}
	s.tlsCert = &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: s.cert}
	return nil
}

type listening struct {
	url, host string
	hs        *http.Server
	reset     *resetListener
	ln        net.Listener
}

func closeHTTP(hs *http.Server) {
	if hs != nil {
		hs.Close()
	}
}

// listen prepares serving h on a new 127.0.0.1 listener (TLS when
// configured); serve starts it. In memory mode it only picks an address.
func (s *Server) listen(h http.Handler, resettable bool) (*listening, error) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("oauthtest: listen: %w", err)
	}
	if s.inMemory {
		host := raw.Addr().String()
		raw.Close()
		scheme := "http"
		if s.tlsCert != nil {
			scheme = "https"
		}
		return &listening{url: scheme + "://" + host, host: host}, nil
	}
	var ln net.Listener = raw
	var rl *resetListener
	if resettable {
		rl = &resetListener{Listener: raw}
		ln = rl
	}
	scheme := "http"
	if s.tlsCert != nil {
		scheme = "https"
		ln = tls.NewListener(ln, &tls.Config{
			Certificates: []tls.Certificate{*s.tlsCert},
			NextProtos:   []string{"http/1.1"}, // HTTP/1.1 only: faults hijack connections
			MinVersion:   tls.VersionTLS12,
		})
	}
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0), // TLS handshake noise, never secrets
		BaseContext:       func(net.Listener) context.Context { return context.Background() },
	}
	host := raw.Addr().String()
	return &listening{url: scheme + "://" + host, host: host, hs: hs, reset: rl, ln: ln}, nil
}

// serve starts serving; call it once the handler's fields are set.
func (l *listening) serve() {
	if l.hs != nil {
		go l.hs.Serve(l.ln)
	}
}

// close releases a listener that will not be served.
func (l *listening) close() {
	if l.ln != nil {
		l.ln.Close()
	}
}

// resetListener resets (RST) the next n accepted connections before
// anything is read from them.
type resetListener struct {
	net.Listener
	n atomic.Int64
}

// Accept implements net.Listener, resetting connections while n > 0.
func (l *resetListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if takeOne(&l.n) {
			resetConn(c)
			continue
		}
		return c, nil
	}
}

// takeOne decrements n if it is positive and reports whether it did.
func takeOne(n *atomic.Int64) bool {
	for {
		v := n.Load()
		if v <= 0 {
			return false
		}
		if n.CompareAndSwap(v, v-1) {
			return true
		}
	}
}

// ResetNextConnections makes the server reset (TCP RST) the next n new
// connections right after accepting them, before reading a request: the
// request never reached the server. Pooled keep-alive connections are not
// affected. Through Transport, the next n requests fail the same way.
func (s *Server) ResetNextConnections(n int) {
	if s.resetLn != nil {
		s.resetLn.n.Store(int64(n))
	}
	s.resetMem.Store(int64(n))
}

// resetConn closes c with SO_LINGER 0 so the peer sees a reset.
func resetConn(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// register makes h reachable through Transport under host.
func (s *Server) register(host string, h http.Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hosts[host] = h
}

// logf logs one request line at debug level.
func (s *Server) logf(msg string, attrs ...slog.Attr) {
	s.logger.LogAttrs(context.Background(), slog.LevelDebug, msg, attrs...)
}
