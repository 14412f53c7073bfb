package oauthtest_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/tokenward/tokenward/oauthtest"
)

// With DPoPRequired the server advertises the proof algorithms it takes
// and refuses a token request that carries no DPoP proof.
func ExampleDPoPMode() {
	srv, err := oauthtest.New(oauthtest.Config{InMemory: true, DPoP: oauthtest.DPoPRequired,
		Clients: []oauthtest.Client{{ID: "job", Secret: "s3cret"}}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	hc := &http.Client{Transport: srv.Transport()}

	resp, err := hc.Get(srv.URL(oauthtest.PathOAuthDiscovery))
	if err != nil {
		fmt.Println(err)
		return
	}
	var doc struct {
		Algs []string `json:"dpop_signing_alg_values_supported"`
	}
	json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	fmt.Println("algs:", doc.Algs)

	req, _ := http.NewRequest(http.MethodPost, srv.TokenURL(), strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("job", "s3cret")
	resp, err = hc.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, string(body))
	// Output:
	// algs: [ES256 EdDSA PS256 RS256]
	// 400 {"error":"invalid_dpop_proof","error_description":"DPoP proof required"}
}
