# xdpnet - the two commands a newcomer needs are `make demo` and `make test`.
GO      ?= go
# Privileged tests fail instead of skipping when they cannot run.
export XDPNET_REQUIRE_PRIV = 1
# Not root: let go test run the test binaries under sudo (namespaces, XDP and AF_XDP need CAP_NET_ADMIN,
# CAP_BPF, CAP_NET_RAW and CAP_IPC_LOCK).
EXEC    := $(if $(filter 0,$(shell id -u)),,-exec 'sudo -E')
RUNAS   := $(if $(filter 0,$(shell id -u)),,sudo -E)

.PHONY: all build test stress bgp demo deps bench fuzz vet clean

all: build

deps:
	.ci/install-deps

build:
	$(GO) build ./...

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || { echo "gofmt would change:"; gofmt -l .; exit 1; }

# Every test, privileged ones included, and each fuzz target's seed corpus. -p 1: the privileged tests of one
# package must not compete with another's for the two cores, and netlab.CleanStale in one package would
# remove the fake crashed lab another package's test builds on purpose.
test: deps vet
	$(GO) test $(EXEC) -p 1 -count=1 -timeout 15m ./...

# The adversarial suite (internal/adversary, build tag stress): hostile traffic from real tools against
# xdpfwd and httpd in namespaces, each attack followed by a 60 s settle; about 20 minutes. Not part of test.
stress: deps
	$(GO) test $(EXEC) -tags stress -p 1 -count=1 -v -timeout 60m ./internal/adversary/

# A routing daemon as the control plane (internal/bgplab, build tag bgp): BIRD 2 learns a synthetic full
# table (1 000 000 IPv4 prefixes) over BGP and installs it in the kernel; xdpfwd in kernel-mirror mode follows
# it. Logs the time to the last route in the kernel and in xdpfwd, and the memory; about 10 minutes, 2 GiB.
bgp: deps
	$(GO) test $(EXEC) -tags bgp -p 1 -count=1 -v -timeout 60m ./internal/bgplab/

# The three-namespace lab: generator -> xdpfwd -> sink with real traffic, then removed.
demo: deps
	$(GO) build -o bin/xdpfwd ./cmd/xdpfwd
	$(RUNAS) ./bin/xdpfwd demo

bench: deps
	$(GO) build -o bin/bench ./bench
	$(RUNAS) ./bin/bench

# Short coverage-guided run of every fuzz target (not part of test: it is open-ended).
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 15s $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf bin
