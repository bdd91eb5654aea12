package tcpcopy

// Golden replay tests (the crypto/tls recorded-transcript pattern): a small
// HTTP exchange recorded once in a namespace lab (go test -run
// TestOfflineGolden -update, as root) is replayed without privileges
// through the offline reader, the rewriter, the endpoint allocator, the
// dispatcher and the session engine against a simulated target on a
// virtual clock. The packets tcpcopy sends to the target must match the
// golden text files, whatever the file's format and link type. After a
// deliberate change to what the engine sends, rewrite the outputs alone
// with -update-golden (no root needed).

import (
	"bytes"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
	"github.com/tcpcopy-go/tcpcopy/pkg/pcapfile"
	"github.com/tcpcopy-go/tcpcopy/pkg/tcpstate"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

var (
	update       = flag.Bool("update", false, "re-record the golden captures in a namespace lab (root) and rewrite the golden replay outputs")
	updateGolden = flag.Bool("update-golden", false, "rewrite the golden replay outputs from the stored captures (after a change to the engine)")
)

const goldenDir = "testdata/offline"

// The lab's addresses (package netlab), as the golden capture holds them.
var (
	goldenTarget4 = netip.MustParseAddrPort("198.51.100.2:8080")
	goldenTarget6 = netip.MustParseAddrPort("[2001:db8:2::2]:8080")
	goldenPool    = []netip.Addr{netip.MustParseAddr("192.0.2.201"), netip.MustParseAddr("192.0.2.202"), netip.MustParseAddr("2001:db8:1::201")}
)

// goldenCfg is the configuration the golden captures are replayed with:
// port 80 of any IPv4 address, and the online IPv6 address.
func goldenCfg(path string) Config {
	cfg := Default()
	cfg.Mappings = []Mapping{
		{Online: netip.AddrPortFrom(netip.Addr{}, 80), Target: goldenTarget4},
		{Online: netip.MustParseAddrPort("[2001:db8:1::1]:80"), Target: goldenTarget6},
	}
	cfg.Intercepts = []netip.AddrPort{netip.MustParseAddrPort("198.51.100.130:36524")}
	cfg.Workers = 1 // the dispatcher's hash is seeded per process: one worker keeps the order fixed
	cfg.OfflineFile = path
	return cfg
}

func TestOfflineGolden(t *testing.T) {
	if *update {
		recordGolden(t)
	}
	base := filepath.Join(goldenDir, "http.pcap")
	if _, err := os.Stat(base); err != nil {
		t.Fatalf("no golden capture (%v): record it with go test -run TestOfflineGolden -update as root", err)
	}
	variants := linkVariants(t, base)
	t.Run("formats and link types", func(t *testing.T) {
		for _, v := range variants {
			t.Run(v.name, func(t *testing.T) {
				out, err := goldenRun(t, v.path, nil, true)
				if err != nil {
					t.Fatal(err)
				}
				checkGolden(t, "http.golden", out, v.name == "pcap")
			})
		}
	})
	options := []struct {
		name, golden string
		edit         func(*Config)
		checkBytes   bool
	}{
		{"-n 3 -c two addresses", "http-n3.golden", func(c *Config) { c.Copies, c.ClientPool = 3, goldenPool }, false},
		{"-T 2", "http-T2.golden", func(c *Config) { c.Repeat = 2 }, false},
		{"-a 4 -I 100", "http-a4-I100.golden", func(c *Config) { c.Accel, c.IdleSkip = 4, 100*time.Millisecond }, true},
		{"-r 50", "http-r50.golden", func(c *Config) { c.Percent = 50 }, true},
		{"-f 1", "http-f1.golden", func(c *Config) { c.PortShift = 1 }, false},
	}
	for _, o := range options {
		t.Run(o.name, func(t *testing.T) {
			out, err := goldenRun(t, base, o.edit, o.checkBytes)
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, o.golden, out, true)
		})
	}
}

// checkGolden compares out with the golden file name, or rewrites it with
// -update or -update-golden (once per file: write says this caller owns
// it).
func checkGolden(t *testing.T, name, out string, write bool) {
	t.Helper()
	path := filepath.Join(goldenDir, name)
	if (*update || *updateGolden) && write {
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if out != string(want) {
		t.Errorf("replay differs from %s:\n%s", path, lineDiff(string(want), out))
	}
}

// lineDiff shows the first lines where want and got differ.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			return fmt.Sprintf("line %d:\nwant %s\n got %s", i+1, a, b)
		}
	}
	return "(same lines)"
}

// TestOfflineGoldenClients replays the capture of a client without TCP
// timestamps (notimestamps.pcap, see recordGoldenClients; re-record it
// with -update as root) through a 1500-byte path: no copy exceeds the
// MTU, and every byte the clients sent reaches the target: the POSTs
// sent with "Expect: 100-continue", whose bodies follow the interim
// response in 1460-byte segments, the keep-alive connection whose SYN is
// not in the file, and IPv6. Copies that added our timestamps option to
// full segments never arrived, and the sessions hung.
func TestOfflineGoldenClients(t *testing.T) {
	path := filepath.Join(goldenDir, "notimestamps.pcap")
	if *update {
		recordGoldenClients(t, path)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("no golden capture (%v): record it with go test -run TestOfflineGoldenClients -update as root", err)
	}
	out, sim, err := goldenRunSim(t, path, nil, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "notimestamps.golden", out, true)
	if len(sim.want) != 3 {
		t.Fatalf("the capture has %d client connections, want 3", len(sim.want))
	}
	for ep, bytes := range sim.want {
		if got := sim.got[ep]; got != len(bytes) {
			t.Errorf("client %v: the target got %d of the %d bytes sent", ep, got, len(bytes))
		}
	}
	if !strings.Contains(out, "partial") && !strings.Contains(out, "failed") && !strings.Contains(out, "reproduced_none=3") {
		t.Errorf("want 3 sessions reproduced and closed:\n%s", out)
	}
}

// TestOfflineDamaged replays a capture cut in the middle: what was read is
// replayed, then the error names the file and the offset.
func TestOfflineDamaged(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(goldenDir, "http.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cut.pcap")
	if err := os.WriteFile(path, b[:len(b)*2/3], 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := goldenRun(t, path, nil, true)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "offset ") ||
		!strings.Contains(err.Error(), "the file ends after") {
		t.Fatalf("err %v, want the file, the offset and the cut", err)
	}
	if !strings.Contains(out, " S ") || !strings.Contains(out, " PA ") {
		t.Errorf("nothing replayed before the damage:\n%s", out)
	}
}

// TestOfflineTruncated replays a capture made with a small snap length:
// the cut packets are counted, and every byte sent to the target is a byte
// the client really sent (checked by the simulated target).
func TestOfflineTruncated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "snap96.pcap")
	rewriteCapture(t, filepath.Join(goldenDir, "http.pcap"), path, layers.LinkTypeEthernet, func(frame []byte, _ bool) []byte {
		return frame[:min(len(frame), 96)]
	})
	var trunc uint64
	out, err := goldenRunEngine(t, path, nil, true, func(e *engine) { trunc = e.truncated.Load() })
	if err != nil {
		t.Fatal(err)
	}
	if trunc == 0 {
		t.Errorf("no packet counted as truncated:\n%s", out)
	}
	if !strings.Contains(out, "capture_gap") {
		t.Errorf("no session failed on the capture gap:\n%s", out)
	}
}

// variant is one encoding of the golden capture.
type variant struct{ name, path string }

// linkVariants returns the stored captures (pcap, pcapng, gzip) and
// versions of the pcap with other link-layer headers, written to a
// temporary directory.
func linkVariants(t *testing.T, base string) []variant {
	t.Helper()
	vs := []variant{
		{"pcap", base},
		{"pcapng", filepath.Join(goldenDir, "http.pcapng")},
		{"pcap.gz", filepath.Join(goldenDir, "http.pcap.gz")},
	}
	dir := t.TempDir()
	add := func(name string, lt layers.LinkType, f func(frame []byte, out bool) []byte) {
		p := filepath.Join(dir, name+".pcap")
		rewriteCapture(t, base, p, lt, f)
		vs = append(vs, variant{name, p})
	}
	ethType := func(frame []byte) []byte { return frame[12:14] }
	is6 := func(frame []byte) bool { return frame[14]>>4 == 6 }
	add("vlan", layers.LinkTypeEthernet, func(f []byte, _ bool) []byte {
		return slices.Concat(f[:12], []byte{0x81, 0x00, 0x00, 0x64}, f[12:])
	})
	add("linux_sll", layers.LinkTypeLinuxSLL, func(f []byte, out bool) []byte {
		pt := byte(0)
		if out {
			pt = 4
		}
		return slices.Concat([]byte{0, pt, 0, 1, 0, 6}, f[6:12], []byte{0, 0}, ethType(f), f[14:])
	})
	add("linux_sll2", layers.LinkType(276), func(f []byte, out bool) []byte {
		pt := byte(0)
		if out {
			pt = 4
		}
		return slices.Concat(ethType(f), []byte{0, 0, 0, 0, 0, 11, 0, 1, pt, 6}, f[6:12], []byte{0, 0}, f[14:])
	})
	add("raw", layers.LinkTypeRaw, func(f []byte, _ bool) []byte { return f[14:] })
	add("null", layers.LinkTypeNull, func(f []byte, _ bool) []byte {
		af := []byte{2, 0, 0, 0}
		if is6(f) {
			af = []byte{30, 0, 0, 0} // macOS AF_INET6, little-endian host
		}
		return slices.Concat(af, f[14:])
	})
	add("loop", layers.LinkTypeLoop, func(f []byte, _ bool) []byte {
		af := []byte{0, 0, 0, 2}
		if is6(f) {
			af = []byte{0, 0, 0, 24}
		}
		return slices.Concat(af, f[14:])
	})
	// pcapng with two interfaces of different link types, the packets
	// alternating between them.
	ng := filepath.Join(dir, "mixed.pcapng")
	writeMixedNG(t, base, ng)
	vs = append(vs, variant{"pcapng mixed link types", ng})
	return vs
}

// rewriteCapture copies the Ethernet capture src to dst with every frame
// rewritten by f (out: the frame left the recording host).
func rewriteCapture(t *testing.T, src, dst string, lt layers.LinkType, f func(frame []byte, out bool) []byte) {
	t.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriterNanos(&buf)
	if err := w.WriteFileHeader(262144, lt); err != nil {
		t.Fatal(err)
	}
	eachFrame(t, src, func(p *pcapfile.Packet) {
		frame := f(p.Data, p.Data[5] == 2) // made-up MACs: ...02 is the peer
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(0, p.Time), CaptureLength: len(frame), Length: p.Len - len(p.Data) + len(frame)}
		if err := w.WritePacket(ci, frame); err != nil {
			t.Fatal(err)
		}
	})
	if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func eachFrame(t *testing.T, path string, f func(p *pcapfile.Packet)) {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	r, err := pcapfile.NewReader(fh)
	if err != nil {
		t.Fatal(err)
	}
	for r.Next() {
		f(r.Packet())
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
}

func writeMixedNG(t *testing.T, src, dst string) {
	t.Helper()
	var buf bytes.Buffer
	w, err := pcapgo.NewNgWriterInterface(&buf, pcapgo.NgInterface{Name: "to-client", LinkType: layers.LinkTypeEthernet, SnapLength: 262144, TimestampResolution: 9}, pcapgo.NgWriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := w.AddInterface(pcapgo.NgInterface{Name: "tun0", LinkType: layers.LinkTypeRaw, SnapLength: 262144, TimestampResolution: 9})
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	eachFrame(t, src, func(p *pcapfile.Packet) {
		frame, id := p.Data, 0
		if i%2 == 1 {
			frame, id = p.Data[14:], raw
		}
		i++
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(0, p.Time), CaptureLength: len(frame), Length: p.Len - len(p.Data) + len(frame), InterfaceIndex: id}
		if err := w.WritePacket(ci, frame); err != nil {
			t.Fatal(err)
		}
	})
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// goldenRun replays path with the golden configuration changed by edit
// and returns the packets sent to the target, one line each, followed by
// the counters. checkBytes makes the simulated target check every payload
// byte against the capture (only where copies keep the client endpoints).
func goldenRun(t *testing.T, path string, edit func(*Config), checkBytes bool) (string, error) {
	return goldenRunEngine(t, path, edit, checkBytes, nil)
}

// virtualStart is the virtual clock's start: a fixed time, so that the
// timestamps of the packets (TSval) do not depend on the day.
const virtualStart = int64(1_700_000_000) * 1e9

func goldenRunEngine(t *testing.T, path string, edit func(*Config), checkBytes bool, inspect func(*engine)) (string, error) {
	t.Helper()
	out, _, err := goldenRunSim(t, path, edit, checkBytes, inspect)
	return out, err
}

// goldenRunSim is goldenRunEngine that also returns the simulated target,
// for what it received.
func goldenRunSim(t *testing.T, path string, edit func(*Config), checkBytes bool, inspect func(*engine)) (string, *simTarget, error) {
	t.Helper()
	cfg := goldenCfg(path)
	if edit != nil {
		edit(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	d := &goldenDriver{t: t, now: virtualStart}
	d.sim = &simTarget{t: t, now: &d.now, conns: map[[2]netip.AddrPort]*simConn{}, mtu: cfg.MTU, got: map[netip.AddrPort]int{}}
	if checkBytes {
		d.sim.want = clientStreams(t, path)
	}
	log := slog.New(slog.DiscardHandler)
	e := newEngine(&cfg, d.sim, log)
	d.e = e
	d.b = e.disp.newBatch()
	e.now = func() int64 { return d.now }
	for _, w := range e.disp.workers {
		w.links = routeRecorder{new([]wire.Route)}
		e.track(w)
	}
	src, err := openOffline(&cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer src.close()
	rp := newReplayer(src, e.rw, &cfg)
	var (
		p   ipmangle.Parsed
		seg ipmangle.Segmenter
	)
	segb := make([]byte, cfg.MTU)
	var replayErr error
	for {
		ip, due, relevant, ok, err := rp.next(&p, d.now)
		if !ok {
			replayErr = err
			break
		}
		if relevant {
			d.runUntil(due)
		}
		e.handleParsed(ip, &p, &seg, segb, d.b, uint32(rp.pass), d.now, false)
		d.drain()
	}
	// The tail, then what the shutdown resets (in a fixed order: CloseAll
	// walks a map).
	d.runUntil(d.now + int64(time.Minute))
	n := len(d.sim.lines)
	for _, w := range e.disp.workers {
		w.tab.CloseAll(d.now)
		w.tab.Flush(d.now)
	}
	slices.Sort(d.sim.lines[n:])
	var st tcpstate.Stats
	for _, w := range e.disp.workers {
		ws := w.tab.Stats()
		st.Add(&ws)
	}
	if inspect != nil {
		inspect(e)
	}
	var b strings.Builder
	for _, l := range d.sim.lines {
		b.WriteString(l + "\n")
	}
	fmt.Fprintf(&b, "sessions=%d requests=%d captured_bytes=%d acked_bytes=%d passes=%d\n",
		st.Opened, st.Requests, st.CapturedBytes, st.AckedBytes, src.passes)
	attrs := outcomeAttrs(&st, nil)
	for i := 0; i+1 < len(attrs); i += 2 {
		fmt.Fprintf(&b, "%s=%v\n", attrs[i], attrs[i+1])
	}
	if e.rw.eps != nil {
		es := e.rw.eps.stats()
		fmt.Fprintf(&b, "connections=%d copies=%d exhausted=%d multiplication=%.2f\n", es.Conns, es.Copies, es.Exhausted, es.Multiplication())
	}
	return b.String(), d.sim, replayErr
}

// goldenDriver runs the engine's workers synchronously on a virtual clock.
type goldenDriver struct {
	t   *testing.T
	e   *engine
	sim *simTarget
	now int64
	b   *batch
}

// drain ends the batch in every worker at d.now, as the reading
// goroutines and the timer do.
func (d *goldenDriver) drain() {
	for _, w := range d.e.disp.workers {
		w.endBatch(d.now)
	}
}

// runUntil delivers the target's answers and runs the timers due before
// t, then sets the clock to t (or leaves it if it is already later).
func (d *goldenDriver) runUntil(t int64) {
	for {
		next := t
		if q := d.sim.queue; len(q) > 0 && q[0].due < next {
			next = q[0].due
		}
		for _, w := range d.e.disp.workers {
			if dl := w.tab.NextDeadline(); dl != 0 && dl < next {
				next = dl
			}
		}
		if next >= t {
			d.now = max(d.now, t)
			return
		}
		d.now = max(d.now, next)
		for len(d.sim.queue) > 0 && d.sim.queue[0].due <= d.now {
			r := d.sim.queue[0]
			d.sim.queue = d.sim.queue[1:]
			d.b.record(d.now, &wire.Record{Header: r.hdr, PayloadLen: r.payloadLen})
		}
		d.drain()
		for _, w := range d.e.disp.workers {
			w.tab.Tick(d.now)
		}
		d.drain()
	}
}

// simRTT is the simulated round trip through target and intercept.
const simRTT = int64(time.Millisecond)

// simTarget plays the target and intercept: it records every packet
// tcpcopy sends and answers like a TCP server: SYN-ACK to a SYN, an
// acknowledgement with a 64-byte response to a pushed request, FIN to a
// FIN, all as header records one simRTT later.
type simTarget struct {
	t     *testing.T
	now   *int64
	lines []string
	conns map[[2]netip.AddrPort]*simConn
	n     uint32
	queue []simRec
	// want, when set, holds every payload byte the clients sent, by client
	// endpoint and sequence number: what the target receives must match.
	want map[netip.AddrPort]map[uint32]byte
	// mtu is the path's MTU: a longer packet is an error (the real path
	// drops it).
	mtu int
	// got counts the payload bytes received in order, by client endpoint.
	got map[netip.AddrPort]int
}

type simConn struct {
	isn, sndNxt, rcvNxt uint32
}

type simRec struct {
	due        int64
	hdr        []byte
	payloadLen int
}

func (s *simTarget) Send(pkt []byte) error {
	if s.mtu > 0 && len(pkt) > s.mtu {
		s.t.Errorf("tcpcopy sent a %d-byte packet over a %d-byte MTU", len(pkt), s.mtu)
		return nil
	}
	var p ipmangle.Parsed
	p.Decode(pkt)
	if !p.Valid || p.Truncated {
		s.t.Errorf("tcpcopy sent an invalid packet: %v % x", p.Reason, pkt)
		return nil
	}
	if p.IPVersion == 4 && ipmangle.Checksum(pkt[:p.IPHeaderLen], 0) != 0 {
		s.t.Errorf("bad IPv4 header checksum")
	}
	pseudo := ipmangle.PseudoHeaderChecksum(p.Src.Addr(), p.Dst.Addr(), 6, p.TotalLen-p.TCPOffset)
	if ipmangle.Checksum(pkt[p.TCPOffset:p.TotalLen], pseudo) != 0 {
		s.t.Errorf("bad TCP checksum")
	}
	ack := ""
	if p.Flags&ipmangle.ACK != 0 {
		ack = fmt.Sprintf(" ack=%d", p.Ack)
	}
	s.lines = append(s.lines, fmt.Sprintf("%10.3f %s > %s %s seq=%d%s len=%d",
		float64(*s.now-virtualStart)/1e6, p.Src, p.Dst, p.Flags, p.Seq, ack, p.PayloadLen))
	if s.want != nil {
		want := s.want[p.Src]
		for i, c := range p.Payload(pkt) {
			if w, ok := want[p.Seq+uint32(i)]; !ok || w != c {
				s.t.Errorf("%v seq %d: sent %q, the client sent %q (known %v)", p.Src, p.Seq+uint32(i), c, w, ok)
				break
			}
		}
	}
	s.react(&p)
	return nil
}

func (s *simTarget) react(p *ipmangle.Parsed) {
	id := [2]netip.AddrPort{p.Src, p.Dst}
	c := s.conns[id]
	switch {
	case p.Flags&ipmangle.RST != 0:
		delete(s.conns, id)
	case p.Flags&ipmangle.SYN != 0:
		if c == nil || c.rcvNxt != p.Seq+1 {
			s.n++
			c = &simConn{isn: 1_000_000_000 + s.n*1_000_000}
			c.sndNxt, c.rcvNxt = c.isn+1, p.Seq+1
			s.conns[id] = c
		}
		s.reply(p, ipmangle.SYN|ipmangle.ACK, c.isn, c.rcvNxt, 0)
	case c == nil:
		if p.Flags&ipmangle.ACK != 0 {
			s.reply(p, ipmangle.RST, p.Ack, 0, 0)
		}
	case p.PayloadLen > 0 || p.Flags&ipmangle.FIN != 0:
		if p.Seq != c.rcvNxt {
			s.reply(p, ipmangle.ACK, c.sndNxt, c.rcvNxt, 0) // duplicate or out of order
			return
		}
		c.rcvNxt += uint32(p.PayloadLen)
		s.got[p.Src] += p.PayloadLen
		switch {
		case p.Flags&ipmangle.FIN != 0:
			c.rcvNxt++
			s.reply(p, ipmangle.FIN|ipmangle.ACK, c.sndNxt, c.rcvNxt, 0)
			c.sndNxt++
		case p.Flags&ipmangle.PSH != 0:
			s.reply(p, ipmangle.PSH|ipmangle.ACK, c.sndNxt, c.rcvNxt, 64)
			c.sndNxt += 64
		default:
			s.reply(p, ipmangle.ACK, c.sndNxt, c.rcvNxt, 0)
		}
	}
}

// reply queues the header of an answer to p carrying payloadLen bytes.
func (s *simTarget) reply(p *ipmangle.Parsed, flags ipmangle.TCPFlags, seq, ack uint32, payloadLen int) {
	f := ipmangle.Fields{Src: p.Dst, Dst: p.Src, Seq: seq, Ack: ack, Flags: flags, Window: 65535, WScale: -1}
	if flags&ipmangle.SYN != 0 {
		f.MSS, f.WScale = 1460, 7
	}
	if p.HasTS() {
		f.HasTS, f.TSVal, f.TSEcr = true, uint32(*s.now/1e6), p.TSVal
	}
	buf := make([]byte, 128)
	s.queue = append(s.queue, simRec{due: *s.now + simRTT, hdr: buf[:f.Encode(buf)], payloadLen: payloadLen})
}

// clientStreams returns every payload byte the clients of the capture
// sent, by client endpoint and sequence number.
func clientStreams(t *testing.T, path string) map[netip.AddrPort]map[uint32]byte {
	t.Helper()
	out := map[netip.AddrPort]map[uint32]byte{}
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	r, err := pcapfile.NewReader(fh)
	if err != nil {
		t.Fatal(err)
	}
	// Up to any damage: the replay reports it.
	for r.Next() {
		pk := r.Packet()
		off := pk.LinkType.IPOffset(pk.Data)
		if off < 0 {
			continue
		}
		var p ipmangle.Parsed
		b := pk.Data[off:]
		p.Decode(b)
		if !p.Valid || p.Dst.Port() != 80 {
			continue
		}
		m := out[p.Src]
		if m == nil {
			m = map[uint32]byte{}
			out[p.Src] = m
		}
		for i, c := range p.Payload(b) {
			m[p.Seq+uint32(i)] = c
		}
	}
	return out
}
