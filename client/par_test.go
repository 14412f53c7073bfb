package client

import (
	"testing"

	"github.com/tokenward/tokenward/oauthtest"
)

// A server that requires pushed authorization requests (discovery says
// so) gets them without the application asking: the login works, through
// one push, and the browser's request names only client_id and
// request_uri.
func TestLoginUsesPARWhenRequired(t *testing.T) {
	t.Parallel()
	f := newFixture(t, oauthtest.Config{RequirePAR: true})
	c := f.client(t)
	login(t, c)
	if n := f.as.Stats().PushedRequests; n != 1 {
		t.Errorf("PushedRequests = %d, want 1", n)
	}
}
