//go:build !linux

package labrun

import (
	"errors"
	"io"
)

// PcapRecorder captures a lab interface into a pcap file; Linux only.
type PcapRecorder struct{}

// RecordPcap needs Linux (network namespaces, AF_PACKET).
func RecordPcap(ns, ifname string, w io.Writer) (*PcapRecorder, error) {
	return nil, errors.New("pcap recording needs Linux")
}

// Packets returns 0.
func (r *PcapRecorder) Packets() int { return 0 }

// Close does nothing.
func (r *PcapRecorder) Close() (int, error) { return 0, nil }
