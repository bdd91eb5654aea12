package labrun

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/netlab"
)

// PcapReport is what tcpdump said about the recording of Config.Pcap when
// it stopped (its "N packets captured" lines on stderr).
type PcapReport struct {
	File               string `json:"file"`
	Captured           uint64 `json:"captured"`                       // written to File
	ReceivedByFilter   uint64 `json:"received_by_filter"`             // seen by the capture
	DroppedByKernel    uint64 `json:"dropped_by_kernel"`              // lost for lack of buffer space: must be 0
	DroppedByInterface uint64 `json:"dropped_by_interface,omitempty"` // lost by the interface (rarely known)
}

// tcpdumpArgs is the tcpdump command line of Config.Pcap: the online
// namespace's client-facing interface, whole packets (-s 0), each packet
// written out at once (-U, so that a killed tcpdump leaves a readable
// file), as root (-Z root: Debian's tcpdump otherwise drops to user
// tcpdump, which may not write to the run's directory).
//
// --immediate-mode hands each packet to tcpdump as it arrives. Without it
// libpcap's TPACKET_V3 ring holds packets until a block fills or its 1 s
// timeout ends, and tcpdump stopped by SIGTERM writes none of what is still
// there: a run of 0.4 s showed "0 packets captured, 84 packets received by
// filter" and an empty file. -B 32768 gives the ring 32 MiB, so that a
// busy run does not overflow it.
func tcpdumpArgs(file string) []string {
	return []string{"-Z", "root", "-i", netlab.IfToClient, "-s", "0", "-U", "--immediate-mode", "-B", "32768", "-w", file}
}

// startTcpdump starts tcpdump in the online namespace and waits until it
// says it is listening: from then on every packet on the interface is
// captured.
func (l *Lab) startTcpdump(ctx context.Context) (*netlab.Proc, error) {
	l.log.Info("starting tcpdump", "file", l.cfg.Pcap)
	p, err := l.Topo.Start(netlab.Online, "tcpdump", tcpdumpArgs(l.cfg.Pcap)...)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.StartTimeout)
	defer cancel()
	for {
		if b, err := os.ReadFile(p.StderrPath); err == nil && strings.Contains(string(b), "listening on ") {
			return p, nil
		}
		if !p.Running() {
			return nil, fmt.Errorf("exited at start: %v %s", p.Err(), p.StderrTail(512))
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("not listening after %s: %w: %s", l.cfg.StartTimeout, ctx.Err(), p.StderrTail(512))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// stopTcpdump stops tcpdump with SIGTERM, so that it flushes the file and
// prints its counts, and reads them.
func stopTcpdump(p *netlab.Proc, file string) (*PcapReport, error) {
	if err := p.Stop(); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p.StderrPath)
	if err != nil {
		return nil, err
	}
	r, err := parseTcpdumpStats(string(b))
	if err != nil {
		return nil, err
	}
	r.File = file
	return r, nil
}

// parseTcpdumpStats reads the counts tcpdump prints on stderr when it
// stops:
//
//	1234 packets captured
//	1240 packets received by filter
//	0 packets dropped by kernel
//
// and, when the interface counts them, "N packets dropped by interface".
func parseTcpdumpStats(stderr string) (*PcapReport, error) {
	r := &PcapReport{}
	seen := false
	for line := range strings.Lines(stderr) {
		num, what, ok := strings.Cut(strings.TrimSpace(line), " packet")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(num, 10, 64)
		if err != nil {
			continue
		}
		what = strings.TrimPrefix(strings.TrimPrefix(what, "s"), " ")
		switch what {
		case "captured":
			r.Captured, seen = n, true
		case "received by filter":
			r.ReceivedByFilter = n
		case "dropped by kernel":
			r.DroppedByKernel = n
		case "dropped by interface":
			r.DroppedByInterface = n
		}
	}
	if !seen {
		return nil, fmt.Errorf("no packet counts in tcpdump's output: %q", strings.TrimSpace(stderr))
	}
	return r, nil
}
