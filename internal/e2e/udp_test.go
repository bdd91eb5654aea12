package e2e

// UDP copying with the real tcpcopy binary: a DNS load from the client
// namespace against a DNS server on online (package dnslab), copied to a
// DNS server on the target that records every query it gets; live, then
// offline from a recording of the live run, IPv4 and IPv6 together. The
// load mixes small queries, answers truncated with the TC bit, answers
// and queries larger than the MTU (fragmented by the kernels), so that
// each copy must arrive whole.

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/dnslab"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/netlab"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/recorder"
	"github.com/tcpcopy-go/tcpcopy/internal/nsdo"
	"github.com/tcpcopy-go/tcpcopy/internal/testbin"
)

// DNS ports of the lab: the online service, and the target's.
const (
	dnsOnlinePort = 53
	dnsTargetPort = 5353
)

// dnsMappings are the -x mappings of the DNS service, IPv4 and IPv6.
const dnsMappings = "udp:{online.client_v4}:53-{target.online_v4}:5353,udp:[{online.client_v6}]:53-[{target.online_v6}]:5353"

// dnsServe starts a recording DNS server in namespace ns on addrs; it is
// closed at the end of the test.
func dnsServe(t *testing.T, ns string, addrs ...netip.AddrPort) *dnslab.Server {
	t.Helper()
	return dnsServeWith(t, ns, dnslab.ServeOptions{}, addrs...)
}

// dnsServeWith is dnsServe with options (a target that misbehaves).
func dnsServeWith(t *testing.T, ns string, o dnslab.ServeOptions, addrs ...netip.AddrPort) *dnslab.Server {
	t.Helper()
	var conns []*net.UDPConn
	err := nsdo.Do(ns, func() error {
		for _, a := range addrs {
			network := "udp4"
			if a.Addr().Is6() {
				network = "udp6"
			}
			c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(a))
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		return nil
	})
	if err != nil {
		for _, c := range conns {
			c.Close()
		}
		t.Fatalf("DNS server in %s: %v", ns, err)
	}
	s := dnslab.ServeWith(o, conns...)
	t.Cleanup(func() { s.Close() })
	return s
}

// dnsLoads runs count queries against the online server's IPv4 and IPv6
// addresses at once, from the client namespace, and checks that every one
// was answered.
func dnsLoads(t *testing.T, topo *netlab.Topology, count int) {
	t.Helper()
	var wg sync.WaitGroup
	for _, srv := range []netip.Addr{topo.Online.ClientV4, topo.Online.ClientV6} {
		wg.Go(func() { dnsLoad(t, topo, srv, count) })
	}
	wg.Wait()
}

// dnsLoad runs count queries against the online server at srv, from the
// client namespace, and checks that every one was answered.
func dnsLoad(t *testing.T, topo *netlab.Topology, srv netip.Addr, count int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fam := "v4"
	if srv.Is6() {
		fam = "v6"
	}
	res, err := dnslab.Run(ctx, dnslab.Options{
		Server: netip.AddrPortFrom(srv, dnsOnlinePort), Count: count, Rate: 150, Concurrency: 8,
		Timeout: 2 * time.Second, Suffix: fam + ".lab.example",
		Open: func() (c *net.UDPConn, err error) {
			err = nsdo.Do(topo.Client.Name, func() error {
				c, err = net.ListenUDP("udp", nil)
				return err
			})
			return c, err
		},
	})
	if err != nil {
		t.Errorf("DNS load %s: %v", fam, err)
		return
	}
	t.Logf("DNS load %s: %+v", fam, res)
	if res.Sent != count || res.Answered != count || res.Truncated != count/5 || res.MaxQuery <= 1500 || res.MaxAnswer <= 1500 {
		t.Errorf("DNS load %s: %+v: want every query answered, a fifth truncated, queries and answers above 1500 bytes", fam, res)
	}
}

// startTcpcopy starts tcpcopy in the online namespace with args
// (placeholders expanded) and waits until it runs.
func startTcpcopy(t *testing.T, topo *netlab.Topology, args ...string) *netlab.Proc {
	t.Helper()
	args, err := labrun.Expand(args, labrun.Vars(topo))
	if err != nil {
		t.Fatal(err)
	}
	p, err := topo.Start(netlab.Online, testbin.Build(t, "tcpcopy"), args...)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if b, _ := os.ReadFile(p.StderrPath); strings.Contains(string(b), `"tcpcopy started"`) {
			return p
		}
		if !p.Running() || time.Now().After(deadline) {
			t.Fatalf("tcpcopy %v did not start: %v %s", args, p.Err(), p.StderrTail(2000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitCount waits until srv has recorded at least n queries, at most 10 s.
func waitCount(srv *dnslab.Server, n int) {
	for deadline := time.Now().Add(10 * time.Second); srv.Count() < n && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
}

// checkDNSCopies checks that every query online recorded reached the
// target exactly copies times, whole (the same payload length), each copy
// from its own source port, and nothing else did.
func checkDNSCopies(t *testing.T, online, target []dnslab.Entry, copies int) {
	t.Helper()
	want := map[string]dnslab.Entry{}
	for _, e := range online {
		want[e.Query.Name] = e
	}
	got := map[string][]dnslab.Entry{}
	for _, e := range target {
		got[e.Query.Name] = append(got[e.Query.Name], e)
	}
	bigs := 0
	for name, o := range want {
		cs := got[name]
		if len(cs) != copies {
			t.Errorf("query %s reached the target %d times, want %d", name, len(cs), copies)
			continue
		}
		ports := map[uint16]bool{}
		for _, c := range cs {
			if c.Size != o.Size || c.Query != o.Query {
				t.Errorf("query %s: the target got %d bytes %+v, online %d bytes %+v", name, c.Size, c.Query, o.Size, o.Query)
			}
			if c.Remote.Addr() != o.Remote.Addr() {
				t.Errorf("query %s: copy from %v, client %v", name, c.Remote, o.Remote)
			}
			ports[c.Remote.Port()] = true
		}
		if len(ports) != copies {
			t.Errorf("query %s: %d copies from %d source ports", name, copies, len(ports))
		}
		if !ports[o.Remote.Port()] {
			t.Errorf("query %s: no copy from the client's own port %d", name, o.Remote.Port())
		}
		if k, _ := dnslab.KindOf(name); k == dnslab.BigQuery {
			if o.Size <= 1500 {
				t.Errorf("query %s of %d bytes: not fragmented by the client", name, o.Size)
			}
			bigs++
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("the target got query %s, which online did not", name)
		}
	}
	if len(want) == 0 || bigs == 0 {
		t.Errorf("%d queries online, %d of them fragmented", len(want), bigs)
	}
	if len(target) != copies*len(online) {
		t.Errorf("the target got %d queries for %d online: %.2f×, want %d×", len(target), len(online), float64(len(target))/float64(len(online)), copies)
	}
	t.Logf("%d queries online (%d fragmented), %d at the target: %.2f×", len(online), bigs, len(target), float64(len(target))/float64(max(len(online), 1)))
}

// dnsSummary checks tcpcopy's UDP counts in its last log line msg.
func dnsSummary(t *testing.T, p *netlab.Proc, msg string, captured, copied int) {
	t.Helper()
	sum := offLogLine(t, p.StderrPath, msg)
	if sum == nil {
		t.Fatalf("no %q line in tcpcopy's log: %s", msg, p.StderrTail(2000))
	}
	t.Logf("tcpcopy %s: %s", msg, offSummaryText(sum))
	for _, c := range []struct {
		key  string
		want float64
	}{{"udp_captured", float64(captured)}, {"udp_copied", float64(copied)}, {"udp_dropped", 0}} {
		if got := offNum(t, sum, c.key); got != c.want {
			t.Errorf("%s = %v, want %v", c.key, got, c.want)
		}
	}
	if offNum(t, sum, "udp_reassembled") == 0 || offNum(t, sum, "udp_fragmented") == 0 {
		t.Errorf("no datagram was reassembled and fragmented again")
	}
}

// TestCopyDNS copies a DNS load over IPv4 and IPv6 live, records it, and
// replays the recording offline, once at twice the speed, once with three
// copies of each query.
func TestCopyDNS(t *testing.T) {
	needRoot(t)
	const perFamily = 150 // 30 of each kind
	pcap := filepath.Join(t.TempDir(), "dns.pcap")
	var online []dnslab.Entry

	t.Run("live", func(t *testing.T) {
		topo := netlab.NewForTest(t, netlab.Options{GRO: true})
		defer topo.Close()
		onlineSrv := dnsServe(t, topo.Online.Name,
			netip.AddrPortFrom(topo.Online.ClientV4, dnsOnlinePort), netip.AddrPortFrom(topo.Online.ClientV6, dnsOnlinePort))
		target := dnsServe(t, topo.Target.Name,
			netip.MustParseAddrPort("0.0.0.0:5353"), netip.MustParseAddrPort("[::]:5353"))
		f, err := os.Create(pcap)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		rec, err := labrun.RecordPcap(topo.Online.Name, netlab.IfToClient, f)
		if err != nil {
			t.Fatal(err)
		}
		tc := startTcpcopy(t, topo, "-x", dnsMappings, "-i", "{online.client_if}", "--log-format", "json", "--stats-interval", "0")
		dnsLoads(t, topo, perFamily)
		online = onlineSrv.Entries()
		waitCount(target, len(online))
		if err := tc.Stop(); err != nil {
			t.Errorf("tcpcopy: %v", err)
		}
		n, err := rec.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("recorded %d packets", n)
		checkDNSCopies(t, online, target.Entries(), 1)
		dnsSummary(t, tc, "tcpcopy stopped", len(online), len(online))
	})
	if t.Failed() || len(online) == 0 {
		t.FailNow()
	}
	for _, tt := range []struct {
		name   string
		copies int
		args   []string
	}{
		{"offline -a 2", 1, []string{"-a", "2"}},
		{"offline -n 3", 3, []string{"-n", "3", "-a", "4"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			topo := netlab.NewForTest(t, netlab.Options{GRO: true})
			defer topo.Close()
			target := dnsServe(t, topo.Target.Name,
				netip.MustParseAddrPort("0.0.0.0:5353"), netip.MustParseAddrPort("[::]:5353"))
			args := append([]string{"-x", dnsMappings, "-i", pcap, "--log-format", "json", "--stats-interval", "0"}, tt.args...)
			start := time.Now()
			tc := startTcpcopy(t, topo, args...)
			select {
			case <-tc.Done():
			case <-time.After(60 * time.Second):
				t.Fatalf("tcpcopy %v did not finish the replay: %s", args, tc.StderrTail(2000))
			}
			if err := tc.Err(); err != nil {
				t.Fatalf("tcpcopy %v: %v %s", args, err, tc.StderrTail(2000))
			}
			t.Logf("replayed in %v", time.Since(start).Round(time.Millisecond))
			waitCount(target, tt.copies*len(online)) // the last copies are on their way
			checkDNSCopies(t, online, target.Entries(), tt.copies)
			dnsSummary(t, tc, "offline replay finished", len(online), tt.copies*len(online))
		})
	}
}

// TestCopyDNSBesideHTTP runs one tcpcopy with a TCP and a UDP mapping and
// -n 3: the HTTP load and the DNS load, at the same time, both reach the
// target exactly three times.
func TestCopyDNSBesideHTTP(t *testing.T) {
	needRoot(t)
	var onlineSrv, target *dnslab.Server
	cfg := labrun.Config{
		GRO: true,
		Load: load.Options{
			Rate: 40, Duration: 2 * time.Second, MaxRequests: 80,
			Mode: load.KeepAlive, RequestsPerConn: 10, BodySizes: []int{0, 100, 5000}, Concurrency: 4,
		},
		TcpcopyArgs: []string{"-x", "80-{target.online_v4}:8080," + dnsMappings, "-s", "{assistant.online_v4}",
			"-i", "{online.client_if}", "-n", "3", "--log-format", "json"},
		Setup: func(ctx context.Context, lab *labrun.Lab) error {
			topo := lab.Topo
			onlineSrv = dnsServe(t, topo.Online.Name,
				netip.AddrPortFrom(topo.Online.ClientV4, dnsOnlinePort), netip.AddrPortFrom(topo.Online.ClientV6, dnsOnlinePort))
			target = dnsServe(t, topo.Target.Name,
				netip.MustParseAddrPort("0.0.0.0:5353"), netip.MustParseAddrPort("[::]:5353"))
			return nil
		},
		During: func(ctx context.Context, lab *labrun.Lab) error {
			dnsLoads(t, lab.Topo, 50)
			waitCount(target, 3*onlineSrv.Count())
			return nil
		},
	}
	rep, online, tgt := run(t, cfg)
	c := recorder.Compare(online, tgt)
	if c.Online == 0 || c.Matched != c.Online || c.Missing != 0 || c.Mismatched != 0 || c.Unexpected != 0 || c.Duplicates != 2*c.Online {
		t.Errorf("HTTP: online %d: matched %d, missing %d, different %d, unexpected %d, duplicates %d (want %d)",
			c.Online, c.Matched, c.Missing, c.Mismatched, c.Unexpected, c.Duplicates, 2*c.Online)
	}
	if rep.Tcpcopy.Exit != "" || rep.Intercept.Exit != "" {
		t.Errorf("a daemon died: tcpcopy %q, intercept %q", rep.Tcpcopy.Exit, rep.Intercept.Exit)
	}
	checkDNSCopies(t, onlineSrv.Entries(), target.Entries(), 3)
	t.Logf("HTTP: %d requests, %d copies at the target", c.Online, len(tgt))
}
