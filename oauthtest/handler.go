package oauthtest

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/tokenward/tokenward/internal/redact"
)

// Endpoint names, used by Config.DisabledEndpoints, Fault.Endpoint and
// Stats.Requests.
const (
	EndpointDiscovery           = "discovery" // both discovery documents
	EndpointAuthorize           = "authorize"
	EndpointToken               = "token"
	EndpointDeviceAuthorization = "device_authorization"
	EndpointDeviceVerification  = "device" // the page a user enters the code on
	EndpointRevocation          = "revoke"
	EndpointUserinfo            = "userinfo"
	// EndpointPAR is the pushed authorization request endpoint (RFC 9126).
	EndpointPAR = "par"
)

// Paths of the endpoints, relative to Server.Issuer.
const (
	PathOAuthDiscovery      = "/.well-known/oauth-authorization-server" // RFC 8414
	PathOpenIDDiscovery     = "/.well-known/openid-configuration"       // OpenID Connect Discovery
	PathAuthorize           = "/authorize"
	PathToken               = "/token"
	PathDeviceAuthorization = "/device_authorization"
	PathDeviceVerification  = "/device"
	PathRevocation          = "/revoke"
	PathUserinfo            = "/userinfo"
	PathPAR                 = "/par" // RFC 9126 pushed authorization requests
)

// reply is a response computed by an endpoint, written (or replaced by a
// fault) afterwards.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func textReply(status int, ct, body string) *reply {
	return &reply{status: status, header: http.Header{"Content-Type": {ct}}, body: []byte(body)}
}

func jsonReply(status int, v any) *reply {
	b, err := json.Marshal(v)
	if err != nil {
		return textReply(http.StatusInternalServerError, "text/plain", "oauthtest: cannot encode response\n")
	}
	return &reply{status: status, header: http.Header{"Content-Type": {"application/json"}}, body: b}
}

// postRequired answers a request to a POST-only endpoint made with another
// method: 405 with the Allow header RFC 9110 section 15.5.6 asks for.
func postRequired() *reply {
	rep := oauthError(http.StatusMethodNotAllowed, "invalid_request", "POST required")
	rep.header.Set("Allow", "POST")
	return rep
}

func oauthError(status int, code, desc string) *reply {
	m := map[string]string{"error": code}
	if desc != "" {
		m["error_description"] = desc
	}
	rep := jsonReply(status, m)
	rep.header.Set("Cache-Control", "no-store")
	return rep
}

func (rep *reply) write(w http.ResponseWriter) {
	for k, vs := range rep.header {
		w.Header()[k] = vs
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(rep.body)))
	w.WriteHeader(rep.status)
	w.Write(rep.body)
}

// endpointFunc computes the reply of one endpoint. It runs without s.mu
// held; it takes the lock itself.
type endpointFunc func(r *http.Request) *reply

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(PathOAuthDiscovery, s.endpoint(EndpointDiscovery, s.discovery))
	mux.Handle(PathOpenIDDiscovery, s.endpoint(EndpointDiscovery, s.discovery))
	mux.Handle(PathAuthorize, s.endpoint(EndpointAuthorize, s.authorize))
	mux.Handle(PathToken, s.endpoint(EndpointToken, s.token))
	mux.Handle(PathDeviceAuthorization, s.endpoint(EndpointDeviceAuthorization, s.deviceAuthorization))
	mux.Handle(PathDeviceVerification, s.endpoint(EndpointDeviceVerification, s.deviceVerification))
	mux.Handle(PathRevocation, s.endpoint(EndpointRevocation, s.revoke))
	mux.Handle(PathUserinfo, s.endpoint(EndpointUserinfo, s.userinfo))
	mux.Handle(PathPAR, s.endpoint(EndpointPAR, s.par))
	return mux
}

// endpoint wraps an endpoint with what every request goes through: the
// server's Date, counting, fault injection, logging.
func (s *Server) endpoint(name string, fn endpointFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.RLock()
		now := s.now()
		disabled := slices.Contains(s.cfg.DisabledEndpoints, name)
		s.mu.RUnlock()
		w.Header().Set("Date", now.UTC().Format(http.TimeFormat))

		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
			if err := r.ParseForm(); err != nil {
				s.finish(w, r, name, "", nil, oauthError(http.StatusBadRequest, "invalid_request", "unreadable form body"))
				return
			}
		}
		grant := ""
		if name == EndpointToken && r.Method == http.MethodPost {
			grant = r.PostForm.Get("grant_type")
		}

		s.mu.Lock()
		s.stats.Requests[name]++
		if name != EndpointDiscovery {
			s.record(name, r)
		}
		if name == EndpointDiscovery {
			s.stats.Discovery[r.URL.Path]++
		}
		if name == EndpointToken && r.Method == http.MethodPost {
			s.stats.TokenPosts++
			s.stats.Grants[grant]++
		}
		var waits []Fault
		var hang <-chan struct{}
		var fault *Fault
		if !disabled {
			waits, hang, fault = s.matchFaults(name, grant)
		}
		s.mu.Unlock()

		if disabled {
			s.finish(w, r, name, grant, nil, textReply(http.StatusNotFound, "text/plain; charset=utf-8", "404 page not found\n"))
			return
		}
		if !s.wait(r.Context(), waits, hang) {
			s.logf("oauthtest: request abandoned while held", slog.String("endpoint", name), slog.String("grant", grant))
			return
		}
		if fault != nil && !fault.after() {
			if grant == GrantRefreshToken {
				s.mu.Lock()
				s.present(r.PostForm.Get("refresh_token"), RefreshFaultPrefix+fault.Kind.String())
				s.mu.Unlock()
			}
			s.finish(w, r, name, grant, fault, nil)
			return
		}
		rep := fn(r)
		s.finish(w, r, name, grant, fault, rep)
	})
}

// finish writes rep, or applies fault (with rep as the real response for
// after-processing faults).
func (s *Server) finish(w http.ResponseWriter, r *http.Request, name, grant string, fault *Fault, rep *reply) {
	attrs := []slog.Attr{
		slog.String("endpoint", name), slog.String("method", r.Method),
		slog.String("path", redact.URL(r.URL)), slog.String("grant", grant),
	}
	if fault != nil {
		attrs = append(attrs, slog.String("fault", fault.Kind.String()))
		switch fault.Kind {
		case FaultReset, FaultResponseLost:
			s.logf("oauthtest: connection reset", attrs...)
			abortConn(w)
			return
		case FaultHugeBody:
			s.logf("oauthtest: streaming huge body", attrs...)
			s.writeHuge(w, r, fault.Size)
			return
		}
		if fr := s.faultReply(fault, r, rep); fr != nil {
			rep = fr
		}
	}
	if rep == nil {
		rep = textReply(http.StatusInternalServerError, "text/plain", "oauthtest: no response\n")
	}
	attrs = append(attrs, slog.Int("status", rep.status))
	s.logf("oauthtest: request", attrs...)
	rep.write(w)
}

// aborter is implemented by the in-memory response writer.
type aborter interface{ abort() }

// abortConn resets the client's connection without a response.
func abortConn(w http.ResponseWriter) {
	if a, ok := w.(aborter); ok {
		a.abort()
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler) // HTTP/2: the server resets the stream
	}
	c, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	resetConn(c)
}

// validResource: an absolute URI without fragment (RFC 8707 section 2).
func validResource(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme != "" && u.Fragment == "" && !u.ForceQuery && (u.Host != "" || u.Opaque != "")
}
