package main

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/tokenward/tokenward/client"
	"github.com/tokenward/tokenward/oauthtest"
)

// dpopStep calls the demo API with signer's DPoP-bound token, then shows
// that a copy of that token is refused without the key: sent as Bearer,
// and sent with the proof that went with it, replayed. It reports what the
// demo API recorded, never the token or a proof.
func dpopStep(ctx context.Context, signer *client.Client, as *oauthtest.Server, api *oauthtest.API, say func(string, ...any)) error {
	url := api.URL() + "/reports"
	hc, err := signer.HTTPClient(ctx)
	if err != nil {
		return err
	}
	if err := call(ctx, hc, url); err != nil {
		return err
	}
	tok, err := signer.Token(ctx)
	if err != nil {
		return err
	}
	if last := lastRequest(api); last.Status != http.StatusOK || last.Scheme != oauthtest.SchemeDPoP || last.DPoPJKT == "" {
		return fmt.Errorf("the demo API saw scheme %q, status %d, no key proven: not a DPoP request", last.Scheme, last.Status)
	}
	say("token type %s; API call -> 200 OK, sent as \"Authorization: DPoP\" with a fresh proof signed by the client's key", tok.Type())

	// Someone who copied the access token (from a log, a proxy, a dump)
	// has no key: a plain http.Client, no tokenward.
	stolen := func(scheme, proof string) (int, string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, "", err
		}
		req.Header.Set("Authorization", scheme+" "+tok.AccessToken)
		if proof != "" {
			req.Header.Set("DPoP", proof)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, lastRequest(api).Outcome, nil
	}
	code, outcome, err := stolen(oauthtest.SchemeBearer, "")
	if err != nil {
		return err
	}
	if code != http.StatusUnauthorized || outcome != oauthtest.OutcomeDPoPDowngrade {
		return fmt.Errorf("a copy of the DPoP token sent as Bearer: %d %s, want 401", code, outcome)
	}
	say("a copy of that token, sent as Bearer without the key -> %d %s", code, http.StatusText(code))
	code, outcome, err = stolen(oauthtest.SchemeDPoP, as.LastDPoPProof(oauthtest.EndpointAPI))
	if err != nil {
		return err
	}
	if code != http.StatusUnauthorized || outcome != oauthtest.OutcomeInvalidDPoPProof {
		return fmt.Errorf("a copy of the DPoP token with a replayed proof: %d %s, want 401", code, outcome)
	}
	say("the same copy with the proof that went with it, replayed -> %d %s", code, http.StatusText(code))
	say("why: the token is bound to the client's key, and the API wants a new proof signed with it on every request")
	return nil
}

// lastRequest is the demo API's most recent request record.
func lastRequest(api *oauthtest.API) oauthtest.APIRequest {
	recs := api.Requests()
	if len(recs) == 0 {
		return oauthtest.APIRequest{}
	}
	return recs[len(recs)-1]
}
