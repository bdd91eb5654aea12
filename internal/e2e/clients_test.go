package e2e

// Every kind of client, and lossy links. The lab's plain Linux client on
// a lossless network is the easy case for a copier; these tests run the
// real binaries with each client stack of labrun.ClientStacks (no TCP
// timestamps, no SACK, no window scaling, small MSS, a jumbo-frame
// client, a target with a smaller MTU, ECN, the request on the
// handshake's last ACK), live and replayed offline from a tcpdump
// recording of the live run, and with each loss level of
// labrun.LossLevels on the copy and response paths. Each must copy every
// request, byte-identical.

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/netlab"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/recorder"
)

// stackLoad is the load of the client-stack runs: keep-alive and short
// connections, GETs and POSTs of 20 kB and 1 MiB.
func stackLoad() load.Options {
	return load.Options{
		Rate: 30, Duration: 3 * time.Second, MaxRequests: 90,
		Mode: load.Mixed, KeepAliveShare: 0.5, RequestsPerConn: 5,
		Methods: []string{"GET", "POST"}, BodySizes: []int{20000, 1 << 20}, Concurrency: 4,
	}
}

func TestClientStacks(t *testing.T) {
	needRoot(t)
	for _, st := range labrun.ClientStacks {
		t.Run(st.Name, func(t *testing.T) {
			t.Parallel()
			pcap := filepath.Join(t.TempDir(), "live.pcap")
			cfg := labrun.Config{GRO: true, Pcap: pcap, Load: stackLoad()}
			st.Apply(&cfg)
			rep, online, target := run(t, cfg)
			checkAllCopied(t, rep, online, target)
			if rep.Network.ClientStack != st.Name {
				t.Errorf("the report names stack %q, want %q", rep.Network.ClientStack, st.Name)
			}
			if p := rep.Pcap; p == nil || p.Captured == 0 || p.DroppedByKernel != 0 {
				t.Fatalf("tcpdump recording: %+v", p)
			}
			// The recording replayed offline, into a lab with the same
			// target MTU: every request of the live run again.
			res := offReplayIn(t, netlab.Options{GRO: true, TargetMTU: cfg.TargetMTU}, pcap)
			if res.exit != nil {
				t.Fatalf("offline replay: %v", res.exit)
			}
			offCheckCopies(t, &offRecording{online: online}, res, 1)
			t.Logf("%s: %d requests live and offline, %d POSTs of 1 MiB", st.Name, len(online), countBodies(online, 1<<20))
		})
	}
}

// countBodies counts the requests with a body of n bytes.
func countBodies(es []recorder.Entry, n int64) int {
	c := 0
	for _, e := range es {
		if e.BodyLen == n {
			c++
		}
	}
	return c
}

func TestLossyLinks(t *testing.T) {
	needRoot(t)
	for _, lv := range labrun.LossLevels {
		for _, mode := range []load.Mode{load.Short, load.KeepAlive} {
			t.Run(lv.Name+"/"+mode.String(), func(t *testing.T) {
				t.Parallel()
				cfg := labrun.Config{
					GRO: true,
					// Copies delayed by retransmissions arrive after the
					// load ends.
					Tail: 4 * time.Second,
					Load: load.Options{
						Rate: 60, Duration: 3 * time.Second, MaxRequests: 180, Mode: mode, RequestsPerConn: 10,
						Methods: []string{"GET", "POST"}, BodySizes: []int{100, 1460, 20000, 200000}, Concurrency: 4,
					},
				}
				lv.Apply(&cfg)
				rep, online, target := run(t, cfg)
				// The goals: 100 % at 1 % loss on each path, 99.99 % at 2 %
				// on both and at 5 % on either; with fewer than 10,000
				// requests that is every one.
				checkAllCopied(t, rep, online, target)
				n := rep.Network
				if lv.Copy > 0 && n.DroppedCopy == 0 || lv.Response > 0 && n.DroppedResponse == 0 {
					t.Errorf("no loss happened: %d copies and %d responses dropped", n.DroppedCopy, n.DroppedResponse)
				}
				t.Logf("%s %v: %d requests, %d copy frames and %d response frames dropped, copy latency p99 %v",
					lv.Name, mode, len(online), n.DroppedCopy, n.DroppedResponse, rep.Compare.LatencyP99)
			})
		}
	}
}
