package transport

import (
	"fmt"
	"io"
	"net/http"
	"strings"
)

// outReq is the outgoing copy of a request together with the backing array
// of its Authorization value: one allocation for both (the pair fits the
// size class of http.Request alone), so that every request gets its own
// []string without costing an extra allocation.
type outReq struct {
	req  http.Request
	auth [1]string
}

// copyRequest returns the copy of req that will be sent, not yet carrying
// the token: same fields, its own header map (values shared but clipped, so
// an Add on the copy cannot write into the caller's arrays).
//
// Every Authorization header of the caller is left out, whatever the case of
// its key: net/http writes a non-canonical key such as "authorization" as it
// is, so the server would otherwise get the caller's credential next to the
// token.
//
// ok is false, and there is no copy, when a Host key of req.Header, under
// any case, names another host than req.URL (see hostValuesAgree): such a
// request must not get the token. The check rides on the loop that copies
// the header anyway, so that it costs no second pass over the map.
func copyRequest(req *http.Request) (o *outReq, ok bool) {
	o = &outReq{req: *req}
	h := make(http.Header, len(req.Header)+1)
	for k, v := range req.Header {
		switch len(k) {
		case len("Authorization"):
			if strings.EqualFold(k, "Authorization") {
				continue
			}
		case len("Host"):
			if asciiEqualFold(k, "Host") && !hostValuesAgree(v, req) {
				return nil, false
			}
		}
		h[k] = v[:len(v):len(v)]
	}
	o.req.Header = h
	return o, true
}

// withToken completes the copy o with body, the Authorization value of av
// and whatever Prepare adds, and returns the request to send. The
// Authorization value is a one-element slice of this request only (the
// string itself is the precomputed one), so a Base that rewrites header
// values in place, against the RoundTripper contract, cannot change what
// later requests send.
func (c *config) withToken(o *outReq, av *authValue, body io.ReadCloser) (*http.Request, error) {
	out := &o.req
	out.Body = body
	o.auth[0] = av.header
	out.Header["Authorization"] = o.auth[:]
	if c.prepare != nil {
		if err := c.prepare(out, av.tok); err != nil {
			return nil, fmt.Errorf("transport: prepare: %w", err)
		}
	}
	return out, nil
}

// outgoing returns the copy of req that is sent with av: copyRequest, then
// withToken.
func (c *config) outgoing(req *http.Request, av *authValue, body io.ReadCloser) (*http.Request, error) {
	o, ok := copyRequest(req)
	if !ok {
		// RoundTrip sends such a request without the token before it ever
		// gets here; this is for safety should that change.
		return nil, fmt.Errorf("%w: a Host key in the header map names another host", ErrOriginNotAllowed)
	}
	return c.withToken(o, av, body)
}
