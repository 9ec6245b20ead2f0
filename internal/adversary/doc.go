// Package adversary is xdpnet's adversarial suite: hostile traffic made by real tools (scapy, ab, a Python
// client that stops reading) against the real binaries (cmd/xdpfwd, examples/httpd) in network namespaces,
// each attack run while a legitimate client keeps working, and each ending with the checks of issue #12:
// new connections accepted within a second, the process's memory (RSS after a 60 s settle) under the bound
// the README's "Reliability" section states, the counters that name what was refused, and exact frame
// accounting at exit.
//
// The tests carry the build tag stress and take several minutes, so `make test` does not build them;
// `make stress` runs them (as root, with scapy, ab and python3 installed). The package has no code of its own
// besides this file; the tests build the binaries in TestMain and run them as processes, as a user would.
package adversary
