// Package leakwatch counts the packets of the target that reach a network
// namespace where they must never arrive: the lab's client namespace. The
// whole point of the TCPCopy routing (target → assistant, forwarding off) is
// that no real client ever sees a response of the target; a leak would
// reset or confuse real connections.
//
// Run captures on every interface of the namespace it runs in (package
// capture, "any"), with a kernel filter (package bpfgen) that accepts TCP
// segments from the target's addresses or from the target's ports, and a
// snap length that keeps only the headers. It is meant to run as the
// "watch" subcommand of tcpcopy-lab inside the namespace ("ip netns exec"),
// started before the copy and stopped (SIGTERM) after it.
//
// The result file is JSON, written atomically (temporary file and rename):
// once with Ready set when the capture is open, so that the starter knows
// that nothing can be missed from then on, and again at the end.
package leakwatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tcpcopy-go/tcpcopy/pkg/bpfgen"
	"github.com/tcpcopy-go/tcpcopy/pkg/capture"
	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
)

// maxListed bounds Result.First.
const maxListed = 10

// snapLen keeps the Ethernet, IP and TCP headers with options.
const snapLen = 14 + 60 + 60

// Options says what to watch for.
type Options struct {
	// From are the addresses whose TCP segments must not arrive (any port).
	From []netip.Addr
	// Ports are TCP source ports that must not arrive from any address.
	Ports []uint16
	// Out is the result file.
	Out string
}

// Result is what Run found.
type Result struct {
	Ready   bool      `json:"ready"`   // the capture was open
	Done    bool      `json:"done"`    // the watch ended normally
	Packets uint64    `json:"packets"` // segments that matched
	Drops   uint64    `json:"drops"`   // matched but lost by a full ring
	First   []string  `json:"first,omitempty"`
	Since   time.Time `json:"since"`
	Until   time.Time `json:"until,omitzero"`
}

// matches returns what the capture filter accepts.
func (o Options) matches() []bpfgen.Match {
	var ms []bpfgen.Match
	for _, a := range o.From {
		ms = append(ms, bpfgen.Match{Addr: a})
	}
	for _, p := range o.Ports {
		ms = append(ms, bpfgen.Match{Port: p})
	}
	return ms
}

// Run watches until ctx ends, then writes the final Result to o.Out.
func Run(ctx context.Context, o Options) (Result, error) {
	res := Result{Since: time.Now()}
	if o.Out == "" {
		return res, errors.New("leakwatch: no output file")
	}
	ms := o.matches()
	if len(ms) == 0 {
		return res, errors.New("leakwatch: nothing to watch for")
	}
	prog, err := bpfgen.ResponsesFrom(ms)
	if err != nil {
		return res, fmt.Errorf("leakwatch: %w", err)
	}
	src, err := capture.Open(capture.Config{SnapLen: snapLen, Filter: prog, IgnoreOutgoing: true, BlockTimeout: time.Millisecond})
	if err != nil {
		return res, fmt.Errorf("leakwatch: %w", err)
	}
	res.Ready = true
	if err := write(o.Out, res); err != nil {
		src.Close()
		return res, err
	}

	var (
		mu       sync.Mutex
		packets  uint64
		first    []string
		readDone = make(chan error, 1)
	)
	go func() {
		pkts := make([]capture.Packet, 64)
		var p ipmangle.Parsed
		for {
			n, err := src.ReadBatch(pkts)
			mu.Lock()
			for _, pkt := range pkts[:n] {
				packets++
				if len(first) < maxListed {
					p.Decode(pkt.Data)
					s := fmt.Sprintf("%d bytes (ifindex %d)", pkt.Len, pkt.Ifindex)
					if p.Src.IsValid() {
						s = fmt.Sprintf("%s > %s [%s] %s", p.Src, p.Dst, p.Flags, s)
					}
					first = append(first, pkt.Time.UTC().Format("15:04:05.000000")+" "+s)
				}
			}
			mu.Unlock()
			if err != nil {
				if errors.Is(err, capture.ErrClosed) {
					err = nil
				}
				readDone <- err
				return
			}
		}
	}()
	var readErr error
	select {
	case <-ctx.Done():
	case readErr = <-readDone:
	}
	st := src.Stats()
	src.Close()
	if readErr == nil {
		readErr = <-readDone
	}
	mu.Lock()
	res.Packets, res.First = packets, first
	mu.Unlock()
	res.Drops = st.Drops
	res.Until = time.Now()
	res.Done = readErr == nil
	if err := write(o.Out, res); err != nil {
		return res, err
	}
	if readErr != nil {
		return res, fmt.Errorf("leakwatch: %w", readErr)
	}
	return res, nil
}

func write(path string, r Result) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".leakwatch-*")
	if err != nil {
		return fmt.Errorf("leakwatch: %w", err)
	}
	_, werr := tmp.Write(append(b, '\n'))
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), path)
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("leakwatch: %w", werr)
	}
	return nil
}

// ReadResult reads a result file written by Run.
func ReadResult(path string) (Result, error) {
	var r Result
	b, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("leakwatch: %s: %w", path, err)
	}
	return r, nil
}

// Args is the command line (after the executable) of the tcpcopy-lab
// watch subcommand for o.
func Args(o Options) []string {
	args := []string{"watch", "--out", o.Out}
	for _, a := range o.From {
		args = append(args, "--from", a.String())
	}
	for _, p := range o.Ports {
		args = append(args, "--port", fmt.Sprint(p))
	}
	return args
}
