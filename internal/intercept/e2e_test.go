package intercept

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/hostile"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/netlab"
	"github.com/tcpcopy-go/tcpcopy/internal/testbin"
	"github.com/tcpcopy-go/tcpcopy/pkg/inject"
	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

// The namespace test re-executes this test binary inside the lab's
// namespaces in one of these roles, chosen by E2E_ROLE.
func TestMain(m *testing.M) {
	switch os.Getenv("E2E_ROLE") {
	case "":
		code := m.Run()
		testbin.Cleanup()
		os.Exit(code)
	case "listen":
		os.Exit(roleListen())
	case "probe":
		os.Exit(roleProbe())
	case "hold":
		os.Exit(roleHold())
	default:
		fmt.Fprintln(os.Stderr, "unknown E2E_ROLE")
		os.Exit(2)
	}
}

// roleListen is the target's TCP server: it accepts connections on port
// 8080 (IPv4 and IPv6) and holds them until killed.
func roleListen() int {
	ln, err := net.Listen("tcp", ":8080")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return 0
		}
		defer c.Close()
	}
}

// probeRecord is what the probe reports of one record.
type probeRecord struct {
	Link  string `json:"link"`
	Src   string `json:"src"`
	Dst   string `json:"dst"`
	Flags string `json:"flags"`
	Ack   uint32 `json:"ack"`
}

// roleProbe plays two tcpcopy links: link A announces the routes of the
// ports in E2E_PORTS_A, link B those of E2E_PORTS_B. Then it sends a SYN
// from E2E_CLIENT for every port of both lists and of E2E_UNROUTED to
// E2E_TARGET with a raw socket, collects the records both links receive,
// resets the target's half-open connections and prints the records as
// JSON lines.
func roleProbe() int {
	if err := probe(); err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		return 1
	}
	return 0
}

func ports(env string) []uint16 {
	var out []uint16
	for _, f := range strings.Split(os.Getenv(env), ",") {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, uint16(n))
		}
	}
	return out
}

type probeLink struct {
	name string
	conn net.Conn
	f    wire.Format
	rr   *wire.RecordReader
}

// roleHold holds E2E_HOLDERS idle links to E2E_INTERCEPT from
// E2E_SOURCE (a version-6 handshake, then nothing; re-dialled at once when
// intercept closes one) for E2E_HOLD, with the hostile package's holders
// scenario: the lockout of every real tcpcopy.
func roleHold() int {
	n, _ := strconv.Atoi(os.Getenv("E2E_HOLDERS"))
	d, _ := time.ParseDuration(os.Getenv("E2E_HOLD"))
	var src netip.Addr
	if s := os.Getenv("E2E_SOURCE"); s != "" {
		src = netip.MustParseAddr(s)
	}
	rep, err := hostile.Run(context.Background(), hostile.Options{
		Intercept: netip.MustParseAddrPort(os.Getenv("E2E_INTERCEPT")), Source: src,
		Duration: d, Scenarios: []string{hostile.Holders}, Holders: n,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "hold:", err)
		return 1
	}
	json.NewEncoder(os.Stdout).Encode(rep)
	return 0
}

// dialLink links to intercept; a version-7 link that gets no Hello (the
// connection was refused) is dialled again until E2E_DIAL_FOR passes.
func dialLink(name, addr string, v7 bool) (*probeLink, error) {
	patience, _ := time.ParseDuration(os.Getenv("E2E_DIAL_FOR"))
	deadline := time.Now().Add(patience)
	for {
		l, err := dialLinkOnce(name, addr, v7)
		if err == nil || !v7 || time.Now().After(deadline) {
			return l, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func dialLinkOnce(name, addr string, v7 bool) (*probeLink, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	l := &probeLink{name: name, conn: conn}
	if _, err := conn.Write(wire.AppendOffer(nil, v7)); err != nil {
		return nil, err
	}
	l.f = wire.Format{Version: wire.Version6, Combined: true}
	l.rr = wire.NewRecordReader(conn, l.f)
	if v7 {
		conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		if l.f, err = l.rr.ReadHello(); err != nil {
			return nil, fmt.Errorf("hello: %w", err)
		}
		conn.SetReadDeadline(time.Time{})
		if l.f.Version != wire.Version7 {
			return nil, fmt.Errorf("hello answered version %d", l.f.Version)
		}
	}
	return l, nil
}

func probe() error {
	v7 := os.Getenv("E2E_V7") == "1"
	client := netip.MustParseAddr(os.Getenv("E2E_CLIENT"))
	target := netip.MustParseAddrPort(os.Getenv("E2E_TARGET"))
	portsA, portsB, unrouted := ports("E2E_PORTS_A"), ports("E2E_PORTS_B"), ports("E2E_UNROUTED")
	// Each link announces its routes as soon as it is up, as tcpcopy
	// does: a link that says nothing may lose its slot to a newcomer when
	// the slots are all taken.
	link := func(name string, ps []uint16) (*probeLink, error) {
		l, err := dialLink(name, os.Getenv("E2E_INTERCEPT"), v7)
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			msg, err := wire.AppendRoute(nil, l.f, wire.Route{Client: netip.AddrPortFrom(client, p), Target: target, Op: wire.RouteAdd})
			if err != nil {
				return nil, err
			}
			if _, err := l.conn.Write(msg); err != nil {
				return nil, err
			}
		}
		return l, nil
	}
	a, err := link("A", portsA)
	if err != nil {
		return err
	}
	b, err := link("B", portsB)
	if err != nil {
		return err
	}

	snd, err := inject.Open()
	if err != nil {
		return err
	}
	defer snd.Close()
	send := func(port uint16, flags ipmangle.TCPFlags, seq uint32) error {
		f := ipmangle.Fields{
			Src: netip.AddrPortFrom(client, port), Dst: target,
			Seq: seq, Flags: flags, Window: 64240, WScale: -1, DontFragment: true,
		}
		if flags&ipmangle.SYN != 0 {
			f.MSS, f.WScale, f.SACKPermitted, f.HasTS, f.TSVal = 1460, 7, true, true, 1
		}
		buf := make([]byte, f.Len())
		f.Encode(buf)
		return snd.Send(buf)
	}
	all := slices.Concat(portsA, portsB, unrouted)
	for _, p := range all {
		if err := send(p, ipmangle.SYN, uint32(p)*1000); err != nil {
			return fmt.Errorf("send SYN: %w", err)
		}
	}

	// Collect until both links have one record per routed port, then a
	// little longer to catch anything unexpected.
	recs := make(chan probeRecord, 64)
	for _, l := range []*probeLink{a, b} {
		go func() {
			for l.rr.Next() {
				r := l.rr.Record()
				var p ipmangle.Parsed
				p.Decode(r.Header)
				recs <- probeRecord{Link: l.name, Src: p.Src.String(), Dst: p.Dst.String(), Flags: p.Flags.String(), Ack: p.Ack}
			}
		}()
	}
	var got []probeRecord
	want := len(portsA) + len(portsB)
	deadline := time.After(5 * time.Second)
collect:
	for {
		var extra <-chan time.Time
		if len(got) >= want {
			extra = time.After(300 * time.Millisecond)
		}
		select {
		case r := <-recs:
			got = append(got, r)
		case <-extra:
			break collect
		case <-deadline:
			break collect
		}
	}
	for _, p := range all {
		_ = send(p, ipmangle.RST, uint32(p)*1000+1)
	}
	enc := json.NewEncoder(os.Stdout)
	for _, r := range got {
		enc.Encode(r)
	}
	return nil
}

func TestNamespaceRouting(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds network namespaces")
	}
	bin := testbin.Build(t, "intercept")
	tests := []struct {
		name   string
		v7     bool
		family int
	}{
		{"protocol 6, IPv4", false, 4},
		{"protocol 7, IPv4", true, 4},
		{"protocol 7, IPv6", true, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			topo := netlab.NewForTest(t, netlab.Options{GRO: true})
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if _, err := topo.StartEnv("target", []string{"E2E_ROLE=listen"}, os.Args[0]); err != nil {
				t.Fatal(err)
			}
			icp, err := topo.Start("assistant", bin,
				"-i", topo.Assistant.TargetIf, "-F", "tcp and src port 8080",
				"-b", topo.Assistant.OnlineV4.String(), "--stats-interval", "0")
			if err != nil {
				t.Fatal(err)
			}
			if err := topo.WaitListening(ctx, "target", 8080); err != nil {
				t.Fatal(err)
			}
			if err := topo.WaitListening(ctx, "assistant", wire.DefaultPort); err != nil {
				t.Fatalf("intercept not listening: %v\n%s", err, icp.StderrTail(20))
			}

			runProbe(ctx, t, topo, icp, tt.v7, tt.family, 0)
			// Nothing of the target's answers reached the client or the online
			// host's kernel as a connection: checked by the lab tests; here the
			// intercept must still be running.
			if !icp.Running() {
				t.Errorf("intercept exited: %v\n%s", icp.Err(), icp.StderrTail(20))
			}
		})
	}
}

// runProbe runs the probe role in the online namespace (two links to
// intercept, routes, SYNs to the target) and checks that each link got
// the SYN-ACKs of exactly its routes. dialFor lets the probe dial again
// while intercept refuses it.
func runProbe(ctx context.Context, t *testing.T, topo *netlab.Topology, icp *netlab.Proc, v7on bool, family int, dialFor time.Duration) {
	t.Helper()
	{
		{
			client, target := topo.Client.V4, netip.AddrPortFrom(topo.Target.OnlineV4, 8080)
			if family == 6 {
				client, target = topo.Client.V6, netip.AddrPortFrom(topo.Target.OnlineV6, 8080)
			}
			v7 := "0"
			if v7on {
				v7 = "1"
			}
			cmd := topo.Command(ctx, "online", os.Args[0])
			cmd.Env = append(os.Environ(), "E2E_ROLE=probe", "E2E_V7="+v7, "E2E_DIAL_FOR="+dialFor.String(),
				"E2E_INTERCEPT="+netip.AddrPortFrom(topo.Assistant.OnlineV4, wire.DefaultPort).String(),
				"E2E_CLIENT="+client.String(), "E2E_TARGET="+target.String(),
				"E2E_PORTS_A=40001,40002,40003", "E2E_PORTS_B=40011", "E2E_UNROUTED=40021")
			out, err := cmd.Output()
			if err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					t.Fatalf("probe: %v\n%s\nintercept:\n%s", err, ee.Stderr, icp.StderrTail(20))
				}
				t.Fatalf("probe: %v", err)
			}
			var got []probeRecord
			dec := json.NewDecoder(strings.NewReader(string(out)))
			for dec.More() {
				var r probeRecord
				if err := dec.Decode(&r); err != nil {
					t.Fatalf("probe output %q: %v", out, err)
				}
				got = append(got, r)
			}
			var want []probeRecord
			for _, x := range []struct {
				link  string
				ports []uint16
			}{{"A", []uint16{40001, 40002, 40003}}, {"B", []uint16{40011}}} {
				for _, p := range x.ports {
					want = append(want, probeRecord{Link: x.link, Src: target.String(),
						Dst: netip.AddrPortFrom(client, p).String(), Flags: (ipmangle.SYN | ipmangle.ACK).String(), Ack: uint32(p)*1000 + 1})
				}
			}
			sortRecords := func(rs []probeRecord) {
				slices.SortFunc(rs, func(a, b probeRecord) int { return strings.Compare(a.Link+a.Dst, b.Link+b.Dst) })
			}
			sortRecords(got)
			sortRecords(want)
			if !slices.Equal(got, want) {
				t.Errorf("records:\n got %v\nwant %v\nintercept:\n%s", got, want, icp.StderrTail(20))
			}
		}
	}
}

// TestNamespaceLockout: idle links that completed their handshake fill
// every slot (--max-links) from another address of the online host, and
// are dialled again whenever intercept closes one; a real tcpcopy link
// must still get in once they are idle for --link-idle, and get every
// response of its routes. Before, 256 such links locked every tcpcopy out
// for as long as they stayed.
func TestNamespaceLockout(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds network namespaces")
	}
	bin := testbin.Build(t, "intercept")
	topo := netlab.NewForTest(t, netlab.Options{GRO: true})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := topo.StartEnv("target", []string{"E2E_ROLE=listen"}, os.Args[0]); err != nil {
		t.Fatal(err)
	}
	const maxLinks = 8
	icp, err := topo.Start("assistant", bin,
		"-i", topo.Assistant.TargetIf, "-F", "tcp and src port 8080",
		"-b", topo.Assistant.OnlineV4.String(), "--stats-interval", "0",
		"--max-links", strconv.Itoa(maxLinks), "--link-idle", "1s")
	if err != nil {
		t.Fatal(err)
	}
	if err := topo.WaitListening(ctx, "target", 8080); err != nil {
		t.Fatal(err)
	}
	if err := topo.WaitListening(ctx, "assistant", wire.DefaultPort); err != nil {
		t.Fatalf("intercept not listening: %v\n%s", err, icp.StderrTail(20))
	}
	// The holders come from a second address of the online host.
	const holderAddr = "198.51.100.140"
	if _, err := topo.Run(ctx, "online", "ip", "addr", "add", holderAddr+"/25", "dev", topo.Online.AssistantIf); err != nil {
		t.Fatal(err)
	}
	hold, err := topo.StartEnv("online", []string{"E2E_ROLE=hold", "E2E_HOLDERS=" + strconv.Itoa(2*maxLinks), "E2E_HOLD=4s", "E2E_SOURCE=" + holderAddr,
		"E2E_INTERCEPT=" + netip.AddrPortFrom(topo.Assistant.OnlineV4, wire.DefaultPort).String()}, os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	// Every slot taken: wait until intercept holds maxLinks connections.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		socks, err := icp.TCPSockets()
		n := 0
		for _, s := range socks {
			if s.Local.Port() == wire.DefaultPort && s.State == netlab.TCPEstablished {
				n++
			}
		}
		if err == nil && n >= maxLinks {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the holders did not take the slots: %d established (%v)", n, err)
		}
	}
	start := time.Now()
	runProbe(ctx, t, topo, icp, true, 4, 5*time.Second)
	t.Logf("the probe linked and got its records %v after the slots were full", time.Since(start).Round(time.Millisecond))
	if err := hold.Wait(); err != nil {
		t.Errorf("holders: %v\n%s", err, hold.StderrTail(512))
	}
	if b, err := os.ReadFile(hold.StdoutPath); err == nil {
		t.Logf("holders: %s", strings.TrimSpace(string(b)))
	}
	if !icp.Running() {
		t.Errorf("intercept exited: %v\n%s", icp.Err(), icp.StderrTail(20))
	}
}
