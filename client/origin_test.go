package client

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tokenward/tokenward/oauthtest"
)

// Tests of where the Client sends tokens: the origins of the default token
// and of ForResource's, and what happens to requests for other origins.

// With several Options.Resources the default token is requested without a
// resource indicator (a server issues one audience per access token), so
// it belongs to none of those APIs: HTTPClient must not send it to their
// origins. It fails with ErrInvalidConfig, saying to use ForResource (each
// API its own token) or to set APIOrigins, and no API ever receives a
// token that was issued for another.
func TestSeveralResourcesDefaultTokenHasNoOrigins(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{})
	apiB := oauthtest.StartAPI(t, e.as, "")
	apis := []*oauthtest.API{e.api, apiB}
	c := e.loggedIn(t, func(o *Options) { o.Resources = []string{e.api.Resource(), apiB.Resource()} })

	hc, err := c.HTTPClient(t.Context())
	if err == nil {
		// The default token would go to every API listed.
		for _, api := range apis {
			get(t, hc, api.URL()+"/default")
		}
	}
	for _, api := range apis {
		r, err := c.ForResource(api.Resource())
		if err != nil {
			t.Fatal(err)
		}
		rc, err := r.HTTPClient(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if code, body := get(t, rc, api.URL()+"/own"); code != 200 {
			t.Fatalf("%s through its ForResource client: %d %s", api.Resource(), code, body)
		}
		for _, other := range apis {
			get(t, rc, other.URL()+"/cross") // no token to the other API
		}
	}
	for _, api := range apis {
		if s := api.Stats(); s.Foreign != 0 || s.Unknown != 0 {
			t.Errorf("API %s received tokens issued for another: %+v", api.Resource(), s)
		}
	}
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "ForResource") || !strings.Contains(err.Error(), "APIOrigins") {
		t.Fatalf("HTTPClient with several Resources and no APIOrigins = %v; want ErrInvalidConfig naming ForResource and APIOrigins", err)
	}

	// Explicit APIOrigins are the user's decision: the default token goes
	// there (the server gives a token without a resource indicator its
	// default audience, the first API's).
	c2 := e.client(t, func(o *Options) {
		o.Resources = []string{e.api.Resource(), apiB.Resource()}
		o.APIOrigins = []string{e.api.URL()}
	})
	hc2, err := c2.HTTPClient(t.Context())
	if err != nil {
		t.Fatalf("HTTPClient with explicit APIOrigins: %v", err)
	}
	if code, body := get(t, hc2, e.api.URL()+"/explicit"); code != 200 {
		t.Fatalf("default token to its explicit origin: %d %s", code, body)
	}

	// A fixed token with several Resources: there is no ForResource to
	// suggest, only APIOrigins.
	fixed := e.client(t, func(o *Options) {
		o.AccessToken = "fixed-token"
		o.Resources = []string{e.api.Resource(), apiB.Resource()}
	})
	if _, err := fixed.HTTPClient(t.Context()); !errors.Is(err, ErrInvalidConfig) || strings.Contains(err.Error(), "ForResource") || !strings.Contains(err.Error(), "APIOrigins") {
		t.Fatalf("HTTPClient of a fixed token with several Resources = %v; want ErrInvalidConfig naming APIOrigins only", err)
	}
}

// Options.RejectOtherOrigins reaches every transport the Client builds (the
// default token's and ForResource's): a request to an origin outside the
// token's fails with ErrOriginNotAllowed and never goes out. Without it the
// request goes out, without a token.
func TestRejectOtherOrigins(t *testing.T) {
	t.Parallel()
	e := newFixture(t, oauthtest.Config{})
	apiB := oauthtest.StartAPI(t, e.as, "")
	for _, reject := range []bool{false, true} {
		t.Run(fmt.Sprintf("reject=%v", reject), func(t *testing.T) {
			c := e.loggedIn(t, func(o *Options) {
				o.Resources = []string{e.api.Resource(), apiB.Resource()}
				o.APIOrigins = []string{e.api.URL()}
				o.RejectOtherOrigins = reject
				o.Profile = fmt.Sprintf("reject-%v", reject)
			})
			def, err := c.HTTPClient(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			rb, err := c.ForResource(apiB.Resource())
			if err != nil {
				t.Fatal(err)
			}
			hb, err := rb.HTTPClient(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			cases := []struct {
				name  string
				get   func() error
				other *oauthtest.API
			}{
				{"default token to API B", func() error { return getErr(def, apiB.URL()+"/other") }, apiB},
				{"API B's token to API A", func() error { return getErr(hb, e.api.URL()+"/other") }, e.api},
			}
			for _, cc := range cases {
				before := len(cc.other.Requests())
				err := cc.get()
				reqs := cc.other.Requests()[before:]
				if reject {
					if !errors.Is(err, ErrOriginNotAllowed) || len(reqs) != 0 {
						t.Errorf("%s: %v, %d requests arrived; want ErrOriginNotAllowed and none", cc.name, err, len(reqs))
					}
					continue
				}
				if err != nil || len(reqs) != 1 || reqs[0].Token != "" {
					t.Errorf("%s: %v, requests %+v; want one request without a token", cc.name, err, reqs)
				}
			}
			// The tokens' own origins are unaffected.
			if code, body := get(t, def, e.api.URL()+"/own"); code != 200 {
				t.Fatalf("default token to its origin: %d %s", code, body)
			}
			if code, body := get(t, hb, apiB.URL()+"/own"); code != 200 {
				t.Fatalf("API B's token to its origin: %d %s", code, body)
			}
		})
	}
}

// getErr sends a GET through hc and returns only its error, draining and
// closing the body of any response.
func getErr(hc *http.Client, url string) error {
	resp, err := hc.Get(url)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}
