package oauthwire

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Device flow constants (RFC 8628).
const (
	// GrantTypeDeviceCode is the grant_type of device access token requests.
	GrantTypeDeviceCode = "urn:ietf:params:oauth:grant-type:device_code"
	// DefaultDeviceInterval is the polling interval when the server sends
	// none, 0, or an invalid one (RFC 8628 section 3.2).
	DefaultDeviceInterval = 5 * time.Second
	// SlowDownIncrement is added to the interval, for good, on every
	// slow_down (RFC 8628 section 3.5).
	SlowDownIncrement = 5 * time.Second
	// MaxDeviceInterval caps a server-sent interval.
	MaxDeviceInterval = 10 * time.Minute
	// DefaultDeviceExpiresIn is used when a device authorization response
	// has no usable expires_in (the field is REQUIRED; some servers omit it).
	DefaultDeviceExpiresIn = 15 * time.Minute
	// MaxDeviceExpiresIn caps a device code's lifetime.
	MaxDeviceExpiresIn = 24 * time.Hour
)

// DeviceAuth is a device authorization response (RFC 8628 section 3.2).
// DeviceCode is a secret: never log it. UserCode and
// VerificationURIComplete are shown to the user but are credentials for the
// next minutes, so they are not logged either.
type DeviceAuth struct {
	DeviceCode string
	UserCode   string
	// VerificationURI is an absolute http(s) URL (Google's
	// "verification_url" is accepted as an alias).
	VerificationURI string
	// VerificationURIComplete is "" when absent or not an absolute http(s)
	// URL.
	VerificationURIComplete string
	// ExpiresIn is the device code's lifetime (DefaultDeviceExpiresIn when
	// the server sent none; clamped to MaxDeviceExpiresIn).
	ExpiresIn time.Duration
	// Expiry is sent + ExpiresIn: polling ends then.
	Expiry time.Time
	// Interval is the minimum time between polls: DefaultDeviceInterval for
	// 0, absent or invalid values; at least one second; at most
	// MaxDeviceInterval.
	Interval time.Duration
}

// ParseDeviceAuthResponse parses a device authorization response. A non-2xx
// status yields an *Error; a body without device_code, user_code or a usable
// verification_uri yields ErrInvalidDeviceResponse; optional fields never
// fail the response. sent is the moment the request was sent (zero means
// time.Now()).
func ParseDeviceAuthResponse(status int, h http.Header, body []byte, sent time.Time) (*DeviceAuth, error) {
	if len(body) > MaxBody {
		return nil, ErrBodyTooLarge
	}
	if h == nil {
		h = http.Header{}
	}
	if status < 200 || status > 299 {
		return nil, ParseErrorResponse(status, h, body)
	}
	if sent.IsZero() {
		sent = time.Now()
	}
	f, err := decodeFields(body, mediaType(h))
	if err != nil {
		if errors.Is(err, ErrMissingAccessToken) { // empty body
			return nil, fmt.Errorf("%w: empty body", ErrInvalidDeviceResponse)
		}
		return nil, err
	}
	d := &DeviceAuth{}
	d.DeviceCode, _ = f.str("device_code")
	d.UserCode, _ = f.str("user_code")
	if d.DeviceCode == "" || d.UserCode == "" {
		if _, hasErr := f.str("error"); hasErr {
			return nil, ParseErrorResponse(status, h, body)
		}
		return nil, fmt.Errorf("%w: device_code or user_code missing", ErrInvalidDeviceResponse)
	}
	uri, ok := f.str("verification_uri")
	if !ok {
		uri, _ = f.str("verification_url")
	}
	if !isWebURL(uri) {
		return nil, fmt.Errorf("%w: verification_uri missing or not an absolute http(s) URL", ErrInvalidDeviceResponse)
	}
	d.VerificationURI = uri
	if c, ok := f.str("verification_uri_complete"); ok && isWebURL(c) {
		d.VerificationURIComplete = c
	}
	d.ExpiresIn = DefaultDeviceExpiresIn
	if v, ok := f.lifetime("expires_in"); ok {
		d.ExpiresIn = min(v, MaxDeviceExpiresIn)
	}
	d.Expiry = sent.Add(d.ExpiresIn)
	d.Interval = DefaultDeviceInterval
	if v, ok := f.lifetime("interval"); ok {
		d.Interval = min(max(v, time.Second), MaxDeviceInterval)
	}
	return d, nil
}

func isWebURL(s string) bool {
	if s == "" || len(s) > 2048 {
		return false
	}
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" && u.User == nil
}

// DevicePoll is what a device access token poll's error means for the
// polling loop.
type DevicePoll int

// Poll outcomes.
const (
	// DevicePollFailed: stop; the flow failed (any other error code).
	DevicePollFailed DevicePoll = iota
	// DevicePollPending: authorization_pending, poll again after the interval.
	DevicePollPending
	// DevicePollSlowDown: slow_down, add SlowDownIncrement to the interval
	// for good, then poll again.
	DevicePollSlowDown
	// DevicePollDenied: access_denied, the user refused.
	DevicePollDenied
	// DevicePollExpired: expired_token, the device code expired; start over.
	DevicePollExpired
	// DevicePollTransient: a 5xx or 429 without a device code error; poll
	// again after the interval. A busy server or a proxy hiccup says nothing
	// about the login, and ending the flow would make the user start over
	// with a new code.
	DevicePollTransient
)

// String returns the outcome's name.
func (p DevicePoll) String() string {
	switch p {
	case DevicePollPending:
		return "pending"
	case DevicePollSlowDown:
		return "slow_down"
	case DevicePollDenied:
		return "denied"
	case DevicePollExpired:
		return "expired"
	case DevicePollTransient:
		return "transient"
	}
	return "failed"
}

// ClassifyDevicePoll maps a poll's error response to what the polling loop
// does next.
func ClassifyDevicePoll(e *Error) DevicePoll {
	if e == nil {
		return DevicePollFailed
	}
	switch e.Code {
	case CodeAuthorizationPending:
		return DevicePollPending
	case CodeSlowDown:
		return DevicePollSlowDown
	case CodeAccessDenied:
		return DevicePollDenied
	case CodeExpiredToken:
		return DevicePollExpired
	case CodeTemporarilyUnavailable, CodeServerError:
		return DevicePollTransient
	case "":
		if e.StatusCode >= 500 || e.StatusCode == http.StatusTooManyRequests {
			return DevicePollTransient
		}
	}
	return DevicePollFailed
}
