package oauthtest_test

import (
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenward/tokenward/internal/tokenx"
	"github.com/tokenward/tokenward/oauthtest"
)

func TestResourceIndicators(t *testing.T) {
	t.Parallel()
	srv := oauthtest.Start(t, oauthtest.Config{})
	orders := oauthtest.StartAPI(t, srv, "https://orders.example")
	billing := oauthtest.StartAPI(t, srv, "https://billing.example")
	cli := auth{id: oauthtest.DefaultClientID}
	tok, _ := srv.Mint(oauthtest.Grant{Resources: []string{orders.Resource(), billing.Resource()}})

	// One RT, rotated, mints a token for each resource.
	form := refresh(tok.RefreshToken)
	form.Set("resource", orders.Resource())
	tOrders := mustToken(t, srv, nil, cli, form)
	form = refresh(tOrders.RefreshToken)
	form.Set("resource", billing.Resource())
	tBilling := mustToken(t, srv, nil, cli, form)

	if callAPI(t, srv, orders, tOrders.AccessToken).status != 200 || callAPI(t, srv, billing, tBilling.AccessToken).status != 200 {
		t.Fatal("own tokens refused")
	}
	if callAPI(t, srv, orders, tBilling.AccessToken).status != 401 || callAPI(t, srv, billing, tOrders.AccessToken).status != 401 {
		t.Fatal("foreign tokens accepted")
	}
	if orders.Stats().Foreign != 1 || billing.Stats().Foreign != 1 {
		t.Errorf("foreign counts %+v %+v", orders.Stats(), billing.Stats())
	}
	if diff := cmp.Diff([]string{tOrders.AccessToken, tBilling.AccessToken}, orders.Tokens()); diff != "" {
		t.Errorf("orders saw (-want +got):\n%s", diff)
	}

	for name, res := range map[string][]string{
		"two resources":    {orders.Resource(), billing.Resource()},
		"not in the grant": {"https://other.example"},
		"relative":         {"/orders"},
		"fragment":         {"https://orders.example#x"},
	} {
		form := refresh(tBilling.RefreshToken)
		form["resource"] = res
		if _, err := tokenReq(t, srv, nil, cli, form); oauthCode(err) != "invalid_target" {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The RT was not consumed by the refused requests.
	mustToken(t, srv, nil, cli, refresh(tBilling.RefreshToken))

	// Without a resource: the first API is the default audience.
	cc := oauthtest.Client{ID: "job", Secret: "s3cret-job"}
	srv.Update(func(c *oauthtest.Config) { c.Clients = append(c.Clients, cc) })
	tJob := mustToken(t, srv, nil, auth{id: "job", secret: "s3cret-job"}, url.Values{"grant_type": {"client_credentials"}})
	if info, _ := srv.Introspect(tJob.AccessToken); info.Audience != orders.Resource() {
		t.Errorf("default audience %q", info.Audience)
	}
	// Restricted resources.
	srv.Update(func(c *oauthtest.Config) { c.Resources = []string{"https://only.example"} })
	form = url.Values{"grant_type": {"client_credentials"}, "resource": {"https://elsewhere.example"}}
	if _, err := tokenReq(t, srv, nil, auth{id: "job", secret: "s3cret-job"}, form); oauthCode(err) != "invalid_target" {
		t.Errorf("unlisted resource: %v", err)
	}
	form.Set("resource", billing.Resource()) // APIs' resources stay allowed
	mustToken(t, srv, nil, auth{id: "job", secret: "s3cret-job"}, form)
}

func TestScopes(t *testing.T) {
	t.Parallel()
	job := oauthtest.Client{ID: "job", Secret: "x", Scopes: []string{"read", "write"}}
	srv := oauthtest.Start(t, oauthtest.Config{Clients: []oauthtest.Client{job, public("cli")}})
	a := auth{id: "job", secret: "x"}
	tok := mustToken(t, srv, nil, a, url.Values{"grant_type": {"client_credentials"}})
	if tokenx.Scope(tok) != "read write" {
		t.Errorf("default scope %q", tokenx.Scope(tok))
	}
	if _, err := tokenReq(t, srv, nil, a, url.Values{"grant_type": {"client_credentials"}, "scope": {"admin"}}); oauthCode(err) != "invalid_scope" {
		t.Errorf("admin scope: %v", err)
	}
	m, _ := srv.Mint(oauthtest.Grant{ClientID: "cli", Scope: "a b"})
	form := refresh(m.RefreshToken)
	form.Set("scope", "a")
	if got := mustToken(t, srv, nil, auth{id: "cli"}, form); tokenx.Scope(got) != "a" {
		t.Errorf("narrowed scope %q", tokenx.Scope(got))
	}
	m, _ = srv.Mint(oauthtest.Grant{ClientID: "cli", Scope: "a b"})
	form = refresh(m.RefreshToken)
	form.Set("scope", "a c")
	if _, err := tokenReq(t, srv, nil, auth{id: "cli"}, form); oauthCode(err) != "invalid_scope" {
		t.Errorf("widened scope: %v", err)
	}
}
