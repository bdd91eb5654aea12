// Package e2e holds the end-to-end tests: the real tcpcopy and intercept
// binaries copy real HTTP traffic (also the plaintext hop behind a TLS
// terminator, https_test.go), and tcpcopy real DNS traffic over UDP,
// in the four-namespace lab (internal/lab), and the tests check what the
// target received. They need root and skip without it.
package e2e
