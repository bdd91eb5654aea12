//go:build linux

package inject

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/netlab"
	"github.com/tcpcopy-go/tcpcopy/internal/nsdo"
	"github.com/tcpcopy-go/tcpcopy/pkg/capture"
	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
)

func TestMalformed(t *testing.T) {
	var s Sender // never opened: malformed input is refused before any syscall
	for _, b := range [][]byte{nil, make([]byte, 19), append([]byte{0x60}, make([]byte, 30)...), append([]byte{0x15}, make([]byte, 40)...)} {
		if err := s.Send(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("Send(% x...) = %v, want ErrMalformed", b[:min(len(b), 4)], err)
		}
	}
}

// lab builds the namespace lab; the tests send from online to target.
func lab(t *testing.T) *netlab.Topology {
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds network namespaces and opens raw sockets")
	}
	return netlab.NewForTest(t, netlab.Options{})
}

// listen opens a capture on the target's interface facing online.
func listen(t *testing.T, topo *netlab.Topology) *capture.Source {
	var src *capture.Source
	err := nsdo.Do(topo.Target.Name, func() (err error) {
		src, err = capture.Open(capture.Config{Interface: topo.Target.OnlineIf, IgnoreOutgoing: true})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

// expect reads from src until want (by source) arrives, and checks it
// came unchanged.
func expect(t *testing.T, src *capture.Source, want []byte) {
	t.Helper()
	expectAll(t, src, [][]byte{want})
}

func synPacket(t *testing.T, src, dst string) []byte {
	f := ipmangle.Fields{
		Src: netip.MustParseAddrPort(src), Dst: netip.MustParseAddrPort(dst),
		Seq: 1000, Flags: ipmangle.SYN, Window: 65535, MSS: 1460, WScale: 7, HasTS: true, TSVal: 42,
		ID: 7, DontFragment: true,
	}
	b := make([]byte, f.Len())
	f.Encode(b)
	return b
}

func TestSendSpoofed(t *testing.T) {
	topo := lab(t)
	src := listen(t, topo)
	var s *Sender
	if err := nsdo.Do(topo.Online.Name, func() (err error) { s, err = Open(); return err }); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []struct{ name, src, dst string }{
		{"ipv4", "192.0.2.10:40000", netip.AddrPortFrom(topo.Target.OnlineV4, 8080).String()},
		{"ipv6", "[2001:db8:1::10]:40000", netip.AddrPortFrom(topo.Target.OnlineV6, 8080).String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkt := synPacket(t, tc.src, tc.dst)
			if err := s.Send(pkt); err != nil {
				t.Fatal(err)
			}
			expect(t, src, pkt)
		})
	}
	t.Run("too big", func(t *testing.T) {
		f := ipmangle.Fields{
			Src: netip.MustParseAddrPort("192.0.2.10:40000"), Dst: netip.AddrPortFrom(topo.Target.OnlineV4, 8080),
			Flags: ipmangle.ACK, WScale: -1, DontFragment: true, Payload: make([]byte, 3000),
		}
		b := make([]byte, f.Len())
		f.Encode(b)
		if err := s.Send(b); !errors.Is(err, ErrTooBig) {
			t.Errorf("Send of 3 kB over a 1500 MTU = %v, want ErrTooBig", err)
		}
	})
	t.Run("allocs", func(t *testing.T) {
		pkt := synPacket(t, "192.0.2.10:40001", netip.AddrPortFrom(topo.Target.OnlineV4, 8080).String())
		if a := testing.AllocsPerRun(100, func() { s.Send(pkt) }); a != 0 {
			t.Errorf("Send allocates %v times", a)
		}
	})
}

func TestLinkSender(t *testing.T) {
	topo := lab(t)
	src := listen(t, topo)
	var onlineMAC, targetMAC net.HardwareAddr
	if err := nsdo.Do(topo.Target.Name, func() error {
		ifi, err := net.InterfaceByName(topo.Target.OnlineIf)
		if err == nil {
			targetMAC = ifi.HardwareAddr
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var s *LinkSender
	err := nsdo.Do(topo.Online.Name, func() error {
		ifi, err := net.InterfaceByName(topo.Online.TargetIf)
		if err != nil {
			return err
		}
		onlineMAC = ifi.HardwareAddr
		s, err = OpenLink(topo.Online.TargetIf, []LinkRoute{
			{Dst: topo.Target.OnlineV4, SrcMAC: onlineMAC, DstMAC: targetMAC},
			{Dst: topo.Target.OnlineV6, SrcMAC: onlineMAC, DstMAC: targetMAC},
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []struct{ name, src, dst string }{
		{"ipv4", "192.0.2.10:40002", netip.AddrPortFrom(topo.Target.OnlineV4, 8080).String()},
		{"ipv6", "[2001:db8:1::10]:40002", netip.AddrPortFrom(topo.Target.OnlineV6, 8080).String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkt := synPacket(t, tc.src, tc.dst)
			if err := s.Send(pkt); err != nil {
				t.Fatal(err)
			}
			expect(t, src, pkt)
		})
	}
	if err := s.Send(synPacket(t, "192.0.2.10:1", "203.0.113.99:80")); !errors.Is(err, ErrNoLinkRoute) {
		t.Errorf("Send to an unknown destination = %v, want ErrNoLinkRoute", err)
	}
	pkt := synPacket(t, "192.0.2.10:40003", netip.AddrPortFrom(topo.Target.OnlineV4, 8080).String())
	if a := testing.AllocsPerRun(100, func() { s.Send(pkt) }); a != 0 {
		t.Errorf("LinkSender.Send allocates %v times", a)
	}
}

// TestBatcher sends a batch mixing IPv4, IPv6 and packets that cannot go
// (too big, malformed): those are reported with their error, every other
// one arrives, in order.
func TestBatcher(t *testing.T) {
	topo := lab(t)
	src := listen(t, topo)
	var s *Sender
	if err := nsdo.Do(topo.Online.Name, func() (err error) { s, err = Open(); return err }); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dst4 := netip.AddrPortFrom(topo.Target.OnlineV4, 8080).String()
	dst6 := netip.AddrPortFrom(topo.Target.OnlineV6, 8080).String()
	big := ipmangle.Fields{
		Src: netip.MustParseAddrPort("192.0.2.10:41000"), Dst: netip.AddrPortFrom(topo.Target.OnlineV4, 8080),
		Flags: ipmangle.ACK, WScale: -1, DontFragment: true, Payload: make([]byte, 3000),
	}
	bigPkt := make([]byte, big.Len())
	big.Encode(bigPkt)
	good := [][]byte{
		synPacket(t, "192.0.2.10:41001", dst4),
		synPacket(t, "192.0.2.10:41002", dst4),
		synPacket(t, "[2001:db8:1::10]:41003", dst6),
		synPacket(t, "192.0.2.10:41004", dst4),
		synPacket(t, "192.0.2.10:41005", dst4),
	}
	batch := [][]byte{good[0], good[1], bigPkt, good[2], {0x45, 1, 2}, good[3], good[4]}
	type failure struct {
		n   int
		err error
	}
	var failed []failure
	b := s.NewBatcher(3) // smaller than the batch: several system calls
	sent := b.Send(batch, func(pkt []byte, err error) { failed = append(failed, failure{len(pkt), err}) })
	if sent != len(good) {
		t.Errorf("sent %d, want %d", sent, len(good))
	}
	if len(failed) != 2 || !errors.Is(failed[0].err, ErrTooBig) || failed[0].n != len(bigPkt) ||
		!errors.Is(failed[1].err, ErrMalformed) || failed[1].n != 3 {
		t.Errorf("failures %+v, want the big packet (ErrTooBig), then the malformed one", failed)
	}
	expectAll(t, src, good)
	pkts := [][]byte{synPacket(t, "192.0.2.10:41006", dst4), synPacket(t, "[2001:db8:1::10]:41007", dst6)}
	fail := func([]byte, error) { t.Error("send failed") }
	if a := testing.AllocsPerRun(100, func() { b.Send(pkts, fail) }); a != 0 {
		t.Errorf("Batcher.Send allocates %v times", a)
	}
}

// expectAll reads from src until every packet of want (by source) has
// arrived, and checks they came in order and unchanged (IPv4 header
// checksum included).
func expectAll(t *testing.T, src *capture.Source, want [][]byte) {
	t.Helper()
	bySrc := map[netip.AddrPort]int{}
	for i, w := range want {
		var p ipmangle.Parsed
		p.Decode(w)
		bySrc[p.Src] = i
	}
	next := 0
	pkts := make([]capture.Packet, 16)
	deadline := time.Now().Add(5 * time.Second)
	for next < len(want) && time.Now().Before(deadline) {
		n, err := src.ReadBatch(pkts)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pkts[:n] {
			var gp ipmangle.Parsed
			gp.Decode(p.Data)
			i, ok := bySrc[gp.Src]
			if !gp.Valid || !ok {
				continue
			}
			if i != next {
				t.Fatalf("packet %d from %v arrived when %d was due", i, gp.Src, next)
			}
			var wp ipmangle.Parsed
			wp.Decode(want[i])
			if gp.Dst != wp.Dst || !bytes.Equal(p.Data[gp.TCPOffset:gp.TotalLen], want[i][wp.TCPOffset:wp.TotalLen]) {
				t.Fatalf("packet %d: received % x\nwant     % x", i, p.Data, want[i])
			}
			if gp.IPVersion == 4 && ipmangle.Checksum(p.Data[:gp.IPHeaderLen], 0) != 0 {
				t.Fatalf("packet %d: IPv4 header checksum wrong on the wire", i)
			}
			next++
		}
	}
	if next < len(want) {
		t.Fatalf("received %d of %d packets", next, len(want))
	}
}

// TestCloseWhileSending closes a Sender while goroutines send through it
// and its Batchers: sends under way finish, later ones fail with
// ErrClosed, and no send reaches a descriptor after Close (run with
// -race: the read lock orders them).
func TestCloseWhileSending(t *testing.T) {
	topo := lab(t)
	var s *Sender
	if err := nsdo.Do(topo.Online.Name, func() (err error) { s, err = Open(); return err }); err != nil {
		t.Fatal(err)
	}
	pkt := synPacket(t, "192.0.2.10:40000", netip.AddrPortFrom(topo.Target.OnlineV4, 8080).String())
	done := make(chan error, 4)
	for i := range 4 {
		go func() {
			b := s.NewBatcher(4)
			for {
				var err error
				if i%2 == 0 {
					err = s.Send(pkt)
				} else {
					b.Send([][]byte{pkt, pkt}, func(_ []byte, e error) { err = e })
				}
				if err != nil {
					done <- err
					return
				}
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if err := <-done; !errors.Is(err, ErrClosed) {
			t.Errorf("send after Close = %v, want ErrClosed", err)
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

// TestPathMTU reads the route's MTU toward a destination, and the lower
// MTU of a route that has one.
func TestPathMTU(t *testing.T) {
	topo := lab(t)
	ctx := t.Context()
	if _, err := topo.Run(ctx, netlab.Online, "ip", "route", "add", "203.0.113.99/32", "via", topo.Target.OnlineV4.String(), "mtu", "1400"); err != nil {
		t.Fatal(err)
	}
	var s *Sender
	if err := nsdo.Do(topo.Online.Name, func() (err error) { s, err = Open(); return err }); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []struct {
		dst  netip.Addr
		want int
	}{
		{topo.Target.OnlineV4, 1500},
		{topo.Target.OnlineV6, 1500},
		{netip.MustParseAddr("203.0.113.99"), 1400},
		{netip.MustParseAddr("192.0.2.200"), 1500},   // on the client-side link
		{netip.MustParseAddr("2001:db8:ffff::1"), 0}, // no route
	} {
		var got int
		if err := nsdo.Do(topo.Online.Name, func() error { got = s.PathMTU(tc.dst); return nil }); err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("PathMTU(%v) = %d, want %d", tc.dst, got, tc.want)
		}
	}
}
