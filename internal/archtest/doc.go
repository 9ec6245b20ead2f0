// Package archtest holds no code, only tests that keep the architecture of DESIGN.md true: proto uses the
// standard library only, pipeline and stack never reach a socket, nothing imports a command, no exported
// identifier of a public package has a type from internal/ (which another module cannot name), and a module
// outside this one builds and runs an appliance from the public packages alone.
package archtest
