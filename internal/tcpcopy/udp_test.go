package tcpcopy

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"

	"github.com/tcpcopy-go/tcpcopy/pkg/datagram"
	"github.com/tcpcopy-go/tcpcopy/pkg/inject"
	"github.com/tcpcopy-go/tcpcopy/pkg/ipfrag"
	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
)

// udpSender records the packets sent, copied. With refuseAbove it
// refuses longer ones as too big and reports that as the path MTU, as
// inject.Sender does.
type udpSender struct {
	mu          sync.Mutex
	pkts        [][]byte
	refuseAbove int
	mute        bool // PathMTU cannot tell
	n           int  // packets sent, when keep is false
	keep        bool
}

func (s *udpSender) Send(pkt []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refuseAbove > 0 && len(pkt) > s.refuseAbove {
		return inject.ErrTooBig
	}
	s.n++
	if s.keep {
		s.pkts = append(s.pkts, append([]byte(nil), pkt...))
	}
	return nil
}

func (s *udpSender) PathMTU(netip.Addr) int {
	if s.mute {
		return 0
	}
	return s.refuseAbove
}

// datagrams reassembles what was sent into whole datagrams, checking
// every fragment's size against mtu.
func (s *udpSender) datagrams(t *testing.T, mtu int) [][]byte {
	t.Helper()
	r := ipfrag.New(ipfrag.Config{})
	var out [][]byte
	buf := make([]byte, ipfrag.MaxDatagramLen)
	for _, p := range s.pkts {
		if len(p) > mtu {
			t.Fatalf("sent %d bytes, MTU %d", len(p), mtu)
		}
		var f ipfrag.Fragment
		switch f.Decode(p) {
		case ipfrag.NotFragment:
			out = append(out, p)
		case ipfrag.IsFragment:
			if n, res := r.Add(&f, p, 0, buf); res == ipfrag.Complete {
				out = append(out, append([]byte(nil), buf[:n]...))
			}
		default:
			t.Fatalf("sent a broken fragment % x", p[:40])
		}
	}
	if st := r.Stats(); st.Pending != 0 {
		t.Fatalf("%d datagrams sent incomplete", st.Pending)
	}
	return out
}

var (
	dnsOnline4 = netip.MustParseAddrPort("192.0.2.1:53")
	dnsTarget4 = netip.MustParseAddrPort("203.0.113.20:5353")
	dnsClient4 = netip.MustParseAddrPort("198.51.100.7:40000")
	dnsOnline6 = netip.MustParseAddrPort("[2001:db8::1]:53")
	dnsTarget6 = netip.MustParseAddrPort("[2001:db8::20]:5353")
	dnsClient6 = netip.MustParseAddrPort("[2001:db8:1::7]:40000")
)

// udpEngine returns an engine with UDP mappings for port 53 (IPv4 and
// IPv6) and a TCP mapping for port 80, changed by mod, sending to a
// recording sender.
func udpEngine(t testing.TB, mod func(*Config)) (*engine, *udpSender, *batch) {
	cfg := Default()
	cfg.Mappings = []Mapping{
		{Proto: ProtoUDP, Online: dnsOnline4, Target: dnsTarget4},
		{Proto: ProtoUDP, Online: dnsOnline6, Target: dnsTarget6},
		{Online: netip.MustParseAddrPort("192.0.2.1:80"), Target: netip.MustParseAddrPort("203.0.113.20:8080")},
	}
	cfg.Intercepts = []netip.AddrPort{netip.MustParseAddrPort("198.51.100.130:36524")}
	if mod != nil {
		mod(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	snd := &udpSender{keep: true}
	e := newEngine(&cfg, snd, slog.New(slog.DiscardHandler))
	for _, w := range e.disp.workers {
		w.links = acceptRoutes{}
	}
	return e, snd, e.disp.newBatch()
}

// query builds a DNS-like datagram of n payload bytes from client to
// server, as a client's kernel sends it (DF, TTL 64).
func query(client, server netip.AddrPort, n int) []byte {
	f := datagram.Fields{Src: client, Dst: server, TTL: 64, ID: 0x4d2e, DontFragment: true, Payload: make([]byte, n)}
	for i := range f.Payload {
		f.Payload[i] = byte(i*31 + n)
	}
	b := make([]byte, f.Len())
	f.Encode(b)
	return b
}

// feedCapture runs pkts through the engine as one capture batch.
func feedCapture(e *engine, b *batch, pkts ...[]byte) {
	var p ipmangle.Parsed
	var seg ipmangle.Segmenter
	segb := make([]byte, e.cfg.MTU)
	now := e.now()
	for _, pkt := range pkts {
		e.handleCaptured(pkt, &p, &seg, segb, b, now, false)
	}
	b.flush(now)
}

// checkCopy checks that got is a valid copy of the datagram orig, sent
// from src to dst.
func checkCopy(t *testing.T, got, orig []byte, src, dst netip.AddrPort) {
	t.Helper()
	var g, o datagram.Parsed
	g.Decode(got)
	o.Decode(orig)
	switch {
	case !g.Valid:
		t.Fatalf("copy does not decode: %v", g.Reason)
	case g.Src != src || g.Dst != dst:
		t.Errorf("copy %v -> %v, want %v -> %v", g.Src, g.Dst, src, dst)
	case !bytes.Equal(g.Payload(got), o.Payload(orig)):
		t.Errorf("payload differs")
	case g.TTL != o.TTL || g.TOS != o.TOS:
		t.Errorf("TTL %d TOS %d, want %d %d", g.TTL, g.TOS, o.TTL, o.TOS)
	}
	seg := got[g.UDPOffset:]
	if c := ipmangle.Checksum(seg, ipmangle.PseudoHeaderChecksum(g.Src.Addr(), g.Dst.Addr(), 17, len(seg))); c != 0 {
		t.Errorf("UDP checksum does not verify")
	}
	if binary.BigEndian.Uint16(seg[6:]) == 0 {
		t.Errorf("UDP checksum 0")
	}
	if g.IPVersion == 4 && !ipmangle.IPv4(got).IsChecksumValid() {
		t.Errorf("IPv4 header checksum")
	}
}

func TestUDPCopy(t *testing.T) {
	pool4 := netip.MustParseAddr("198.51.100.200")
	tests := []struct {
		name    string
		mod     func(*Config)
		pkt     []byte
		wantSrc []netip.AddrPort // one per copy; nil: nothing sent
		dst     netip.AddrPort
	}{
		{"v4", nil, query(dnsClient4, dnsOnline4, 40), []netip.AddrPort{dnsClient4}, dnsTarget4},
		{"v6", nil, query(dnsClient6, dnsOnline6, 40), []netip.AddrPort{dnsClient6}, dnsTarget6},
		{"v4 other port", nil, query(dnsClient4, netip.MustParseAddrPort("192.0.2.1:54"), 40), nil, dnsTarget4},
		{"v4 other address", nil, query(dnsClient4, netip.MustParseAddrPort("192.0.2.2:53"), 40), nil, dnsTarget4},
		{"v4 to the TCP port", nil, query(dnsClient4, netip.MustParseAddrPort("192.0.2.1:80"), 40), nil, dnsTarget4},
		{"v4 empty payload", nil, query(dnsClient4, dnsOnline4, 0), []netip.AddrPort{dnsClient4}, dnsTarget4},
		{"v4 three copies", func(c *Config) { c.Copies = 3 }, query(dnsClient4, dnsOnline4, 40), []netip.AddrPort{
			dnsClient4,
			netip.AddrPortFrom(dnsClient4.Addr(), uint16(lowPort+(40000+copyStride)%portSpace)),
			netip.AddrPortFrom(dnsClient4.Addr(), uint16(lowPort+(40000+2*copyStride)%portSpace)),
		}, dnsTarget4},
		{"v4 -c", func(c *Config) {
			c.ClientPool = []netip.Addr{pool4, netip.MustParseAddr("2001:db8:9::1")}
		}, query(dnsClient4, dnsOnline4, 40), []netip.AddrPort{netip.AddrPortFrom(pool4, 40000)}, dnsTarget4},
		{"v4 -f 1", func(c *Config) { c.PortShift = 1 }, query(dnsClient4, dnsOnline4, 40),
			[]netip.AddrPort{netip.AddrPortFrom(dnsClient4.Addr(), 40000+2048)}, dnsTarget4},
		{"v6 port-only mapping", func(c *Config) {
			c.Mappings[1].Online = netip.AddrPortFrom(netip.Addr{}, 53)
		}, query(dnsClient6, netip.MustParseAddrPort("[2001:db8::99]:53"), 40), []netip.AddrPort{dnsClient6}, dnsTarget6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, snd, b := udpEngine(t, tt.mod)
			feedCapture(e, b, tt.pkt)
			if len(snd.pkts) != len(tt.wantSrc) {
				t.Fatalf("sent %d packets, want %d", len(snd.pkts), len(tt.wantSrc))
			}
			for i, got := range snd.pkts {
				checkCopy(t, got, tt.pkt, tt.wantSrc[i], tt.dst)
			}
			st := e.udp.stats(e.now())
			if st.copied != uint64(len(tt.wantSrc)) || st.dropped() != 0 {
				t.Errorf("stats %+v", st)
			}
			if e.invalid.Load() != 0 {
				t.Errorf("%d packets counted invalid by the TCP path", e.invalid.Load())
			}
		})
	}
}

// TestUDPBesideTCP: a TCP mapping and a UDP mapping of one port: each
// protocol goes its own way.
func TestUDPBesideTCP(t *testing.T) {
	e, snd, b := udpEngine(t, func(c *Config) {
		c.Mappings = append(c.Mappings, Mapping{Online: dnsOnline4, Target: netip.MustParseAddrPort("203.0.113.21:53")})
	})
	syn := build(ipmangle.Fields{Src: dnsClient4, Dst: dnsOnline4, Seq: 1, Flags: ipmangle.SYN, Window: 65535, WScale: -1})
	feedCapture(e, b, syn, query(dnsClient4, dnsOnline4, 30))
	if len(snd.pkts) != 2 {
		t.Fatalf("sent %d packets, want the SYN and the datagram", len(snd.pkts))
	}
	var p ipmangle.Parsed
	p.Decode(snd.pkts[0])
	if !p.Valid || p.Flags != ipmangle.SYN || p.Dst != netip.MustParseAddrPort("203.0.113.21:53") {
		t.Errorf("first packet %+v, want the SYN to the TCP target", p)
	}
	checkCopy(t, snd.pkts[1], query(dnsClient4, dnsOnline4, 30), dnsClient4, dnsTarget4)
}

// TestUDPFragments: fragmented datagrams are reassembled, copied whole
// and fragmented again to the MTU, each copy with its own identification.
func TestUDPFragments(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	tests := []struct {
		name   string
		mod    func(*Config)
		pkt    []byte
		inMTU  int // the client's link
		outMTU int // -M
		copies int
		dst    netip.AddrPort
	}{
		{"v4 EDNS query", nil, query(dnsClient4, dnsOnline4, 3000), 1500, 1500, 1, dnsTarget4},
		{"v6 EDNS query", nil, query(dnsClient6, dnsOnline6, 3000), 1500, 1500, 1, dnsTarget6},
		{"v4 three copies", func(c *Config) { c.Copies = 3 }, query(dnsClient4, dnsOnline4, 4000), 1500, 1500, 3, dnsTarget4},
		{"v6 three copies", func(c *Config) { c.Copies = 3 }, query(dnsClient6, dnsOnline6, 4000), 1500, 1500, 3, dnsTarget6},
		{"v4 jumbo client, -M 1500", nil, query(dnsClient4, dnsOnline4, 8000), 9000, 1500, 1, dnsTarget4},
		{"v4 -M 576", func(c *Config) { c.Mappings = c.Mappings[:1]; c.MTU = 576; c.MSS = 536 }, query(dnsClient4, dnsOnline4, 1400), 1500, 576, 1, dnsTarget4},
		{"v4 largest", nil, query(dnsClient4, dnsOnline4, datagram.MaxPayload), 1500, 1500, 1, dnsTarget4},
		{"v6 largest", nil, query(dnsClient6, dnsOnline6, 65535-8), 1500, 1500, 1, dnsTarget6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, snd, b := udpEngine(t, tt.mod)
			frags := splitFrags(tt.pkt, tt.inMTU, 0x5a5a)
			rng.Shuffle(len(frags), func(i, j int) { frags[i], frags[j] = frags[j], frags[i] })
			feedCapture(e, b, frags...)
			got := snd.datagrams(t, tt.outMTU)
			if len(got) != tt.copies {
				t.Fatalf("%d datagrams arrived whole, want %d", len(got), tt.copies)
			}
			ports := map[uint16]bool{}
			for _, g := range got {
				var p datagram.Parsed
				p.Decode(g)
				checkCopy(t, g, tt.pkt, p.Src, tt.dst)
				ports[p.Src.Port()] = true
			}
			if len(ports) != tt.copies {
				t.Errorf("copies from %d ports, want %d", len(ports), tt.copies)
			}
			st := e.udp.stats(e.now())
			wantFrags, wantWhole := uint64(len(frags)), uint64(1)
			if len(frags) == 1 {
				wantFrags, wantWhole = 0, 0 // it fit the client's link
			}
			if st.fragments != wantFrags || st.reassembled != wantWhole || st.captured != 1 ||
				st.fragmented != uint64(tt.copies) || st.dropped() != 0 || st.pending != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// splitFrags fragments pkt to mtu as a client's kernel would.
func splitFrags(pkt []byte, mtu int, id uint32) [][]byte {
	// The client sends without DF once it fragments.
	if pkt[0]>>4 == 4 {
		pkt = append([]byte(nil), pkt...)
		ipmangle.IPv4(pkt).SetFlagsFragmentOffset(0, 0)
		h := ipmangle.IPv4(pkt)
		h.SetChecksum(h.CalculateChecksum())
	}
	var f ipfrag.Fragmenter
	if !f.Reset(pkt, mtu, id) {
		panic("fragmenter refused")
	}
	var out [][]byte
	buf := make([]byte, mtu)
	for fr := f.Next(buf); fr != nil; fr = f.Next(buf) {
		out = append(out, append([]byte(nil), fr...))
	}
	return out
}

// TestUDPFragmentIDs: the fragmented copies of one datagram and of
// datagrams in a row carry distinct, non-zero identifications; so do
// whole copies without DF (a router may fragment them), while copies with
// DF keep the client's.
func TestUDPFragmentIDs(t *testing.T) {
	e, snd, b := udpEngine(t, func(c *Config) { c.Copies = 3 })
	for range 5 {
		feedCapture(e, b, splitFrags(query(dnsClient4, dnsOnline4, 2000), 1500, 7)...)
	}
	ids := map[uint16]int{}
	for _, p := range snd.pkts {
		h := ipmangle.IPv4(p)
		if h.ID() == 0 {
			t.Fatal("identification 0")
		}
		ids[h.ID()]++
	}
	if len(ids) != 15 {
		t.Errorf("%d identifications for 15 fragmented copies: %v", len(ids), ids)
	}
	snd.pkts = nil
	noDF := query(dnsClient4, dnsOnline4, 100)
	ipmangle.IPv4(noDF).SetFlagsFragmentOffset(0, 0)
	ipmangle.IPv4(noDF).SetChecksum(ipmangle.IPv4(noDF).CalculateChecksum())
	feedCapture(e, b, noDF, query(dnsClient4, dnsOnline4, 100))
	ids = map[uint16]int{}
	for _, p := range snd.pkts[:3] {
		ids[ipmangle.IPv4(p).ID()]++
	}
	if len(ids) != 3 || ids[0x4d2e] != 0 {
		t.Errorf("copies without DF: identifications %v, want 3 of tcpcopy's own", ids)
	}
	for _, p := range snd.pkts[3:] {
		if h := ipmangle.IPv4(p); h.ID() != 0x4d2e || h.Flags() != ipmangle.IPv4FlagDontFragment {
			t.Errorf("copy with DF: ID %#x, flags %b; want the client's", h.ID(), h.Flags())
		}
	}
}

// TestUDPTooBig: a copy the kernel refuses as too big is sent again in
// fragments of the path MTU, and later copies to that target are
// fragmented at once.
func TestUDPTooBig(t *testing.T) {
	e, snd, b := udpEngine(t, nil)
	snd.refuseAbove = 1280
	feedCapture(e, b, query(dnsClient4, dnsOnline4, 1400), query(dnsClient4, dnsOnline4, 1300))
	got := snd.datagrams(t, 1280)
	if len(got) != 2 {
		t.Fatalf("%d datagrams arrived", len(got))
	}
	st := e.udp.stats(e.now())
	if st.tooBig != 1 || st.copied != 2 || st.fragmented != 2 || st.sendError != 0 {
		t.Errorf("stats %+v", st)
	}
	// A sender that cannot tell a smaller MTU: the copy is dropped.
	snd.refuseAbove, snd.mute = 1000, true
	feedCapture(e, b, query(dnsClient6, dnsOnline6, 1600))
	if st := e.udp.stats(e.now()); st.sendError != 1 {
		t.Errorf("send errors %d, want 1", st.sendError)
	}
}

// TestUDPDrops: what is not copied is counted once, by reason.
func TestUDPDrops(t *testing.T) {
	frags := splitFrags(query(dnsClient4, dnsOnline4, 3000), 1500, 9)
	overlap := append([]byte(nil), frags[1]...)
	binary.BigEndian.PutUint16(overlap[6:], 0x2000|(1472/8)) // MF, 8 bytes into the first
	ipmangle.IPv4(overlap).SetChecksum(ipmangle.IPv4(overlap).CalculateChecksum())
	badLen := query(dnsClient4, dnsOnline4, 40)
	binary.BigEndian.PutUint16(badLen[24:], 200) // UDP length beyond the IP length
	tests := []struct {
		name   string
		pkts   [][]byte
		later  time.Duration // run the stats this much later
		reason string
	}{
		{"truncated", [][]byte{query(dnsClient4, dnsOnline4, 400)[:300]}, 0, "truncated"},
		{"truncated fragment", [][]byte{frags[0][:1000], frags[1], frags[2]}, 0, "truncated"},
		{"bad UDP length", [][]byte{badLen}, 0, "invalid"},
		{"fragment timeout", [][]byte{frags[0], frags[2]}, 6 * time.Second, "fragment_timeout"},
		{"overlap", [][]byte{frags[0], overlap, frags[2]}, 0, "fragment_overlap"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, snd, b := udpEngine(t, nil)
			feedCapture(e, b, tt.pkts...)
			if len(snd.pkts) != 0 {
				t.Errorf("sent %d packets", len(snd.pkts))
			}
			st := e.udp.stats(e.now() + int64(tt.later))
			for _, d := range st.drops() {
				want := uint64(0)
				if d.label == tt.reason {
					want = 1
				}
				if d.n != want {
					t.Errorf("dropped %s = %d, want %d", d.label, d.n, want)
				}
			}
		})
	}
}

// TestUDPSampling: -r keeps or drops whole flows (client address and
// port), the same flows in every run.
func TestUDPSampling(t *testing.T) {
	e, snd, b := udpEngine(t, func(c *Config) { c.Percent = 30 })
	const flows, per = 200, 4
	for i := range flows {
		c := netip.AddrPortFrom(dnsClient4.Addr(), uint16(20000+i))
		for range per {
			feedCapture(e, b, query(c, dnsOnline4, 20))
		}
	}
	sent := map[uint16]int{}
	for _, p := range snd.pkts {
		var d datagram.Parsed
		d.Decode(p)
		sent[d.Src.Port()]++
	}
	for port, n := range sent {
		if n != per {
			t.Errorf("flow from port %d: %d of %d datagrams copied", port, n, per)
		}
	}
	if len(sent) == 0 || len(sent) == flows {
		t.Errorf("%d of %d flows copied at -r 30", len(sent), flows)
	}
	st := e.udp.stats(e.now())
	if st.sampledOut != uint64((flows-len(sent))*per) || st.dropped() != 0 {
		t.Errorf("stats %+v", st)
	}
	// The same flows again.
	e2, snd2, b2 := udpEngine(t, func(c *Config) { c.Percent = 30 })
	for i := range flows {
		feedCapture(e2, b2, query(netip.AddrPortFrom(dnsClient4.Addr(), uint16(20000+i)), dnsOnline4, 20))
	}
	if len(snd2.pkts) != len(sent) {
		t.Errorf("second run copied %d flows, first %d", len(snd2.pkts), len(sent))
	}
}

// TestUDPOfflinePasses: each offline pass (-T) copies from other ports.
func TestUDPOfflinePasses(t *testing.T) {
	e, snd, b := udpEngine(t, func(c *Config) { c.Copies = 2 })
	var p ipmangle.Parsed
	var seg ipmangle.Segmenter
	pkt := query(dnsClient4, dnsOnline4, 20)
	for pass := range uint32(2) {
		p.Decode(pkt)
		e.handleParsed(pkt, &p, &seg, nil, b, pass, e.now(), false)
	}
	ports := map[uint16]bool{}
	for _, s := range snd.pkts {
		var d datagram.Parsed
		d.Decode(s)
		ports[d.Src.Port()] = true
	}
	if len(snd.pkts) != 4 || len(ports) != 4 {
		t.Errorf("%d copies from %d ports, want 4 from 4", len(snd.pkts), len(ports))
	}
}

func TestUDPRelevant(t *testing.T) {
	e, _, _ := udpEngine(t, nil)
	frags := splitFrags(query(dnsClient4, dnsOnline4, 3000), 1500, 1)
	other := splitFrags(query(dnsClient4, netip.MustParseAddrPort("192.0.2.2:53"), 3000), 1500, 1)
	tests := []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"datagram", query(dnsClient4, dnsOnline4, 10), true},
		{"v6 datagram", query(dnsClient6, dnsOnline6, 10), true},
		{"other port", query(dnsClient4, netip.MustParseAddrPort("192.0.2.1:54"), 10), false},
		{"first fragment", frags[0], true},
		{"later fragment", frags[1], true},
		{"fragment to another address", other[1], false},
		{"TCP", build(ipmangle.Fields{Src: dnsClient4, Dst: dnsOnline4, Flags: ipmangle.SYN, WScale: -1}), false},
	}
	for _, tt := range tests {
		if got := e.udp.relevant(tt.pkt); got != tt.want {
			t.Errorf("%s: relevant = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestUDPMetrics(t *testing.T) {
	e, _, b := udpEngine(t, func(c *Config) { c.Copies = 2 })
	feedCapture(e, b, query(dnsClient4, dnsOnline4, 30))
	feedCapture(e, b, splitFrags(query(dnsClient6, dnsOnline6, 3000), 1500, 1)...)
	feedCapture(e, b, query(dnsClient4, dnsOnline4, 400)[:300])
	fams := scrape(t, e)
	for _, tt := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"tcpcopy_udp_datagrams_captured_total", nil, 3},
		{"tcpcopy_udp_fragments_captured_total", nil, 3},
		{"tcpcopy_udp_datagrams_reassembled_total", nil, 1},
		{"tcpcopy_udp_datagrams_copied_total", nil, 4},
		{"tcpcopy_udp_datagrams_fragmented_total", nil, 2},
		{"tcpcopy_udp_packets_sent_total", nil, 2 + 2*3},
		{"tcpcopy_udp_datagrams_sampled_out_total", nil, 0},
		{"tcpcopy_udp_fragments_pending", nil, 0},
		{"tcpcopy_udp_datagrams_dropped_total", []string{"reason", "truncated"}, 1},
		{"tcpcopy_udp_datagrams_dropped_total", []string{"reason", "fragment_timeout"}, 0},
		{"tcpcopy_udp_datagrams_dropped_total", []string{"reason", "send_error"}, 0},
		// -s is given but no link is up: no answer can come, none is awaited.
		{"tcpcopy_udp_queries_untracked_total", []string{"reason", "no_route"}, 4},
		{"tcpcopy_udp_queries_tracked_total", []string{"mapping", "udp:192.0.2.1:53-203.0.113.20:5353"}, 0},
	} {
		if got := value(fams, tt.name, tt.labels...); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	var mfs []*dto.MetricFamily
	for name, f := range fams {
		if strings.HasPrefix(name, "tcpcopy_udp_") {
			mfs = append(mfs, f)
		}
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil || len(mfs) != 19 {
		t.Errorf("%d UDP metric families, lint error %v", len(mfs), err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	attrs := e.udpAttrs(nil, true)
	text := strings.TrimSpace(strings.ReplaceAll(slogText(attrs), "\n", " "))
	for _, want := range []string{"udp_captured=3", "udp_copied=4", "udp_fragmented=2", "udp_dropped=1", "udp_dropped_truncated=1", "udp_reassembled=1"} {
		if !strings.Contains(text, want) {
			t.Errorf("log attributes %q lack %s", text, want)
		}
	}
	// Without UDP mappings: no UDP metric, no UDP attribute.
	pl := newPipeline(t)
	if fams := scrape(t, pl.e); fams["tcpcopy_udp_datagrams_copied_total"] != nil {
		t.Error("UDP metrics without a UDP mapping")
	}
	if a := pl.e.udpAttrs(nil, true); len(a) != 0 {
		t.Errorf("UDP attributes without a UDP mapping: %v", a)
	}
}

// slogText renders log attributes as a text handler would.
func slogText(attrs []any) string {
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("x", attrs...)
	return b.String()
}

// TestUDPAllocs: a datagram that needs no reassembly costs no allocation,
// copies included.
func TestUDPAllocs(t *testing.T) {
	e, snd, b := udpEngine(t, func(c *Config) { c.Copies = 3 })
	snd.keep = false
	pkt := query(dnsClient4, dnsOnline4, 60)
	pkt6 := query(dnsClient6, dnsOnline6, 60)
	var p ipmangle.Parsed
	var seg ipmangle.Segmenter
	segb := make([]byte, e.cfg.MTU)
	run := func() {
		now := e.now()
		e.handleCaptured(pkt, &p, &seg, segb, b, now, false)
		e.handleCaptured(pkt6, &p, &seg, segb, b, now, false)
		b.flush(now)
	}
	run()
	if a := testing.AllocsPerRun(500, run); a != 0 {
		t.Errorf("copying two datagrams 3 times allocates %v times", a)
	}
	big := splitFrags(query(dnsClient4, dnsOnline4, 3000), 1500, 1)
	runFrag := func() { feedCapture(e, b, big...) }
	runFrag()
	// Fragments: feedCapture's own buffers only (the reassembly and the
	// copy reuse theirs).
	if a := testing.AllocsPerRun(100, runFrag); a > 3 {
		t.Errorf("copying a fragmented datagram allocates %v times", a)
	}
}

// BenchmarkUDPDatagram measures one captured DNS query through decode,
// match, copy and send.
func BenchmarkUDPDatagram(b *testing.B) {
	e, snd, bt := udpEngine(b, nil)
	snd.keep = false
	pkt := query(dnsClient4, dnsOnline4, 60)
	var p ipmangle.Parsed
	var seg ipmangle.Segmenter
	segb := make([]byte, e.cfg.MTU)
	b.ReportAllocs()
	for b.Loop() {
		now := e.now()
		e.handleCaptured(pkt, &p, &seg, segb, bt, now, false)
		bt.flush(now)
	}
}

// BenchmarkUDPFragmented measures a 3000-byte datagram in three
// fragments: reassembly, copy, fragmentation, send.
func BenchmarkUDPFragmented(b *testing.B) {
	e, snd, bt := udpEngine(b, nil)
	snd.keep = false
	frags := splitFrags(query(dnsClient4, dnsOnline4, 3000), 1500, 1)
	var p ipmangle.Parsed
	var seg ipmangle.Segmenter
	segb := make([]byte, e.cfg.MTU)
	b.ReportAllocs()
	for b.Loop() {
		now := e.now()
		for _, f := range frags {
			e.handleCaptured(f, &p, &seg, segb, bt, now, false)
		}
		bt.flush(now)
	}
}

// udpPcap writes a classic pcap file of raw IP packets (LINKTYPE_RAW),
// each at its offset from the first, and returns its path.
func udpPcap(t *testing.T, pkts [][]byte, at []time.Duration) string {
	t.Helper()
	le := binary.LittleEndian
	b := le.AppendUint32(nil, 0xa1b2c3d4)
	b = le.AppendUint16(b, 2)
	b = le.AppendUint16(b, 4)
	b = le.AppendUint32(b, 0)
	b = le.AppendUint32(b, 0)
	b = le.AppendUint32(b, 262144)
	b = le.AppendUint32(b, 101) // LINKTYPE_RAW
	base := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for i, p := range pkts {
		ts := base.Add(at[i])
		b = le.AppendUint32(b, uint32(ts.Unix()))
		b = le.AppendUint32(b, uint32(ts.Nanosecond()/1000))
		b = le.AppendUint32(b, uint32(len(p)))
		b = le.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	path := filepath.Join(t.TempDir(), "udp.pcap")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// udpClock is a sender that notes when each datagram arrived whole, by
// source endpoint, relative to the first.
type udpClock struct {
	first time.Time
	frag  *ipfrag.Reassembler
	buf   []byte
	got   map[netip.AddrPort][]time.Duration
}

func (s *udpClock) Send(pkt []byte) error {
	var f ipfrag.Fragment
	switch f.Decode(pkt) {
	case ipfrag.IsFragment:
		n, res := s.frag.Add(&f, pkt, 0, s.buf)
		if res != ipfrag.Complete {
			return nil
		}
		pkt = s.buf[:n]
	case ipfrag.NotFragment:
	default:
		return nil
	}
	var p datagram.Parsed
	p.Decode(pkt)
	now := time.Now()
	if s.first.IsZero() {
		s.first = now
	}
	s.got[p.Src] = append(s.got[p.Src], now.Sub(s.first))
	return nil
}

// TestUDPReplayTiming replays datagrams, one of them in fragments, in
// virtual time: each is copied at its place in the capture's timing
// divided by -a, the fragmented one when its last fragment is due, and
// every pass (-T) from other ports.
func TestUDPReplayTiming(t *testing.T) {
	a := netip.MustParseAddrPort("198.51.100.7:40001")
	b := netip.MustParseAddrPort("198.51.100.7:40002")
	c := netip.MustParseAddrPort("[2001:db8:1::7]:40003")
	frags := splitFrags(query(b, dnsOnline4, 3000), 1500, 1)
	pkts := [][]byte{query(a, dnsOnline4, 50), frags[0], frags[1], frags[2], query(c, dnsOnline6, 50)}
	at := []time.Duration{0, 100 * time.Millisecond, 100 * time.Millisecond, 104 * time.Millisecond, 300 * time.Millisecond}
	path := udpPcap(t, pkts, at)
	tests := []struct {
		name   string
		accel  float64
		repeat int
		want   map[netip.AddrPort]time.Duration
	}{
		{"capture timing", 1, 1, map[netip.AddrPort]time.Duration{a: 0, b: 104 * time.Millisecond, c: 300 * time.Millisecond}},
		{"-a 4", 4, 1, map[netip.AddrPort]time.Duration{a: 0, b: 26 * time.Millisecond, c: 75 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &udpClock{frag: ipfrag.New(ipfrag.Config{}), buf: make([]byte, ipfrag.MaxDatagramLen), got: map[netip.AddrPort][]time.Duration{}}
			synctest.Test(t, func(t *testing.T) {
				cfg := Default()
				cfg.Mappings = []Mapping{{Proto: ProtoUDP, Online: dnsOnline4, Target: dnsTarget4}, {Proto: ProtoUDP, Online: dnsOnline6, Target: dnsTarget6}}
				cfg.OfflineFile, cfg.Accel, cfg.Repeat = path, tt.accel, tt.repeat
				if err := cfg.Validate(); err != nil {
					t.Fatal(err)
				}
				log := slog.New(slog.DiscardHandler)
				e := newEngine(&cfg, clock, log)
				src, err := openOffline(&cfg, log)
				if err != nil {
					t.Fatal(err)
				}
				defer src.close()
				if err := e.replay(context.Background(), src); err != nil {
					t.Fatal(err)
				}
				if n := e.replayed.relevant.Load(); n != uint64(len(pkts)) {
					t.Errorf("%d relevant packets, want %d", n, len(pkts))
				}
			})
			for src, want := range tt.want {
				got := clock.got[src]
				if len(got) != 1 {
					t.Errorf("%v: %d copies", src, len(got))
					continue
				}
				if diff := got[0] - want; diff > time.Microsecond || diff < -paceSlack-time.Microsecond {
					t.Errorf("%v copied at %v, want %v", src, got[0], want)
				}
			}
		})
	}
	t.Run("-T 3", func(t *testing.T) {
		clock := &udpClock{frag: ipfrag.New(ipfrag.Config{}), buf: make([]byte, ipfrag.MaxDatagramLen), got: map[netip.AddrPort][]time.Duration{}}
		synctest.Test(t, func(t *testing.T) {
			cfg := Default()
			cfg.Mappings = []Mapping{{Proto: ProtoUDP, Online: dnsOnline4, Target: dnsTarget4}, {Proto: ProtoUDP, Online: dnsOnline6, Target: dnsTarget6}}
			cfg.OfflineFile, cfg.Accel, cfg.Repeat = path, 10, 3
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			log := slog.New(slog.DiscardHandler)
			e := newEngine(&cfg, clock, log)
			src, err := openOffline(&cfg, log)
			if err != nil {
				t.Fatal(err)
			}
			defer src.close()
			if err := e.replay(context.Background(), src); err != nil {
				t.Fatal(err)
			}
		})
		if n := len(clock.got); n != 9 {
			t.Errorf("%d source endpoints for 3 datagrams in 3 passes: %v", n, clock.got)
		}
	})
}
