package oauthwire

import (
	"slices"
	"testing"
)

// TestParseDiscoveryDPoPAlgs: dpop_signing_alg_values_supported is read;
// values that are not strings are dropped, and an absent list is empty.
func TestParseDiscoveryDPoPAlgs(t *testing.T) {
	doc := `{"issuer": "` + issuer + `", "token_endpoint": "` + issuer + `/token",
	  "dpop_signing_alg_values_supported": ["ES256", "PS256", 7]}`
	d, err := ParseDiscovery([]byte(doc), issuer)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"ES256", "PS256"}; !slices.Equal(d.DPoPSigningAlgValuesSupported, want) {
		t.Fatalf("DPoPSigningAlgValuesSupported = %q, want %q", d.DPoPSigningAlgValuesSupported, want)
	}
	d, err = ParseDiscovery([]byte(`{"issuer": "`+issuer+`", "token_endpoint": "`+issuer+`/token"}`), issuer)
	if err != nil || len(d.DPoPSigningAlgValuesSupported) != 0 {
		t.Fatalf("absent list: %q, %v", d.DPoPSigningAlgValuesSupported, err)
	}
}
