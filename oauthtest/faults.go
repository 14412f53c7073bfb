package oauthtest

import (
	"context"
	"net/http"
	"strconv"
	"time"
)

// FaultKind is a way an endpoint can fail.
type FaultKind int

// Fault kinds. Unless noted, a fault answers before the request is
// processed (no code consumed, no token rotated); Fault.After makes it
// answer after processing instead.
const (
	// FaultStatus500 answers 500 with a plain-text body.
	FaultStatus500 FaultKind = iota + 1
	// FaultBadGateway answers 502 with an HTML page (a proxy's).
	FaultBadGateway
	// FaultUnavailable answers 503 with {"error":"temporarily_unavailable"}.
	FaultUnavailable
	// FaultRateLimited answers 429 with Retry-After (Fault.RetryAfter,
	// default "1").
	FaultRateLimited
	// FaultOAuthError answers Fault.Status (default 400) with the OAuth
	// error Fault.Code (default "server_error") and Fault.Description.
	FaultOAuthError
	// FaultReset resets the connection (TCP RST) after reading the request
	// and before processing it.
	FaultReset
	// FaultResponseLost processes the request (codes consumed, refresh
	// tokens rotated) and then resets the connection instead of answering.
	FaultResponseLost
	// FaultHang holds the request until Fault.Release is closed (or
	// Server.ReleaseHangs is called when Release is nil), the client gives
	// up, or the server closes; when released the request is processed
	// normally.
	FaultHang
	// FaultDelay waits Fault.Delay, then lets the request go on (to the
	// next matching fault or to normal processing). Delays stack.
	FaultDelay
	// FaultHugeBody answers 200 application/json with a body of Fault.Size
	// bytes (default 1 GiB) that starts like a token response, streamed
	// without allocating it, without Content-Length.
	FaultHugeBody
	// FaultMalformedJSON answers 200 application/json with a truncated
	// body: the real response cut in half (processed first, like After),
	// or a fixed broken object with Before.
	FaultMalformedJSON
	// FaultWrongContentType sends the real response (processed first)
	// with Content-Type Fault.ContentType (default
	// "text/html; charset=utf-8").
	FaultWrongContentType
	// FaultHTMLPage answers 200 text/html with a sign-in page (a captive
	// portal or an SSO proxy).
	FaultHTMLPage
	// FaultRedirect answers Fault.Status (default 307) with Location
	// Fault.Location (default: the trap's origin, same path).
	FaultRedirect
)

var faultNames = map[FaultKind]string{
	FaultStatus500: "status500", FaultBadGateway: "bad-gateway", FaultUnavailable: "unavailable",
	FaultRateLimited: "rate-limited", FaultOAuthError: "oauth-error", FaultReset: "reset",
	FaultResponseLost: "response-lost", FaultHang: "hang", FaultDelay: "delay", FaultHugeBody: "huge-body",
	FaultMalformedJSON: "malformed-json", FaultWrongContentType: "wrong-content-type",
	FaultHTMLPage: "html-page", FaultRedirect: "redirect",
}

// String returns the kind's name ("response-lost").
func (k FaultKind) String() string {
	if n, ok := faultNames[k]; ok {
		return n
	}
	return "fault(" + strconv.Itoa(int(k)) + ")"
}

// Fault is an injected failure. It applies to requests matching Endpoint
// and Grant, for the next Times of them or for all of them.
type Fault struct {
	// Kind is what happens. Required.
	Kind FaultKind
	// Endpoint restricts the fault to one endpoint (EndpointToken, ...).
	// Optional: "" matches every endpoint of the server (not the APIs).
	Endpoint string
	// Grant restricts the fault to token requests with this grant_type.
	// Optional: "" matches every grant (and non-token endpoints).
	Grant string
	// Times is how many matching requests the fault applies to. Zero means
	// every matching request until ClearFaults.
	Times int
	// After makes the fault answer after the request was processed (codes
	// consumed, refresh tokens rotated), for every kind that replaces the
	// response. FaultResponseLost, FaultMalformedJSON and
	// FaultWrongContentType are after-processing unless Before is set.
	After bool
	// Before forces before-processing for FaultMalformedJSON and
	// FaultWrongContentType.
	Before bool

	// Status overrides the status of FaultOAuthError and FaultRedirect.
	Status int
	// Code and Description are FaultOAuthError's error and
	// error_description.
	Code, Description string
	// RetryAfter, when set, is sent as the Retry-After header (any
	// response-replacing kind; FaultRateLimited defaults it to "1").
	RetryAfter string
	// Delay is FaultDelay's wait.
	Delay time.Duration
	// Size is FaultHugeBody's size in bytes.
	Size int64
	// ContentType is FaultWrongContentType's Content-Type.
	ContentType string
	// Location is FaultRedirect's target.
	Location string
	// Release ends a FaultHang when closed.
	Release <-chan struct{}
}

func (f *Fault) after() bool {
	switch f.Kind {
	case FaultResponseLost:
		return true
	case FaultMalformedJSON, FaultWrongContentType:
		return !f.Before
	case FaultDelay, FaultHang:
		return false
	}
	return f.After
}

type faultState struct {
	Fault
	left int // remaining applications; <0 means unlimited
}

// InjectFault adds a fault. Faults are matched in the order they were
// added; all matching FaultDelay and FaultHang faults apply, then the first
// other matching fault replaces the response.
func (s *Server) InjectFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	left := f.Times
	if left <= 0 {
		left = -1
	}
	s.faults = append(s.faults, &faultState{Fault: f, left: left})
}

// ClearFaults removes every injected fault and releases hanging requests.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	s.faults = nil
	s.mu.Unlock()
	s.ReleaseHangs()
}

// ReleaseHangs releases every request held by a FaultHang without its own
// Release channel.
func (s *Server) ReleaseHangs() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.hang)
	s.hang = make(chan struct{})
}

// PendingFaults returns how many injected faults can still fire.
func (s *Server) PendingFaults() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, f := range s.faults {
		if f.left != 0 {
			n++
		}
	}
	return n
}

// matchFaults consumes the faults that apply to a request: the waits
// (delays, hangs) in order and at most one response-replacing fault. The
// caller holds s.mu.
func (s *Server) matchFaults(endpoint, grant string) (waits []Fault, hang <-chan struct{}, answer *Fault) {
	for _, f := range s.faults {
		if f.left == 0 || (f.Endpoint != "" && f.Endpoint != endpoint) || (f.Grant != "" && f.Grant != grant) {
			continue
		}
		isWait := f.Kind == FaultDelay || f.Kind == FaultHang
		if !isWait && answer != nil {
			continue
		}
		if f.left > 0 {
			f.left--
		}
		s.stats.Faults[f.Kind]++
		cp := f.Fault
		if isWait {
			waits = append(waits, cp)
		} else {
			answer = &cp
		}
	}
	return waits, s.hang, answer
}

// wait performs the waits; false means the request or the server ended.
func (s *Server) wait(ctx context.Context, waits []Fault, hang <-chan struct{}) bool {
	for _, f := range waits {
		switch f.Kind {
		case FaultDelay:
			t := time.NewTimer(f.Delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return false
			case <-s.closed:
				t.Stop()
				return false
			}
		case FaultHang:
			rel := f.Release
			if rel == nil {
				rel = hang
			}
			select {
			case <-rel:
			case <-ctx.Done():
				return false
			case <-s.closed:
				return false
			}
		}
	}
	return true
}

const badGatewayPage = `<!DOCTYPE html>
<html><head><title>502 Bad Gateway</title></head>
<body><center><h1>502 Bad Gateway</h1></center><hr><center>oauthtest-proxy</center></body></html>
`

const signInPage = `<!DOCTYPE html>
<html><head><title>Sign in to continue</title></head>
<body><form method="post" action="/login"><input name="user"><input type="password" name="password"></form></body></html>
`

// faultReply builds the response a fault sends instead of real (which is nil
// for before-processing faults). It returns nil for the kinds that do not
// answer with a reply (reset, lost, huge body).
func (s *Server) faultReply(f *Fault, r *http.Request, real *reply) *reply {
	var rep *reply
	switch f.Kind {
	case FaultStatus500:
		rep = textReply(http.StatusInternalServerError, "text/plain; charset=utf-8", "internal server error\n")
	case FaultBadGateway:
		rep = textReply(http.StatusBadGateway, "text/html; charset=utf-8", badGatewayPage)
	case FaultUnavailable:
		rep = oauthError(http.StatusServiceUnavailable, "temporarily_unavailable", "injected fault")
	case FaultRateLimited:
		rep = textReply(http.StatusTooManyRequests, "text/plain; charset=utf-8", "Too Many Requests\n")
		if f.RetryAfter == "" {
			rep.header.Set("Retry-After", "1")
		}
	case FaultOAuthError:
		status, code := f.Status, f.Code
		if status == 0 {
			status = http.StatusBadRequest
		}
		if code == "" {
			code = "server_error"
		}
		rep = oauthError(status, code, f.Description)
	case FaultMalformedJSON:
		body := `{"access_token":"oauthtest-truncated-`
		if real != nil && len(real.body) > 1 {
			body = string(real.body[:len(real.body)/2])
		}
		rep = textReply(http.StatusOK, "application/json", body)
	case FaultWrongContentType:
		ct := f.ContentType
		if ct == "" {
			ct = "text/html; charset=utf-8"
		}
		if real == nil {
			rep = textReply(http.StatusOK, ct, `{"error":"server_error"}`)
		} else {
			cp := *real
			cp.header = real.header.Clone()
			cp.header.Set("Content-Type", ct)
			rep = &cp
		}
	case FaultHTMLPage:
		rep = textReply(http.StatusOK, "text/html; charset=utf-8", signInPage)
	case FaultRedirect:
		status := f.Status
		if status == 0 {
			status = http.StatusTemporaryRedirect
		}
		loc := f.Location
		if loc == "" {
			loc = s.trap.URL() + r.URL.Path
		}
		rep = textReply(status, "text/plain; charset=utf-8", "redirect\n")
		rep.header.Set("Location", loc)
	default:
		return nil
	}
	if f.RetryAfter != "" {
		rep.header.Set("Retry-After", f.RetryAfter)
	}
	return rep
}

// hugeChunk is written repeatedly by FaultHugeBody.
var hugeChunk = func() []byte {
	b := make([]byte, 32<<10)
	for i := range b {
		b[i] = 'A'
	}
	return b
}()

// writeHuge streams a huge token-like body until size bytes are written or
// the client goes away.
func (s *Server) writeHuge(w http.ResponseWriter, r *http.Request, size int64) {
	if size <= 0 {
		size = 1 << 30
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	prefix := []byte(`{"access_token":"`)
	if _, err := w.Write(prefix); err != nil {
		return
	}
	left := size - int64(len(prefix))
	for left > 0 {
		select {
		case <-r.Context().Done():
			return
		case <-s.closed:
			return
		default:
		}
		n := min(left, int64(len(hugeChunk)))
		if _, err := w.Write(hugeChunk[:n]); err != nil {
			return
		}
		left -= n
	}
}
