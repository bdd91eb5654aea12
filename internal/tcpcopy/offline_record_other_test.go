//go:build !linux

package tcpcopy

import "testing"

// recordGolden needs Linux: network namespaces and AF_PACKET capture.
func recordGolden(t *testing.T) {
	t.Skip("recording the golden capture needs Linux (network namespaces)")
}

// recordGoldenClients needs Linux: network namespaces and AF_PACKET
// capture.
func recordGoldenClients(t *testing.T, path string) {
	t.Skip("recording the golden capture needs Linux (network namespaces)")
}
