// Package archtest holds no code, only a test that keeps the dependency direction of DESIGN.md true: proto
// uses the standard library only, pipeline and stack never reach a socket, and nothing imports a command.
package archtest
