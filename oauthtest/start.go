package oauthtest

// TB is the part of testing.TB that Start uses (this package does not
// import testing, so it can run in the quickstart).
type TB interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
}

// Start starts a server for a test and closes it when the test ends.
func Start(tb TB, cfg Config) *Server {
	tb.Helper()
	s, err := New(cfg)
	if err != nil {
		tb.Fatalf("oauthtest: %v", err)
	}
	tb.Cleanup(s.Close)
	return s
}

// StartAPI starts a protected API for a test (closed with the server).
func StartAPI(tb TB, s *Server, resource string) *API {
	tb.Helper()
	a, err := s.NewAPI(resource)
	if err != nil {
		tb.Fatalf("oauthtest: %v", err)
	}
	return a
}
