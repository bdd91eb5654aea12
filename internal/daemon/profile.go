package daemon

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// CPUProfile starts writing a CPU profile to path (the --cpu-profile
// diagnostics option) and returns the function that stops it; "" does
// nothing.
func CPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
