package transport_test

import (
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/transport"
)

// TestAnsweredResendsOnce: a 401 whose hook asks for a resend is sent once
// more with the same token, Prepare running again, the body replayed; a
// second such answer is returned as it is.
func TestAnsweredResendsOnce(t *testing.T) {
	var calls atomic.Int32
	s := newSite(t, false, func(w http.ResponseWriter, r *http.Request, h hit) {
		n := calls.Add(1)
		if h.Body != "payload" {
			t.Errorf("attempt %d: body %q", n, h.Body)
		}
		if r.URL.Path == "/always" || n == 1 {
			w.Header().Set("WWW-Authenticate", `DPoP error="use_dpop_nonce"`)
			w.WriteHeader(http.StatusUnauthorized)
		}
	})
	src := newFakeSource()
	var prepared, answered atomic.Int32
	tr := mustNew(t, src, func(o *transport.Options) {
		o.Origins = []string{s.srv.URL}
		o.AllowInsecureLoopback = true
		o.Prepare = func(req *http.Request, _ *oauth2.Token) error {
			prepared.Add(1)
			return nil
		}
		o.Answered = func(req *http.Request, resp *http.Response, tok *oauth2.Token) (bool, error) {
			answered.Add(1)
			return resp.StatusCode == http.StatusUnauthorized, nil
		}
	})
	hc := &http.Client{Transport: tr}
	resp, err := hc.Post(s.srv.URL+"/once", "text/plain", strings.NewReader("payload"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || calls.Load() != 2 || prepared.Load() != 2 || answered.Load() != 2 {
		t.Fatalf("status %d, %d sends, %d prepares, %d answers; want 200, 2, 2, 2", resp.StatusCode, calls.Load(), prepared.Load(), answered.Load())
	}
	if len(src.invalidated) != 0 {
		t.Fatal("a resend the hook asked for invalidated the token")
	}
	calls.Store(0)
	resp, err = hc.Post(s.srv.URL+"/always", "text/plain", strings.NewReader("payload"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || calls.Load() != 2 {
		t.Fatalf("status %d after %d sends; want the second 401 after 2", resp.StatusCode, calls.Load())
	}
}

// TestAnsweredError: an error of the hook fails the request, with no
// resend.
func TestAnsweredError(t *testing.T) {
	var calls atomic.Int32
	s := newSite(t, false, func(w http.ResponseWriter, r *http.Request, h hit) {
		calls.Add(1)
		w.WriteHeader(http.StatusUnauthorized)
	})
	errRefused := errors.New("refused proof")
	tr := mustNew(t, newFakeSource(), func(o *transport.Options) {
		o.Origins = []string{s.srv.URL}
		o.AllowInsecureLoopback = true
		o.Answered = func(*http.Request, *http.Response, *oauth2.Token) (bool, error) { return true, errRefused }
	})
	_, err := (&http.Client{Transport: tr}).Get(s.srv.URL)
	if !errors.Is(err, errRefused) || calls.Load() != 1 {
		t.Fatalf("err %v after %d sends; want the hook's error after 1", err, calls.Load())
	}
}
