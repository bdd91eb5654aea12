package e2e

import (
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
)

// TestCopyLinkLayer copies with -o: the copies leave online as Ethernet
// frames written on the interface toward the target, addressed with the
// MACs of the -x @mac forms, bypassing the routing table (C TCPCopy's
// --pcap-send build).
func TestCopyLinkLayer(t *testing.T) {
	needRoot(t)
	cfg := labrun.Config{
		GRO: true,
		Load: load.Options{
			Rate: 60, Duration: 2 * time.Second, MaxRequests: 100,
			Mode: load.Mixed, RequestsPerConn: 5, BodySizes: bodies, Concurrency: 4,
		},
		TcpcopyArgs: []string{
			"-x", "80@{online.target_mac}-{target.online_v4}:8080@{target.online_mac}",
			"-o", "{online.target_if}", "-s", "{assistant.online_v4}", "-i", "{online.client_if}",
		},
	}
	rep, online, target := run(t, cfg)
	checkAllCopied(t, rep, online, target)
}
