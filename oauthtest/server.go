package oauthtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Server is a fake authorization server. Create it with Start in a test, or
// with New (and Close it when done). Its methods are safe for concurrent
// use. Printing a Server (fmt, log/slog) shows its issuer URL and mode,
// never the tokens and secrets it holds.
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
	pushed     map[string]*pushedRequest // by request_uri
	received   []EndpointRequest
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
	dpopJTIs   map[[32]byte]time.Time  // hash of DPoP proof key and jti -> when to forget it
	nonceAS    string                  // DPoP nonce of the token and PAR endpoints
	nonceAPI   string                  // DPoP nonce of the APIs and userinfo
	lastProof  map[string]string       // endpoint -> last DPoP proof accepted
}

// New starts a server on 127.0.0.1 with a random port (no listener with
// Config.InMemory). It fails when cfg is invalid: a client without ID or
// registered twice, a confidential client without its secret or key, a
// relative redirect URI or resource. The caller must Close the server.
func New(cfg Config) (*Server, error) {
	s := &Server{
		closed:    make(chan struct{}),
		hang:      make(chan struct{}),
		codes:     map[string]*authCode{},
		pushed:    map[string]*pushedRequest{},
		devices:   map[string]*deviceGrant{},
		userCodes: map[string]*deviceGrant{},
		ats:       map[string]*accessToken{},
		rts:       map[string]*refreshToken{},
		jtis:      map[string]time.Time{},
		rtSeen:    map[string]int{},
		hosts:     map[string]http.Handler{},
		dpopJTIs:  map[[32]byte]time.Time{},
		nonceAS:   randomB64(18),
		nonceAPI:  randomB64(18),
		lastProof: map[string]string{},
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

// Update changes the configuration for the requests that follow: fn gets
// a copy of the current Config (defaults filled in) to modify. Changes to
// TLS, InMemory and Logger are ignored. An invalid result is rejected (the
// error says why) and the old configuration kept. Tokens already issued
// keep their expiry.
func (s *Server) Update(fn func(*Config)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cp := s.cfg.clone()
	fn(&cp)
	cp.TLS, cp.InMemory, cp.Logger = s.cfg.TLS, s.cfg.InMemory, s.cfg.Logger
	return s.setConfig(cp)
}

// Config returns a copy of the current configuration, defaults filled in.
func (s *Server) Config() Config {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cfg.clone()
}

// now returns the server's clock. The caller holds s.mu (read or write).
func (s *Server) now() time.Time { return s.cfg.Now().Add(s.cfg.ClockOffset) }

// Now returns the server's clock: Config.Now plus Config.ClockOffset.
func (s *Server) Now() time.Time {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.now()
}

// Issuer returns the server's base URL ("http://127.0.0.1:PORT", https
// with Config.TLS), which is also its issuer identifier: discovery
// documents are served under it.
func (s *Server) Issuer() string { return s.issuer }

// URL returns Issuer() + path, for example s.URL(PathUserinfo).
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
// records every request it receives. Redirect faults and the APIs'
// redirect routes point to it unless told otherwise.
func (s *Server) Trap() *Trap { return s.trap }

// Close shuts the server, its APIs and its trap down: listeners and
// connections are closed and held requests released. The in-memory
// Transport then fails like a refused connection. Close is safe to call
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
