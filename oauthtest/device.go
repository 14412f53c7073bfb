package oauthtest

import (
	"crypto/rand"
	"errors"
	"html"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tokenward/tokenward/internal/canary"
	"github.com/tokenward/tokenward/internal/oauthwire"
)

// States of a device authorization (DeviceInfo.State).
const (
	DevicePending  = "pending"
	DeviceApproved = "approved"
	DeviceDenied   = "denied"
	DeviceExpired  = "expired"
	DeviceConsumed = "consumed" // tokens issued
)

type deviceGrant struct {
	deviceCode string
	userCode   string
	clientID   string
	scope      string
	resources  []string
	expiry     time.Time
	interval   time.Duration // enforced; grows by 5 s per slow_down
	lastPoll   time.Time
	polls      int // polls that reached the state check
	state      string
}

// DeviceInfo describes a device authorization (Server.Devices). Printing
// one (fmt, log/slog) shows the UserCode only as [REDACTED].
type DeviceInfo struct {
	// UserCode is the code the user enters on the verification page
	// ("BCDF-GHJK"); ApproveDevice, DenyDevice and ExpireDevice take it.
	UserCode string
	// ClientID is the client that asked for it.
	ClientID string
	// State is DevicePending, DeviceApproved, DeviceDenied, DeviceExpired
	// or DeviceConsumed.
	State string
	// Polls counts the client's polls that were not answered slow_down.
	Polls int
	// Interval is the polling interval the server enforces now (grown by
	// every slow_down).
	Interval time.Duration
	// Expiry is when the device code expires, by the server's clock.
	Expiry time.Time
}

// deviceAuthorization serves RFC 8628 section 3.1/3.2.
func (s *Server) deviceAuthorization(r *http.Request) *reply {
	if r.Method != http.MethodPost {
		return postRequired()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, errRep := s.authenticate(r)
	if errRep != nil {
		return errRep
	}
	if !c.allowsGrant(GrantDeviceCode) {
		return oauthError(http.StatusBadRequest, "unauthorized_client", "client may not use the device flow")
	}
	scope := r.PostForm.Get("scope")
	if !scopeSubset(scope, c.Scopes) {
		return oauthError(http.StatusBadRequest, "invalid_scope", "scope not allowed for this client")
	}
	for _, res := range r.PostForm["resource"] {
		if !validResource(res) || !s.resourceAllowed(res) {
			return oauthError(http.StatusBadRequest, "invalid_target", "unknown resource")
		}
	}
	interval := s.cfg.DeviceInterval
	if s.cfg.OmitDeviceInterval || s.cfg.DeviceIntervalZero {
		interval = oauthwire.DefaultDeviceInterval
	}
	interval = interval.Round(time.Second)
	if interval < time.Second {
		interval = time.Second
	}
	g := &deviceGrant{
		deviceCode: canary.New("dc"), userCode: s.newUserCode(), clientID: c.ID,
		scope: scope, resources: slices.Clone(r.PostForm["resource"]),
		expiry: s.now().Add(s.cfg.DeviceCodeLifetime), interval: interval, state: DevicePending,
	}
	s.devices[g.deviceCode] = g
	s.userCodes[g.userCode] = g
	resp := map[string]any{
		"device_code":               g.deviceCode,
		"user_code":                 g.userCode,
		"verification_uri":          s.issuer + PathDeviceVerification,
		"verification_uri_complete": s.issuer + PathDeviceVerification + "?user_code=" + url.QueryEscape(g.userCode),
		"expires_in":                int64(s.cfg.DeviceCodeLifetime / time.Second),
	}
	switch {
	case s.cfg.DeviceIntervalZero:
		resp["interval"] = 0
	case !s.cfg.OmitDeviceInterval:
		resp["interval"] = int64(interval / time.Second)
	}
	rep := jsonReply(http.StatusOK, resp)
	rep.header.Set("Cache-Control", "no-store")
	return rep
}

// newUserCode returns an unused "BCDF-GHJK" code (RFC 8628 section 6.1
// alphabet: no vowels). The caller holds s.mu.
func (s *Server) newUserCode() string {
	const alphabet = "BCDFGHJKLMNPQRSTVWXZ"
	for {
		var b [8]byte
		rand.Read(b[:])
		out := make([]byte, 0, 9)
		for i, c := range b {
			if i == 4 {
				out = append(out, '-')
			}
			out = append(out, alphabet[int(c)%len(alphabet)])
		}
		if s.userCodes[string(out)] == nil {
			return string(out)
		}
	}
}

// deviceGrant answers a device access token poll (RFC 8628 section 3.4/3.5).
// The caller holds s.mu.
func (s *Server) deviceGrant(r *http.Request, c *Client, jkt string) *reply {
	s.stats.DevicePolls++
	g := s.devices[r.PostForm.Get("device_code")]
	now := s.now()
	pollErr := func(code string) *reply { return oauthError(http.StatusBadRequest, code, "") }
	switch {
	case g == nil:
		return oauthError(http.StatusBadRequest, "invalid_grant", "unknown device code")
	case g.clientID != c.ID:
		return oauthError(http.StatusBadRequest, "invalid_grant", "device code was issued to another client")
	case g.state == DeviceConsumed:
		return oauthError(http.StatusBadRequest, "invalid_grant", "device code already used")
	case g.state == DeviceExpired || !now.Before(g.expiry):
		g.state = DeviceExpired
		return pollErr("expired_token")
	}
	early := !g.lastPoll.IsZero() && now.Sub(g.lastPoll) < g.interval-10*time.Millisecond
	g.lastPoll = now
	tooFast := early && !s.cfg.DeviceNoIntervalCheck
	if !tooFast && s.slowDown > 0 {
		s.slowDown--
		tooFast = true
	}
	if tooFast {
		g.interval += oauthwire.SlowDownIncrement
		s.stats.SlowDowns++
		return pollErr("slow_down")
	}
	g.polls++
	if g.state == DevicePending && !s.cfg.DeviceManualApproval && g.polls > s.cfg.DevicePendingPolls {
		g.state = DeviceApproved
	}
	switch g.state {
	case DeviceDenied:
		return pollErr("access_denied")
	case DevicePending:
		return pollErr("authorization_pending")
	}
	fam := s.newFamily(c.ID, s.cfg.Subject, g.scope, g.resources, "")
	aud, errRep := s.audience(r.PostForm["resource"], fam)
	if errRep != nil {
		return errRep
	}
	g.state = DeviceConsumed
	return s.issueForFamily(fam, aud, c, jkt)
}

// SlowDownNext makes the next n device polls answer slow_down, whatever
// their timing; each adds 5 s to the interval enforced for that device
// code, as RFC 8628 prescribes.
func (s *Server) SlowDownNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.slowDown = n
}

// ErrNoDevice is returned by ApproveDevice, DenyDevice and ExpireDevice
// when no pending device authorization has the user code given.
var ErrNoDevice = errors.New("oauthtest: no pending device authorization with that user code")

// setDevice moves pending device grants (the one with userCode, or all
// when userCode is "") to state.
func (s *Server) setDevice(userCode, state string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, g := range s.devices {
		if g.state != DevicePending || (userCode != "" && !strings.EqualFold(g.userCode, userCode)) {
			continue
		}
		g.state = state
		n++
	}
	if n == 0 {
		return ErrNoDevice
	}
	return nil
}

// ApproveDevice approves the pending device authorization with userCode
// (compared without regard to case; every pending one when userCode is
// ""), as a user would on the verification page: the next poll gets
// tokens. Use it with Config.DeviceManualApproval.
func (s *Server) ApproveDevice(userCode string) error { return s.setDevice(userCode, DeviceApproved) }

// DenyDevice denies the pending device authorization with userCode (every
// pending one when userCode is ""): the next poll gets access_denied.
func (s *Server) DenyDevice(userCode string) error { return s.setDevice(userCode, DeviceDenied) }

// ExpireDevice expires the pending device authorization with userCode
// (every pending one when userCode is ""): the next poll gets
// expired_token.
func (s *Server) ExpireDevice(userCode string) error { return s.setDevice(userCode, DeviceExpired) }

// Devices lists the device authorizations, oldest first, with the user
// code a test needs for ApproveDevice.
func (s *Server) Devices() []DeviceInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []DeviceInfo
	for _, g := range s.devices {
		out = append(out, DeviceInfo{UserCode: g.userCode, ClientID: g.clientID, State: g.state,
			Polls: g.polls, Interval: g.interval, Expiry: g.expiry})
	}
	slices.SortFunc(out, func(a, b DeviceInfo) int { return a.Expiry.Compare(b.Expiry) })
	return out
}

const devicePage = `<!DOCTYPE html>
<html><head><title>Device login</title></head><body>
<form method="post" action="/device">
<label>Code <input name="user_code" value="%s"></label>
<button name="action" value="approve">Approve</button>
<button name="action" value="deny">Deny</button>
</form></body></html>
`

// deviceVerification serves the verification page: GET shows a form,
// POST with user_code and action=approve|deny decides.
func (s *Server) deviceVerification(r *http.Request) *reply {
	switch r.Method {
	case http.MethodGet:
		return textReply(http.StatusOK, "text/html; charset=utf-8",
			strings.Replace(devicePage, "%s", html.EscapeString(r.URL.Query().Get("user_code")), 1))
	case http.MethodPost:
		code := strings.TrimSpace(r.PostForm.Get("user_code"))
		if code == "" {
			return textReply(http.StatusBadRequest, "text/plain; charset=utf-8", "user_code required\n")
		}
		var err error
		if r.PostForm.Get("action") == "deny" {
			err = s.DenyDevice(code)
		} else {
			err = s.ApproveDevice(code)
		}
		if err != nil {
			return textReply(http.StatusNotFound, "text/plain; charset=utf-8", "unknown or used code\n")
		}
		return textReply(http.StatusOK, "text/html; charset=utf-8", "<!DOCTYPE html><html><body><p>Done. You can close this window.</p></body></html>\n")
	}
	return textReply(http.StatusMethodNotAllowed, "text/plain; charset=utf-8", "method not allowed\n")
}
