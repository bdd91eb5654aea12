package sendbench

import (
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/netlab"
	"github.com/tcpcopy-go/tcpcopy/internal/nsdo"
)

func TestBounds(t *testing.T) {
	if _, err := Run(netip.MustParseAddr("192.0.2.10"), netip.MustParseAddrPort("198.51.100.2:9"), 0, 10, 1); err == nil {
		t.Error("zero duration accepted")
	}
}

func TestRunInLab(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds network namespaces and opens raw sockets")
	}
	topo := netlab.NewForTest(t, netlab.Options{})
	for _, batch := range []int{1, 16} {
		var r Result
		err := nsdo.Do(topo.Online.Name, func() (err error) {
			r, err = Run(topo.Client.V4, netip.AddrPortFrom(topo.Target.OnlineV4, 9), 200*time.Millisecond, 2000, batch)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if r.Packets+r.Errors != 2000 && r.Elapsed < 200*time.Millisecond {
			t.Errorf("batch %d: stopped early: %+v", batch, r)
		}
		if r.Packets == 0 || r.PPS <= 0 {
			t.Errorf("batch %d: nothing sent: %+v", batch, r)
		}
	}
}
