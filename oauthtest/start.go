package oauthtest

import "testing"

// Start starts a server for a test (see New) and closes it when the test
// and its subtests have finished. An invalid cfg fails the test at once.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("oauthtest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// StartAPI starts a protected API of s for a test (see Server.NewAPI); it
// is closed with the server. An invalid resource fails the test at once.
func StartAPI(t testing.TB, s *Server, resource string) *API {
	t.Helper()
	a, err := s.NewAPI(resource)
	if err != nil {
		t.Fatalf("oauthtest: %v", err)
	}
	return a
}
