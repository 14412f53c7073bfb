package oauthtest

import (
	"net/http"
	"net/url"
	"slices"

	"github.com/tokenward/tokenward/internal/redact"
)

// maxReceived bounds the requests Server.EndpointRequests remembers: the
// latest ones are kept, so a long soak does not grow the server's memory
// without end.
const maxReceived = 4096

// EndpointRequest is one request an endpoint of the server received
// (Server.EndpointRequests), with its parameters as sent: the query of a
// GET, the form of a POST. The values of parameters that carry credentials
// or one-time values (code, code_verifier, refresh_token, device_code,
// client_secret, client_assertion, state, code_challenge, user_code, ...)
// show as "REDACTED", so a test sees which were sent, and a record can be
// printed or logged as it is.
type EndpointRequest struct {
	// Endpoint is the endpoint's name (EndpointAuthorize, EndpointPAR, ...).
	Endpoint string
	// Method is the HTTP method.
	Method string
	// Params are the request's parameters, credentials hidden.
	Params url.Values
}

// record remembers r's parameters for EndpointRequests. The body of a POST
// was parsed before. The caller holds s.mu.
func (s *Server) record(name string, r *http.Request) {
	params := r.URL.Query()
	if r.Method == http.MethodPost {
		params = r.PostForm
	}
	if len(s.received) >= maxReceived {
		s.received = slices.Delete(s.received, 0, len(s.received)-maxReceived+1)
	}
	s.received = append(s.received, EndpointRequest{Endpoint: name, Method: r.Method, Params: redact.Values(params)})
}

// EndpointRequests returns the requests endpoint (EndpointAuthorize,
// EndpointPAR, EndpointToken, EndpointDeviceAuthorization, ...; every
// endpoint when "") received since the server started or since
// ResetStats, oldest first: the latest 4096 at most. A test proves with
// them which parameters a client sent where, for example that the
// browser's authorization request carried only client_id and request_uri.
func (s *Server) EndpointRequests(endpoint string) []EndpointRequest {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []EndpointRequest
	for _, rq := range s.received {
		if endpoint == "" || rq.Endpoint == endpoint {
			out = append(out, EndpointRequest{Endpoint: rq.Endpoint, Method: rq.Method, Params: cloneParams(rq.Params)})
		}
	}
	return out
}

func cloneParams(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}
