package transport_test

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/oauth2"

	"github.com/tokenward/tokenward/transport"
)

// Tests of the Authorization value: which token types are sent and how,
// and that the value is computed once per token.

func TestTokenTypes(t *testing.T) {
	t.Parallel()
	prepared := func(req *http.Request, tok *oauth2.Token) error {
		if strings.EqualFold(tok.TokenType, "dpop") {
			req.Header.Set("Authorization", "DPoP "+tok.AccessToken)
			req.Header.Set("DPoP", "proof")
		}
		return nil
	}
	tests := []struct {
		name       string
		typ        string
		prepare    bool
		wantScheme string // "" with wantErr
		wantErr    error
	}{
		{"Bearer", "Bearer", false, "Bearer", nil},
		{"bearer lower case", "bearer", false, "Bearer", nil},
		{"BEARER", "BEARER", false, "Bearer", nil},
		{"empty means Bearer", "", false, "Bearer", nil},
		{"DPoP without hook", "DPoP", false, "", transport.ErrUnsupportedTokenType},
		{"mac", "mac", false, "", transport.ErrUnsupportedTokenType},
		{"N_A", "N_A", false, "", transport.ErrUnsupportedTokenType},
		{"DPoP with hook declaring it", "DPoP", true, "DPoP", nil},
		{"mac with hook not declaring it", "mac", true, "", transport.ErrUnsupportedTokenType},
		{"Bearer with hook", "Bearer", true, "Bearer", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := &fakeSource{tokenType: tt.typ}
			src.cur = &oauth2.Token{AccessToken: "tok-" + strings.ReplaceAll(tt.name, " ", "_"), TokenType: tt.typ}
			base := &memBase{}
			tr := mustNew(t, src, toAPI(base), func(tr *transport.Options) {
				if tt.prepare {
					tr.Prepare = prepared
					tr.PrepareTokenTypes = []string{"dpop"}
				}
			})
			req, body := bodyRequest(t, "POST", "https://api.example.com/x", "payload", false, nil)
			resp, err := tr.RoundTrip(req)
			if body.closes.Load() != 1 {
				t.Errorf("body closed %d times, want 1", body.closes.Load())
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || resp != nil {
					t.Fatalf("RoundTrip = %v, %v; want nil, %v", resp, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), src.cur.AccessToken) {
					t.Errorf("error %q contains the token", err)
				}
				if n := len(base.requests()); n != 0 {
					t.Errorf("base got %d requests, want 0", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got, want := base.requests()[0].Auth, tt.wantScheme+" "+src.cur.AccessToken; got != want {
				t.Errorf("Authorization = %q, want %q", got, want)
			}
		})
	}
}

// The Authorization value is computed once per token pointer: requests with
// the same token share one precomputed string (each in its own one-element
// slice); a new token gets a new one.
func TestAuthorizationPrecomputedPerToken(t *testing.T) {
	t.Parallel()
	src := newFakeSource()
	var mu sync.Mutex
	var values [][]string
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		values = append(values, r.Header["Authorization"])
		mu.Unlock()
		return respond(r, 200, nil, ""), nil
	})
	tr := mustNew(t, src, toAPI(base))
	send := func() {
		req, _ := http.NewRequest("GET", "https://api.example.com/", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	send()
	send()
	src.Invalidate(src.current(t)) // the next Token call issues a new token
	send()
	if len(values) != 3 {
		t.Fatalf("got %d requests", len(values))
	}
	if unsafe.StringData(values[0][0]) != unsafe.StringData(values[1][0]) {
		t.Error("same token: the Authorization value was rebuilt instead of reused")
	}
	if &values[0][0] == &values[1][0] {
		t.Error("two requests share one Authorization slice: a Base that rewrites it in place would change the other request")
	}
	if unsafe.StringData(values[1][0]) == unsafe.StringData(values[2][0]) || values[1][0] == values[2][0] {
		t.Error("new token: the old Authorization value was reused")
	}
	if want := "Bearer " + src.current(t).AccessToken; values[2][0] != want {
		t.Errorf("Authorization = %q, want the new token", values[2][0])
	}
}

// For a token type Prepare declares, the transport sets Authorization
// itself, with the type as PrepareTokenTypes spells it (a server may
// answer token_type "dpop"; some resource servers compare the scheme
// case-sensitively), so that Prepare only adds what the type needs. A
// token with characters a header cannot carry is refused as for Bearer.
func TestPreparedTypeAuthorization(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, typ, token, want string }{
		{"server spelling dpop", "dpop", "tok-1", "DPoP tok-1"},
		{"server spelling DPOP", "DPOP", "tok-2", "DPoP tok-2"},
		{"token with a line break", "DPoP", "tok\r\nX-Injected: 1", ""},
		{"token with a space", "DPoP", "tok 3", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := &fakeSource{tokenType: tt.typ}
			src.cur = &oauth2.Token{AccessToken: tt.token, TokenType: tt.typ}
			base := &memBase{}
			var sawAuth string
			tr := mustNew(t, src, toAPI(base), func(o *transport.Options) {
				o.PrepareTokenTypes = []string{"DPoP"}
				o.Prepare = func(r *http.Request, _ *oauth2.Token) error {
					sawAuth = r.Header.Get("Authorization")
					r.Header["Dpop"] = []string{"proof"}
					return nil
				}
			})
			req, _ := http.NewRequest("GET", "https://api.example.com/x", nil)
			resp, err := tr.RoundTrip(req)
			if tt.want == "" {
				if err == nil || resp != nil {
					t.Fatalf("RoundTrip = %v, %v; want an error", resp, err)
				}
				if strings.Contains(err.Error(), tt.token) {
					t.Errorf("error %q contains the token", err)
				}
				if n := len(base.requests()); n != 0 {
					t.Errorf("base got %d requests, want 0", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if sawAuth != tt.want {
				t.Errorf("Prepare saw Authorization %q, want %q", sawAuth, tt.want)
			}
			if got := base.requests()[0].Auth; got != tt.want {
				t.Errorf("sent Authorization %q, want %q", got, tt.want)
			}
		})
	}
}
