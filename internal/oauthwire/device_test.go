package oauthwire

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseDeviceAuthResponse(t *testing.T) {
	t.Parallel()
	base := func(extra string) string {
		return `{"device_code":"dc","user_code":"WDJB-MJHT","verification_uri":"https://as.example/device"` + extra + `}`
	}
	cases := []struct {
		name     string
		body     string
		interval time.Duration
		expires  time.Duration
		complete string
	}{
		{"full", base(`,"verification_uri_complete":"https://as.example/device?user_code=WDJB-MJHT","expires_in":1800,"interval":7`), 7 * time.Second, 30 * time.Minute, "https://as.example/device?user_code=WDJB-MJHT"},
		{"interval absent", base(`,"expires_in":600`), 5 * time.Second, 10 * time.Minute, ""},
		{"interval zero", base(`,"expires_in":600,"interval":0`), 5 * time.Second, 10 * time.Minute, ""},
		{"interval string", base(`,"expires_in":"600","interval":"2"`), 2 * time.Second, 10 * time.Minute, ""},
		{"interval fraction", base(`,"interval":0.5`), 5 * time.Second, DefaultDeviceExpiresIn, ""},
		{"interval huge", base(`,"interval":1e9`), MaxDeviceInterval, DefaultDeviceExpiresIn, ""},
		{"interval garbage", base(`,"interval":"fast","expires_in":null`), 5 * time.Second, DefaultDeviceExpiresIn, ""},
		{"expires huge", base(`,"expires_in":1099511627776`), 5 * time.Second, MaxDeviceExpiresIn, ""},
		{"bad complete uri dropped", base(`,"verification_uri_complete":"javascript:x"`), 5 * time.Second, DefaultDeviceExpiresIn, ""},
		{"google alias", `{"device_code":"dc","user_code":"WDJB-MJHT","verification_url":"https://as.example/device","interval":5}`, 5 * time.Second, DefaultDeviceExpiresIn, ""},
	}
	for _, c := range cases {
		d, err := ParseDeviceAuthResponse(200, jsonHeader(), []byte(c.body), sent)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		want := &DeviceAuth{DeviceCode: "dc", UserCode: "WDJB-MJHT", VerificationURI: "https://as.example/device",
			VerificationURIComplete: c.complete, ExpiresIn: c.expires, Expiry: sent.Add(c.expires), Interval: c.interval}
		if diff := cmp.Diff(want, d); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.name, diff)
		}
	}
	form := "device_code=dc&user_code=U&verification_uri=https%3A%2F%2Fas%2Fd&interval=3"
	if d, err := ParseDeviceAuthResponse(200, formHeader(), []byte(form), sent); err != nil || d.Interval != 3*time.Second {
		t.Errorf("form: %+v %v", d, err)
	}
	for name, body := range map[string]string{
		"no device code": `{"user_code":"U","verification_uri":"https://as/d"}`,
		"no user code":   `{"device_code":"d","verification_uri":"https://as/d"}`,
		"no uri":         `{"device_code":"d","user_code":"U"}`,
		"relative uri":   `{"device_code":"d","user_code":"U","verification_uri":"/device"}`,
		"empty":          ``,
	} {
		if _, err := ParseDeviceAuthResponse(200, jsonHeader(), []byte(body), sent); !errors.Is(err, ErrInvalidDeviceResponse) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	_, err := ParseDeviceAuthResponse(400, jsonHeader(), []byte(`{"error":"invalid_client"}`), sent)
	var oe *Error
	if !errors.As(err, &oe) || oe.Code != CodeInvalidClient {
		t.Errorf("400: %v", err)
	}
	_, err = ParseDeviceAuthResponse(200, formHeader(), []byte(`error=unauthorized_client`), sent)
	if !errors.As(err, &oe) || oe.Code != CodeUnauthorizedClient {
		t.Errorf("200 error: %v", err)
	}
}

func TestClassifyDevicePoll(t *testing.T) {
	t.Parallel()
	cases := []struct {
		status int
		code   string
		want   DevicePoll
	}{
		{400, "authorization_pending", DevicePollPending},
		{400, "slow_down", DevicePollSlowDown},
		{400, "access_denied", DevicePollDenied},
		{400, "expired_token", DevicePollExpired},
		{400, "invalid_grant", DevicePollFailed},
		{401, "invalid_client", DevicePollFailed},
		{503, "", DevicePollTransient},
		{503, "temporarily_unavailable", DevicePollTransient},
		{429, "", DevicePollTransient},
		{404, "", DevicePollFailed},
	}
	for _, c := range cases {
		if got := ClassifyDevicePoll(&Error{StatusCode: c.status, Code: c.code}); got != c.want {
			t.Errorf("%d %q: %v, want %v", c.status, c.code, got, c.want)
		}
	}
	if ClassifyDevicePoll(nil) != DevicePollFailed || DevicePollSlowDown.String() != "slow_down" {
		t.Error("nil / String")
	}
	// A 200 poll answer in GitHub's form encoding classifies too.
	_, err := ParseTokenResponse(200, http.Header{}, []byte("error=slow_down&interval=10"), sent)
	var oe *Error
	if !errors.As(err, &oe) || ClassifyDevicePoll(oe) != DevicePollSlowDown {
		t.Errorf("github slow_down: %v", err)
	}
}
