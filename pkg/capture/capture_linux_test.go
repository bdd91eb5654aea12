package capture_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/tcpcopy-go/tcpcopy/pkg/bpfgen"
	"github.com/tcpcopy-go/tcpcopy/pkg/capture"
)

// watchdog bounds every blocking read: a test that waits longer has failed.
const watchdog = 5 * time.Second

// open opens a capture inside ns, closed by t.Cleanup.
func open(t testing.TB, ns netns, cfg capture.Config) *capture.Source {
	t.Helper()
	var src *capture.Source
	ns.do(t, func() error {
		var err error
		src, err = capture.Open(cfg)
		return err
	})
	t.Cleanup(func() {
		if err := src.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return src
}

func inbound(t testing.TB, ms ...bpfgen.Match) []bpf.RawInstruction {
	t.Helper()
	prog, err := bpfgen.Inbound(ms)
	if err != nil {
		t.Fatal(err)
	}
	return prog
}

// record is a captured packet copied out of the ring.
type record struct {
	data     []byte
	len      int
	time     time.Time
	ifindex  int
	outgoing bool
}

// tcpPorts returns the TCP source and destination ports of an IP packet
// without IPv4 options or IPv6 extension headers.
func tcpPorts(b []byte) (sport, dport uint16) {
	off := 40
	if b[0]>>4 == 4 {
		off = int(b[0]&0xf) * 4
	}
	if len(b) < off+4 {
		return 0, 0
	}
	return binary.BigEndian.Uint16(b[off:]), binary.BigEndian.Uint16(b[off+2:])
}

// readUntil reads from src until last returns true for a packet, and
// returns the packets read, that one included. The read fails the test
// after the watchdog.
func readUntil(t testing.TB, src *capture.Source, last func(capture.Packet) bool) []record {
	t.Helper()
	var expired atomic.Bool
	tm := time.AfterFunc(watchdog, func() {
		expired.Store(true)
		src.Close()
	})
	defer tm.Stop()
	var out []record
	pkts := make([]capture.Packet, 8)
	for {
		n, err := src.ReadBatch(pkts)
		if err != nil {
			if expired.Load() {
				t.Fatalf("no final packet within %v; read %d packets", watchdog, len(out))
			}
			t.Fatalf("ReadBatch: %v", err)
		}
		for _, p := range pkts[:n] {
			out = append(out, record{bytes.Clone(p.Data), p.Len, p.Time, p.Ifindex, p.Outgoing})
			if last(p) {
				return out
			}
		}
	}
}

// bySport returns a predicate matching the TCP source port.
func bySport(port uint16) func(capture.Packet) bool {
	return func(p capture.Packet) bool {
		s, _ := tcpPorts(p.Data)
		return s == port
	}
}

func TestCaptureIPv4AndIPv6(t *testing.T) {
	p := newPair(t)
	src := open(t, p.a, capture.Config{Interface: "vA", IgnoreOutgoing: true})
	vA := p.a.ifindex(t, "vA")
	in := newInjector(t, p.b, "vB")

	v4 := frame{Src: client4, Dst: server4, Proto: 6, SPort: 1001, DPort: 80, IPOpts: 4, Payload: 100}.Bytes()
	v6 := frame{Src: client6, Dst: server6, Proto: 6, SPort: 1002, DPort: 80, Payload: 7}.Bytes()
	arp := unhex(t, "020000000001 020000000002 0806 | 0001 0800 0604 0001 020000000002 c0000202 000000000000 c0000201")
	t0 := time.Now()
	in.send(t, v4, arp, v6)

	got := readUntil(t, src, bySport(1002))
	var mine []record
	for _, r := range got {
		if s, _ := tcpPorts(r.data); s == 1001 || s == 1002 {
			mine = append(mine, r)
		}
	}
	if len(mine) != 2 {
		t.Fatalf("captured %d of the 2 TCP packets (of %d in all)", len(mine), len(got))
	}
	for i, want := range [][]byte{v4[14:], v6[14:]} {
		r := mine[i]
		if !bytes.Equal(r.data, want) {
			t.Errorf("packet %d: Data\n% x\nwant\n% x", i, r.data, want)
		}
		if r.len != len(want) {
			t.Errorf("packet %d: Len %d, want %d", i, r.len, len(want))
		}
		if r.ifindex != vA {
			t.Errorf("packet %d: Ifindex %d, want vA's %d", i, r.ifindex, vA)
		}
		if r.outgoing {
			t.Errorf("packet %d: Outgoing", i)
		}
		if r.time.Before(t0.Add(-time.Second)) || r.time.After(time.Now().Add(time.Second)) {
			t.Errorf("packet %d: Time %v, sent at %v", i, r.time, t0)
		}
	}
	if st := src.Stats(); st.Skipped < 1 {
		t.Errorf("Stats %+v: the ARP frame is not counted as skipped", st)
	}
}

func TestFilter(t *testing.T) {
	p := newPair(t)
	matches := []bpfgen.Match{{Addr: server4, Port: 80}, {Addr: server6, Port: 443}}
	src := open(t, p.a, capture.Config{Interface: "vA", Filter: inbound(t, matches...)})
	in := newInjector(t, p.b, "vB")

	frames := []struct {
		f    frame
		want bool
	}{
		{frame{Src: client4, Dst: server4, Proto: 6, SPort: 2001, DPort: 80}, true},
		{frame{Src: client4, Dst: server4, Proto: 6, SPort: 2002, DPort: 81}, false},
		{frame{Src: client4, Dst: netip.MustParseAddr("192.0.2.99"), Proto: 6, SPort: 2003, DPort: 80}, false},
		{frame{Src: client4, Dst: server4, Proto: 17, SPort: 2004, DPort: 80}, false},
		{frame{Src: client4, Dst: server4, Proto: 6, SPort: 2005, DPort: 80, FragOff: 10}, false},
		{frame{Src: client4, Dst: server4, Proto: 6, SPort: 2006, DPort: 80, IPOpts: 20}, true},
		{frame{Src: client6, Dst: server6, Proto: 6, SPort: 2007, DPort: 443}, true},
		{frame{Src: client6, Dst: server6, Proto: 6, SPort: 2008, DPort: 80}, false},
		{frame{Src: client4, Dst: server4, Proto: 6, SPort: 2009, DPort: 80, Payload: 1400}, true},
	}
	var want []uint16
	for _, f := range frames {
		in.send(t, f.f.Bytes())
		if f.want {
			want = append(want, f.f.SPort)
		}
	}
	got := readUntil(t, src, bySport(2009))
	var gotPorts []uint16
	for _, r := range got {
		s, _ := tcpPorts(r.data)
		gotPorts = append(gotPorts, s)
	}
	if !slicesEqual(gotPorts, want) {
		t.Fatalf("captured source ports %v, want %v", gotPorts, want)
	}
	if st := src.Stats(); st.Packets != uint64(len(want)) || st.Drops != 0 {
		t.Errorf("Stats %+v, want %d packets and no drops", st, len(want))
	}
}

func slicesEqual[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSnapLen(t *testing.T) {
	p := newPair(t)
	const snap = 100
	src := open(t, p.a, capture.Config{Interface: "vA", SnapLen: snap, Filter: inbound(t, bpfgen.Match{Port: 80})})
	in := newInjector(t, p.b, "vB")
	f := frame{Src: client4, Dst: server4, Proto: 6, SPort: 3001, DPort: 80, Payload: 1000}.Bytes()
	in.send(t, f)
	r := readUntil(t, src, bySport(3001))[0]
	if want := snap - 14; len(r.data) != want {
		t.Errorf("captured %d bytes of IP packet, want %d", len(r.data), want)
	}
	if want := len(f) - 14; r.len != want {
		t.Errorf("Len %d, want %d", r.len, want)
	}
	if !bytes.Equal(r.data, f[14:snap]) {
		t.Errorf("captured bytes differ from the sent ones")
	}
}

func TestIgnoreOutgoing(t *testing.T) {
	p := newPair(t)
	filter := inbound(t, bpfgen.Match{Port: 80}, bpfgen.Match{Port: 81})
	all := open(t, p.a, capture.Config{Interface: "vA", Filter: filter})
	incoming := open(t, p.a, capture.Config{Interface: "vA", Filter: filter, IgnoreOutgoing: true})
	out := newInjector(t, p.a, "vA") // sends from A: outgoing on vA
	in := newInjector(t, p.b, "vB")

	out.send(t, frame{Src: server4, Dst: peer4, Proto: 6, SPort: 4001, DPort: 81}.Bytes())
	in.send(t, frame{Src: client4, Dst: server4, Proto: 6, SPort: 4002, DPort: 80}.Bytes())

	got := readUntil(t, all, bySport(4002))
	if len(got) != 2 || !got[0].outgoing || got[1].outgoing {
		t.Errorf("without IgnoreOutgoing: %d packets (want the outgoing then the incoming one): %+v", len(got), got)
	}
	got = readUntil(t, incoming, bySport(4002))
	if len(got) != 1 {
		t.Errorf("with IgnoreOutgoing: %d packets, want only the incoming one", len(got))
	}
}

func TestTCPHandshake(t *testing.T) {
	p := newPair(t)
	src := open(t, p.a, capture.Config{Interface: "vA", IgnoreOutgoing: true, Filter: inbound(t, bpfgen.Match{Addr: server4, Port: 8080})})
	var ln net.Listener
	p.a.do(t, func() error {
		var err error
		ln, err = net.Listen("tcp4", "192.0.2.1:8080")
		return err
	})
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	var conn net.Conn
	p.b.do(t, func() error {
		var err error
		conn, err = net.DialTimeout("tcp4", "192.0.2.1:8080", watchdog)
		return err
	})
	defer conn.Close()
	clientPort := uint16(conn.LocalAddr().(*net.TCPAddr).Port)

	r := readUntil(t, src, bySport(clientPort))[0]
	b := r.data
	if len(b) < 40 {
		t.Fatalf("SYN of %d bytes", len(b))
	}
	ihl := int(b[0]&0xf) * 4
	switch {
	case b[0]>>4 != 4:
		t.Errorf("IP version %d", b[0]>>4)
	case b[9] != 6:
		t.Errorf("protocol %d, want TCP", b[9])
	case netip.AddrFrom4([4]byte(b[12:16])) != peer4 || netip.AddrFrom4([4]byte(b[16:20])) != server4:
		t.Errorf("addresses %v -> %v", netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20])))
	case binary.BigEndian.Uint16(b[ihl+2:]) != 8080:
		t.Errorf("destination port %d", binary.BigEndian.Uint16(b[ihl+2:]))
	case b[ihl+13]&0x12 != 0x02:
		t.Errorf("first packet has TCP flags %#02x, want SYN", b[ihl+13])
	case int(binary.BigEndian.Uint16(b[2:])) != r.len:
		t.Errorf("IP total length %d, Len %d", binary.BigEndian.Uint16(b[2:]), r.len)
	}
}

func TestBlockTimeoutDeliversAlonePacket(t *testing.T) {
	p := newPair(t)
	src := open(t, p.a, capture.Config{Interface: "vA", Filter: inbound(t, bpfgen.Match{Port: 80})})
	in := newInjector(t, p.b, "vB")
	start := time.Now()
	in.send(t, frame{Src: client4, Dst: server4, Proto: 6, SPort: 5001, DPort: 80}.Bytes())
	readUntil(t, src, bySport(5001))
	// A 1 ms block timeout is a few ms with jiffies; the kernel's default
	// for veth is 8 ms and gopacket's 64 ms. Machines are noisy: only
	// assert it is far from a stuck block.
	d := time.Since(start)
	t.Logf("a lone packet took %v to be read", d)
	if d > time.Second {
		t.Errorf("a lone packet took %v", d)
	}
}

func TestCloseUnblocksReader(t *testing.T) {
	p := newPair(t)
	var src *capture.Source
	p.a.do(t, func() error {
		var err error
		src, err = capture.Open(capture.Config{Interface: "vA", Filter: inbound(t, bpfgen.Match{Port: 9})})
		return err
	})
	errc := make(chan error, 1)
	go func() {
		_, err := src.ReadBatch(make([]capture.Packet, 4))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond) // let the reader block in poll
	start := time.Now()
	if err := src.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, capture.ErrClosed) {
			t.Fatalf("blocked ReadBatch returned %v, want ErrClosed", err)
		}
		t.Logf("Close returned and the reader unblocked within %v", time.Since(start))
	case <-time.After(watchdog):
		t.Fatal("Close did not unblock ReadBatch")
	}
	if err := src.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := src.ReadBatch(make([]capture.Packet, 1)); !errors.Is(err, capture.ErrClosed) {
		t.Errorf("ReadBatch after Close: %v, want ErrClosed", err)
	}
	_ = src.Stats()
}

// TestCloseWithBatchOutstanding closes while the reader still holds a
// batch: its Data stays readable until the next ReadBatch.
func TestCloseWithBatchOutstanding(t *testing.T) {
	p := newPair(t)
	var src *capture.Source
	p.a.do(t, func() error {
		var err error
		src, err = capture.Open(capture.Config{Interface: "vA", Filter: inbound(t, bpfgen.Match{Port: 80})})
		return err
	})
	in := newInjector(t, p.b, "vB")
	f := frame{Src: client4, Dst: server4, Proto: 6, SPort: 6001, DPort: 80}.Bytes()
	in.send(t, f)
	pkts := make([]capture.Packet, 4)
	n, err := src.ReadBatch(pkts)
	if err != nil || n != 1 {
		t.Fatalf("ReadBatch = %d, %v", n, err)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pkts[0].Data, f[14:]) {
		t.Error("batch data changed by Close")
	}
	if _, err := src.ReadBatch(pkts); !errors.Is(err, capture.ErrClosed) {
		t.Errorf("ReadBatch after Close: %v, want ErrClosed", err)
	}
	if st := src.Stats(); st.Packets != 1 {
		t.Errorf("Stats after Close: %+v, want 1 packet", st)
	}
}

func TestDropsCounted(t *testing.T) {
	p := newPair(t)
	page := unix.Getpagesize()
	src := open(t, p.a, capture.Config{Interface: "vA", BlockSize: page, NumBlocks: 2, Filter: inbound(t, bpfgen.Match{Port: 80})})
	in := newInjector(t, p.b, "vB")
	const sent = 200
	f := frame{Src: client4, Dst: server4, Proto: 6, SPort: 7001, DPort: 80, Payload: 200}.Bytes()
	for range sent {
		in.send(t, f)
	}
	st := waitPackets(t, src, sent)
	if st.Drops == 0 || st.Packets != sent {
		t.Errorf("Stats %+v after %d packets into a ring of 2 pages, want %d packets and some drops", st, sent, sent)
	}
}

// waitPackets polls Stats until the kernel has accepted n packets.
func waitPackets(t testing.TB, src *capture.Source, n uint64) capture.Stats {
	t.Helper()
	deadline := time.Now().Add(watchdog)
	for {
		st := src.Stats()
		if st.Packets >= n {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("Stats %+v: fewer than %d packets within %v", st, n, watchdog)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestReadBatchAllocs: reading allocates nothing, whether the packets
// wait in the ring or ReadBatch finds it empty and parks in the runtime's
// poller until the kernel retires the block with the one packet in it.
func TestReadBatchAllocs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		waiting bool // inject one packet before each call, else all before
	}{{"ready", false}, {"waiting", true}} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t)
			src := open(t, p.a, capture.Config{Interface: "vA", Filter: inbound(t, bpfgen.Match{Port: 80})})
			in := newInjector(t, p.b, "vB")
			const runs = 50
			f := frame{Src: client4, Dst: server4, Proto: 6, SPort: 8001, DPort: 80, Payload: 100}.Bytes()
			if !tc.waiting {
				for range runs + 10 {
					in.send(t, f)
				}
				waitPackets(t, src, runs+10)
			}
			pkts := make([]capture.Packet, 1)
			read := 0
			allocs := testing.AllocsPerRun(runs, func() {
				if tc.waiting {
					in.send(t, f)
				}
				n, err := src.ReadBatch(pkts)
				if err != nil {
					t.Fatal(err)
				}
				read += n
			})
			if read != runs+1 {
				t.Errorf("read %d packets in %d calls", read, runs+1)
			}
			if allocs != 0 {
				t.Errorf("ReadBatch: %v allocs per call, want 0", allocs)
			}
		})
	}
}

// TestInterfaceDown: a reader waiting on an interface that goes down gets
// an error wrapping ENETDOWN, and reads on once the interface is back up.
func TestInterfaceDown(t *testing.T) {
	p := newPair(t)
	src := open(t, p.a, capture.Config{Interface: "vA", Filter: inbound(t, bpfgen.Match{Port: 80})})
	errc := make(chan error, 1)
	go func() {
		_, err := src.ReadBatch(make([]capture.Packet, 4))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond) // let the reader park
	ip(t, "-n", p.a.name, "link", "set", "vA", "down")
	select {
	case err := <-errc:
		if !errors.Is(err, unix.ENETDOWN) {
			t.Fatalf("ReadBatch returned %v, want ENETDOWN", err)
		}
	case <-time.After(watchdog):
		t.Fatal("ReadBatch did not return when the interface went down")
	}
	ip(t, "-n", p.a.name, "link", "set", "vA", "up")
	in := newInjector(t, p.b, "vB")
	go func() {
		n, err := src.ReadBatch(make([]capture.Packet, 4))
		if err == nil && n == 0 {
			err = errors.New("ReadBatch returned no packet")
		}
		errc <- err
	}()
	// Frames sent before the carrier is back are lost: send until one
	// arrives.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(watchdog)
	for {
		in.send(t, frame{Src: client4, Dst: server4, Proto: 6, SPort: 5003, DPort: 80}.Bytes())
		select {
		case err := <-errc:
			if err != nil {
				t.Fatalf("after the interface came back up: %v", err)
			}
			return
		case <-tick.C:
		case <-timeout:
			t.Fatal("no packet read after the interface came back up")
		}
	}
}

func TestAnyInterface(t *testing.T) {
	// Outgoing packets kept or not, a loopback packet is taken once.
	for _, ignore := range []bool{true, false} {
		t.Run(fmt.Sprintf("IgnoreOutgoing=%v", ignore), func(t *testing.T) { testAnyInterface(t, ignore) })
	}
}

func testAnyInterface(t *testing.T, ignoreOutgoing bool) {
	p := newPair(t)
	// No filter: only the link-type guard decides what a tun device gets.
	src := open(t, p.a, capture.Config{Interface: "any", IgnoreOutgoing: ignoreOutgoing})
	tun := newTun(t, p.a, "tcgtun0")
	tunIdx, loIdx, vAIdx := p.a.ifindex(t, "tcgtun0"), p.a.ifindex(t, "lo"), p.a.ifindex(t, "vA")
	lo := newInjector(t, p.a, "lo")
	in := newInjector(t, p.b, "vB")

	// A bare IPv4 packet arriving on the tun device.
	tunPkt := frame{Src: client4, Dst: netip.MustParseAddr("203.0.113.9"), Proto: 6, SPort: 9001, DPort: 80}.Bytes()[14:]
	if _, err := tun.Write(tunPkt); err != nil {
		t.Fatalf("write to tun: %v", err)
	}
	// Not addressed to A: dropped by its stack without any reply.
	other := netip.MustParseAddr("198.51.100.99")
	loFrame := frame{Src: client4, Dst: other, Proto: 6, SPort: 9002, DPort: 80}.Bytes()
	lo.send(t, loFrame)
	in.send(t, frame{Src: client4, Dst: other, Proto: 6, SPort: 9003, DPort: 80}.Bytes())

	got := readUntil(t, src, bySport(9003))
	seen := map[uint16]int{}
	for _, r := range got {
		s, _ := tcpPorts(r.data)
		if r.ifindex == tunIdx {
			t.Errorf("packet from the tun device captured: % x", r.data)
		}
		switch s {
		case 9002:
			if r.ifindex != loIdx || !bytes.Equal(r.data, loFrame[14:]) {
				t.Errorf("loopback packet: ifindex %d (lo %d), data % x", r.ifindex, loIdx, r.data)
			}
		case 9003:
			if r.ifindex != vAIdx {
				t.Errorf("veth packet: ifindex %d, want %d", r.ifindex, vAIdx)
			}
		}
		seen[s]++
	}
	if seen[9001] != 0 || seen[9002] != 1 || seen[9003] != 1 {
		t.Errorf("packets by source port: %v, want none from the tun device and one each from lo and vA", seen)
	}
	if st := src.Stats(); st.Skipped != 0 {
		t.Errorf("Stats %+v: the tun packet reached the ring instead of being dropped by the kernel guard", st)
	}
}

func TestFanout(t *testing.T) {
	p := newPair(t)
	cfg := capture.Config{Interface: "vA", FanoutGroup: 0x7c01, Filter: inbound(t, bpfgen.Match{Port: 80})}
	s1, s2 := open(t, p.a, cfg), open(t, p.a, cfg)
	in := newInjector(t, p.b, "vB")
	const flows = 32
	for i := range flows {
		in.send(t, frame{Src: client4, Dst: server4, Proto: 6, SPort: uint16(10000 + i), DPort: 80}.Bytes())
	}
	deadline := time.Now().Add(watchdog)
	for {
		a, b := s1.Stats().Packets, s2.Stats().Packets
		if a+b == flows {
			t.Logf("fanout split %d flows %d/%d", flows, a, b)
			break
		}
		if a+b > flows || time.Now().After(deadline) {
			t.Fatalf("fanout members saw %d + %d packets of %d", a, b, flows)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestOpenErrors(t *testing.T) {
	p := newPair(t)
	newTun(t, p.a, "tcgtun1")
	ip(t, "-n", p.a.name, "link", "add", "vDown", "type", "veth", "peer", "name", "vDown2")
	tooLong := make([]bpf.RawInstruction, 4096)
	for i := range tooLong {
		tooLong[i] = bpf.RawInstruction{Op: unix.BPF_RET | unix.BPF_K, K: 1}
	}
	tests := []struct {
		name string
		cfg  capture.Config
		want []string
	}{
		{"no such interface", capture.Config{Interface: "tcgnone0"}, []string{"capture: open on tcgnone0:", "no such network interface"}},
		{"interface down", capture.Config{Interface: "vDown"}, []string{"vDown", "interface is down"}},
		{"not ethernet", capture.Config{Interface: "tcgtun1"}, []string{"tcgtun1", "not supported"}},
		{"jump out of program", capture.Config{Interface: "vA", Filter: []bpf.RawInstruction{
			{Op: unix.BPF_JMP | unix.BPF_JA, K: 5},
			{Op: unix.BPF_RET | unix.BPF_K, K: 1},
		}}, []string{"attach filter (2 instructions, rejected by the kernel's BPF checker) on vA", "setsockopt SO_ATTACH_FILTER: invalid argument"}},
		{"no return", capture.Config{Filter: []bpf.RawInstruction{{Op: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}}}, []string{"on any", "invalid argument"}},
		{"too long with guard", capture.Config{Filter: tooLong}, []string{"exceeds the kernel limit of 4096"}},
		{"bad block size", capture.Config{Interface: "vA", BlockSize: 1000}, []string{"block size 1000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			p.a.do(t, func() error {
				var src *capture.Source
				src, err = capture.Open(tt.cfg)
				if err == nil {
					src.Close()
				}
				return nil
			})
			if err == nil {
				t.Fatal("Open succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			t.Log(err)
		})
	}
}

func BenchmarkReadBatch(b *testing.B) {
	p := newPair(b)
	src := open(b, p.a, capture.Config{Interface: "vA", Filter: inbound(b, bpfgen.Match{Port: 80})})
	in := newInjector(b, p.b, "vB")
	f := frame{Src: client4, Dst: server4, Proto: 6, SPort: 8001, DPort: 80, Payload: 100}.Bytes()
	const chunk = 256
	pkts := make([]capture.Packet, 64)
	var (
		total   uint64
		reading time.Duration
	)
	b.ReportAllocs()
	// The benchmark timer runs throughout, waits included, so that b.N
	// stays small (each round waits 10 ms for the kernel to hand the block
	// over); the figure is ns/pkt, the time spent in ReadBatch alone.
	// allocs/op counts the round's injection and waiting too; ReadBatch's
	// own are asserted by TestReadBatchAllocs (none).
	for b.Loop() {
		for range chunk {
			in.send(b, f)
		}
		total += chunk
		waitPackets(b, src, total)
		time.Sleep(10 * time.Millisecond) // the block timeout hands the block over
		start := time.Now()
		for read := 0; read < chunk; {
			n, err := src.ReadBatch(pkts)
			if err != nil {
				b.Fatal(err)
			}
			read += n
		}
		reading += time.Since(start)
	}
	b.ReportMetric(float64(reading.Nanoseconds())/float64(total), "ns/pkt")
}

// TestSmallRing reads batches that span every block of a small ring, in
// rounds, checking that each packet arrives once and in order.
func TestSmallRing(t *testing.T) {
	p := newPair(t)
	src := open(t, p.a, capture.Config{Interface: "vA", BlockSize: unix.Getpagesize(), NumBlocks: 4, Filter: inbound(t, bpfgen.Match{Port: 80})})
	in := newInjector(t, p.b, "vB")
	pkts := make([]capture.Packet, 64)
	var sent, delivered uint64
	last := -1
	for round := range 5 {
		for range 50 {
			in.send(t, frame{Src: client4, Dst: server4, Proto: 6, SPort: uint16(sent), DPort: 80, Payload: 100}.Bytes())
			sent++
		}
		st := waitPackets(t, src, sent)
		deadline := time.Now().Add(watchdog)
		for delivered < st.Packets-st.Drops {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: delivered %d, want %d (%+v)", round, delivered, st.Packets-st.Drops, st)
			}
			n, err := src.ReadBatch(pkts)
			if err != nil {
				t.Fatal(err)
			}
			for _, pk := range pkts[:n] {
				s, _ := tcpPorts(pk.Data)
				if int(s) <= last {
					t.Fatalf("round %d: source port %d after %d", round, s, last)
				}
				last = int(s)
				delivered++
			}
		}
		t.Logf("round %d: %+v", round, st)
	}
	if delivered == 0 || last < 0 {
		t.Fatal("nothing delivered")
	}
}
