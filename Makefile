# tokenward build and test entry points.
#
#   make test      everything CI runs: vet, race tests, cross-OS builds and, on
#                  Linux, the keychain suite against a real Secret Service.
#   make fuzz      every fuzz target for FUZZTIME each (default 60s).
#
# Under CI=true the keychain suite must run; a skip is a failure.

GO       ?= go
FUZZTIME ?= 60s

.PHONY: test vet unit cross keychain fuzz

test: vet unit cross keychain

vet:
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 ./...

# The per-OS keychain code must at least compile (tests included) for the
# operating systems CI cannot run here.
cross:
	GOOS=darwin  GOARCH=arm64 $(GO) vet ./...
	GOOS=windows GOARCH=amd64 $(GO) vet ./...

keychain:
	./.ci/keychain-suite.sh

fuzz:
	./.ci/fuzz.sh $(FUZZTIME)
