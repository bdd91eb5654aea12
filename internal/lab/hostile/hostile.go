// Package hostile attacks intercept's link port the way a hostile or
// broken peer would, for a bounded time: garbage bytes, malformed version-6
// and version-7 messages, floods of connections and of routes, links that
// complete their handshake and then hold their slot without a word, and
// slow readers that claim real responses and never read them. It runs
// inside a lab namespace (tcpcopy-lab hostile, docs/lab.md); the tests
// check that a well-behaved tcpcopy beside it still gets every response,
// and that intercept's memory and descriptors stay bounded.
//
// Every address it announces or sends to is a documentation address of the
// lab, and everything it does ends with the context or Options.Duration.
package hostile

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcpcopy-go/tcpcopy/pkg/inject"
	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

// Scenario names, in the order Run starts them.
const (
	Garbage    = "garbage"     // random bytes instead of a handshake
	V6Junk     = "v6-junk"     // a version-6 handshake, then random 14-byte messages
	V7Junk     = "v7-junk"     // a version-7 offer, then malformed messages
	ConnFlood  = "conn-flood"  // connects that close at once or send half a handshake
	Holders    = "holders"     // links that complete the handshake and say nothing
	RouteFlood = "route-flood" // valid routes as fast as the link takes them
	SlowReader = "slow-reader" // links that claim real responses and never read
)

// All lists every scenario.
var All = []string{Garbage, V6Junk, V7Junk, ConnFlood, Holders, RouteFlood, SlowReader}

// Options configure a run. Zero values take the defaults.
type Options struct {
	// Intercept is intercept's link address (required).
	Intercept netip.AddrPort
	// Source is the local address of the connections; the zero Addr lets
	// the kernel choose. intercept shares its slots fairly between
	// addresses, so an attack from another address than tcpcopy's is the
	// one that tests it.
	Source netip.Addr
	// Duration bounds the run; default 5 s.
	Duration time.Duration
	// Scenarios to run, at the same time; default All (SlowReader only
	// when SlowClient and SlowTarget are set).
	Scenarios []string
	// Workers is the number of parallel connections of each flood
	// scenario (garbage, junk, connect flood); default 4.
	Workers int
	// Rate bounds the connects per second of each flood scenario, and of
	// the holders' re-dials together; default 500. The lab shares its
	// CPUs with the programs under test: an unbounded flood measures the
	// machine, not intercept.
	Rate int
	// Holders is the number of idle links held; default 16.
	Holders int
	// Routes is the number of routes each route-flood link sends (one
	// version-7 link, one version-6 link); default 200000.
	Routes int
	// SlowLinks is the number of slow readers; default 2. Each announces
	// SlowSYNs routes for SlowClient and sends a SYN to SlowTarget from
	// each of them (raw socket: root), so that the target's SYN-ACKs are
	// queued for a link that never reads; RSTs clean up at the end.
	SlowLinks  int
	SlowSYNs   int
	SlowClient netip.Addr
	SlowTarget netip.AddrPort
}

// Counts are what one scenario did.
type Counts struct {
	Connects      uint64 `json:"connects"`       // connections made
	ConnectErrors uint64 `json:"connect_errors"` // connects that failed
	Closed        uint64 `json:"closed"`         // connections intercept closed under us
	Messages      uint64 `json:"messages"`       // messages (or garbage writes) sent
	Routes        uint64 `json:"routes"`         // route messages sent
	SYNs          uint64 `json:"syns"`           // SYNs sent to the target (slow readers)
}

// Report is the outcome of Run, by scenario.
type Report struct {
	Scenarios map[string]*Counts `json:"scenarios"`
	Elapsed   time.Duration      `json:"elapsed"`
}

type counts struct {
	connects, connectErrors, closed, messages, routes, syns atomic.Uint64
}

func (c *counts) snapshot() *Counts {
	return &Counts{c.connects.Load(), c.connectErrors.Load(), c.closed.Load(), c.messages.Load(), c.routes.Load(), c.syns.Load()}
}

func (o *Options) defaults() {
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.Rate <= 0 {
		o.Rate = 500
	}
	if o.Holders <= 0 {
		o.Holders = 16
	}
	if o.Routes <= 0 {
		o.Routes = 200000
	}
	if o.SlowLinks <= 0 {
		o.SlowLinks = 2
	}
	if o.SlowSYNs <= 0 {
		o.SlowSYNs = 2000
	}
	if len(o.Scenarios) == 0 {
		for _, s := range All {
			if s != SlowReader || (o.SlowClient.IsValid() && o.SlowTarget.IsValid()) {
				o.Scenarios = append(o.Scenarios, s)
			}
		}
	}
}

// linkFirst is how long the other scenarios wait for the route floods and
// slow readers to link.
const linkFirst = 300 * time.Millisecond

// Run runs the scenarios against o.Intercept until o.Duration passed or
// ctx ended, and reports what each did. It fails only on bad options or
// when the slow readers cannot open their raw socket.
func Run(ctx context.Context, o Options) (*Report, error) {
	o.defaults()
	if !o.Intercept.IsValid() {
		return nil, errors.New("hostile: no intercept address")
	}
	run := map[string]func(context.Context, *Options, *counts) error{
		Garbage: garbage, V6Junk: v6Junk, V7Junk: v7Junk, ConnFlood: connFlood,
		Holders: holders, RouteFlood: routeFlood, SlowReader: slowReaders,
	}
	for _, s := range o.Scenarios {
		if run[s] == nil {
			return nil, fmt.Errorf("hostile: unknown scenario %q (known: %v)", s, All)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	start := time.Now()
	cs := make(map[string]*counts, len(o.Scenarios))
	errs := make(chan error, len(o.Scenarios))
	var wg sync.WaitGroup
	for _, s := range o.Scenarios {
		c := new(counts)
		cs[s] = c
		wg.Go(func() {
			if s != RouteFlood && s != SlowReader {
				// The floods of routes and records link first: the
				// other scenarios then fight over what slots are left.
				sleep(ctx, linkFirst)
			}
			if err := run[s](ctx, &o, c); err != nil {
				errs <- fmt.Errorf("%s: %w", s, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	rep := &Report{Scenarios: make(map[string]*Counts, len(cs)), Elapsed: time.Since(start)}
	for s, c := range cs {
		rep.Scenarios[s] = c.snapshot()
	}
	return rep, <-errs
}

// local returns the dialers' local address.
func (o *Options) local() net.Addr {
	if !o.Source.IsValid() {
		return nil
	}
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(o.Source, 0))
}

// dial connects to intercept; conn is closed when ctx ends.
func dial(ctx context.Context, o *Options, c *counts) (net.Conn, func(), bool) {
	d := net.Dialer{Timeout: time.Second, LocalAddr: o.local()}
	conn, err := d.DialContext(ctx, "tcp", o.Intercept.String())
	if err != nil {
		if ctx.Err() == nil {
			c.connectErrors.Add(1)
		}
		return nil, nil, false
	}
	c.connects.Add(1)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	return conn, func() { stop(); conn.Close() }, true
}

// workers runs n copies of f until ctx ends, together at most rate calls
// of f per second.
func workers(ctx context.Context, n, rate int, f func(rng *rand.Rand)) {
	every := time.Duration(n) * time.Second / time.Duration(rate)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
			next := time.Now()
			for ctx.Err() == nil {
				f(rng)
				next = next.Add(every)
				if d := time.Until(next); d > 0 {
					sleep(ctx, d)
				} else {
					next = time.Now()
				}
			}
		})
	}
	wg.Wait()
}

// drain reads until the peer closes or a short time passes, and counts a
// close by intercept.
func drain(conn net.Conn, c *counts, wait time.Duration) {
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	if _, err := io.Copy(io.Discard, conn); err == nil || !isTimeout(err) {
		c.closed.Add(1)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func garbage(ctx context.Context, o *Options, c *counts) error {
	workers(ctx, o.Workers, o.Rate, func(rng *rand.Rand) {
		conn, done, ok := dial(ctx, o, c)
		if !ok {
			return
		}
		defer done()
		b := make([]byte, rng.IntN(2048)+1)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if rng.IntN(4) == 0 {
			b = []byte("GET / HTTP/1.1\r\nHost: intercept\r\n\r\n")
		}
		if _, err := conn.Write(b); err == nil {
			c.messages.Add(1)
		}
		_ = conn.(*net.TCPConn).CloseWrite()
		drain(conn, c, time.Second)
	})
	return nil
}

// randAddr4 returns a random address of 198.51.100.200-254 (the lab uses
// the lower part of the range).
func randAddr4(rng *rand.Rand) [4]byte {
	return [4]byte{198, 51, 100, byte(200 + rng.IntN(55))}
}

func v6Junk(ctx context.Context, o *Options, c *counts) error {
	workers(ctx, o.Workers, o.Rate, func(rng *rand.Rand) {
		conn, done, ok := dial(ctx, o, c)
		if !ok {
			return
		}
		defer done()
		buf := wire.AppendOffer(nil, false)
		if rng.IntN(8) == 0 {
			buf[0] = 192 // a handshake with an address: "client too old"
		}
		for range 500 {
			var m [wire.ClientMsgSize]byte
			a, t := randAddr4(rng), randAddr4(rng)
			copy(m[0:], a[:])
			binary.BigEndian.PutUint16(m[4:], uint16(rng.Uint32()))
			// Types whose low byte is 1 or 2 (0x0101, 0x0201, ...) once
			// added and deleted routes.
			binary.BigEndian.PutUint16(m[6:], uint16(rng.IntN(256))<<8|uint16(1+rng.IntN(2)))
			if rng.IntN(4) == 0 {
				clear(m[:]) // 0.0.0.0:0
				m[7] = 1
			}
			copy(m[8:], t[:])
			binary.BigEndian.PutUint16(m[12:], uint16(rng.Uint32()))
			buf = append(buf, m[:]...)
		}
		if _, err := conn.Write(buf); err == nil {
			c.messages.Add(500)
		}
		_ = conn.(*net.TCPConn).CloseWrite()
		drain(conn, c, time.Second)
	})
	return nil
}

func v7Junk(ctx context.Context, o *Options, c *counts) error {
	workers(ctx, o.Workers, o.Rate, func(rng *rand.Rand) {
		conn, done, ok := dial(ctx, o, c)
		if !ok {
			return
		}
		defer done()
		buf := wire.AppendOffer(nil, true)
		for range 50 {
			switch rng.IntN(7) {
			case 0: // unknown type
				buf = append(buf, 0, 8, byte(0x10+rng.IntN(0x60)), 0, 1, 2, 3, 4)
			case 1: // a route without addresses
				buf = append(buf, 0, 10, 1, 0, 4, 0, 0x9c, 0x40, 0x1f, 0x90)
			case 2: // a route to port 0 and the broadcast address
				buf = append(buf, 0, 18, 1, 0, 4, 0, 0, 0, 0, 0, 198, 51, 100, 201, 255, 255, 255, 255)
			case 3: // an auth message with a made-up proof
				var a wire.Auth
				for i := range a.MAC {
					a.MAC[i] = byte(rng.Uint32())
				}
				buf = wire.AppendAuth(buf, a)
			case 4: // a config asking for the largest prefix
				buf = append(buf, 0, 8, 3, 0, 0xff, 0xff, 0, 0)
			case 5: // a family-6 route with IPv4-mapped addresses
				m := make([]byte, 42)
				binary.BigEndian.PutUint16(m, 42)
				m[2], m[4] = 1, 6
				m[8], m[9] = 0x1f, 0x90
				m[20], m[21], m[36], m[37] = 0xff, 0xff, 0xff, 0xff
				buf = append(buf, m...)
			default: // random bytes with a random length field
				n := 4 + rng.IntN(60)
				m := make([]byte, n)
				for i := range m {
					m[i] = byte(rng.Uint32())
				}
				binary.BigEndian.PutUint16(m, uint16(n))
				buf = append(buf, m...)
			}
		}
		switch rng.IntN(3) {
		case 0:
			buf = append(buf, 0xff, 0xff, 1, 0) // a length above the limit: framing lost
		case 1:
			buf = append(buf, 0, 2, 1, 0) // a length below the header
		}
		if _, err := conn.Write(buf); err == nil {
			c.messages.Add(50)
		}
		_ = conn.(*net.TCPConn).CloseWrite()
		drain(conn, c, time.Second)
	})
	return nil
}

func connFlood(ctx context.Context, o *Options, c *counts) error {
	workers(ctx, o.Workers, o.Rate, func(rng *rand.Rand) {
		conn, done, ok := dial(ctx, o, c)
		if !ok {
			return
		}
		if rng.IntN(2) == 0 {
			_, _ = conn.Write([]byte{0, 0, 0}) // half a handshake
		}
		done()
	})
	return nil
}

// holders keeps o.Holders links that completed a version-6 handshake and
// say nothing: the lockout of every real tcpcopy. A link intercept closes
// is dialled again at once (a persistent attacker).
func holders(ctx context.Context, o *Options, c *counts) error {
	workers(ctx, o.Holders, o.Rate, func(*rand.Rand) {
		conn, done, ok := dial(ctx, o, c)
		if !ok {
			sleep(ctx, 50*time.Millisecond)
			return
		}
		defer done()
		if _, err := conn.Write(wire.AppendOffer(nil, false)); err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, conn)
		if ctx.Err() == nil {
			c.closed.Add(1)
		}
	})
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// routeFlood sends o.Routes valid routes on a version-7 link and on a
// version-6 link, as fast as intercept reads them, then holds the links.
func routeFlood(ctx context.Context, o *Options, c *counts) error {
	var wg sync.WaitGroup
	for _, v7 := range []bool{true, false} {
		wg.Go(func() {
			conn, done, ok := dial(ctx, o, c)
			if !ok {
				return
			}
			defer done()
			f := wire.Format{Version: wire.Version6}
			if _, err := conn.Write(wire.AppendOffer(nil, v7)); err != nil {
				return
			}
			if v7 {
				rr := wire.NewRecordReader(conn, wire.Format{Version: wire.Version6, Combined: true})
				_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
				hf, err := rr.ReadHello()
				if err != nil || hf.Version != wire.Version7 || hf.Auth {
					c.closed.Add(1) // refused, a secret, or no version 7: nothing to flood
					return
				}
				_ = conn.SetReadDeadline(time.Time{})
				f = hf
				go func() { _, _ = io.Copy(io.Discard, conn) }()
			}
			target := netip.MustParseAddrPort("203.0.113.250:9")
			rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
			buf := make([]byte, 0, 64<<10)
			for sent := 0; sent < o.Routes && ctx.Err() == nil; {
				buf = buf[:0]
				for ; len(buf) < 60<<10 && sent < o.Routes; sent++ {
					r := wire.Route{Client: netip.AddrPortFrom(netip.AddrFrom4(randAddr4(rng)), uint16(1+rng.IntN(65535))), Target: target, Op: wire.RouteAdd}
					buf, _ = wire.AppendRoute(buf, f, r)
				}
				if _, err := conn.Write(buf); err != nil {
					c.closed.Add(1)
					return
				}
				c.routes.Add(uint64(len(buf) / routeSize(f)))
			}
			<-ctx.Done()
		})
	}
	wg.Wait()
	return nil
}

func routeSize(f wire.Format) int {
	if f.Version == wire.Version7 {
		return 18
	}
	return wire.ClientMsgSize
}

// slowReaders claim the target's SYN-ACKs to SYNs they send themselves and
// never read them: intercept queues the records until its bound.
func slowReaders(ctx context.Context, o *Options, c *counts) error {
	snd, err := inject.Open()
	if err != nil {
		return err
	}
	defer snd.Close()
	var wg sync.WaitGroup
	for i := range o.SlowLinks {
		wg.Go(func() {
			d := net.Dialer{Timeout: time.Second, Control: smallRcvBuf, LocalAddr: o.local()}
			conn, err := d.DialContext(ctx, "tcp", o.Intercept.String())
			if err != nil {
				c.connectErrors.Add(1)
				return
			}
			c.connects.Add(1)
			defer conn.Close()
			if _, err := conn.Write(wire.AppendOffer(nil, true)); err != nil {
				return
			}
			rr := wire.NewRecordReader(conn, wire.Format{Version: wire.Version6, Combined: true})
			_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			f, err := rr.ReadHello()
			if err != nil || f.Version != wire.Version7 || f.Auth {
				c.closed.Add(1)
				return
			}
			first := uint16(20000 + i*o.SlowSYNs)
			var buf []byte
			for p := range o.SlowSYNs {
				r := wire.Route{Client: netip.AddrPortFrom(o.SlowClient, first+uint16(p)), Target: o.SlowTarget, Op: wire.RouteAdd}
				buf, _ = wire.AppendRoute(buf, f, r)
			}
			if _, err := conn.Write(buf); err != nil {
				return
			}
			c.routes.Add(uint64(o.SlowSYNs))
			sleep(ctx, 200*time.Millisecond) // the routes arrive before the SYN-ACKs
			for p := range o.SlowSYNs {
				if ctx.Err() != nil {
					break
				}
				if sendTCP(snd, netip.AddrPortFrom(o.SlowClient, first+uint16(p)), o.SlowTarget, ipmangle.SYN, 1000) == nil {
					c.syns.Add(1)
				}
			}
			<-ctx.Done() // never read
			for p := range o.SlowSYNs {
				_ = sendTCP(snd, netip.AddrPortFrom(o.SlowClient, first+uint16(p)), o.SlowTarget, ipmangle.RST, 1001)
			}
		})
	}
	wg.Wait()
	return nil
}

func sendTCP(snd *inject.Sender, src, dst netip.AddrPort, flags ipmangle.TCPFlags, seq uint32) error {
	f := ipmangle.Fields{Src: src, Dst: dst, Seq: seq, Flags: flags, Window: 64240, WScale: -1, DontFragment: true}
	if flags&ipmangle.SYN != 0 {
		f.MSS = 1460
	}
	b := make([]byte, f.Len())
	f.Encode(b)
	return snd.Send(b)
}
