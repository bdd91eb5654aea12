//go:build !linux

package capture

import (
	"errors"
	"fmt"
	"runtime"
)

var errUnsupported = fmt.Errorf("capture: AF_PACKET capture on %s: %w", runtime.GOOS, errors.ErrUnsupported)

// Source is a live capture; it is only implemented on Linux.
type Source struct{}

// Open returns an error wrapping errors.ErrUnsupported.
func Open(cfg Config) (*Source, error) { return nil, errUnsupported }

// ReadBatch returns an error wrapping errors.ErrUnsupported.
func (s *Source) ReadBatch(pkts []Packet) (int, error) { return 0, errUnsupported }

// Stats returns zero counters.
func (s *Source) Stats() Stats { return Stats{} }

// Close does nothing.
func (s *Source) Close() error { return nil }

// Behind reports false.
func (s *Source) Behind() bool { return false }
