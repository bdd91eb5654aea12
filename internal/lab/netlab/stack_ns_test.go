package netlab_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/netlab"
)

// readFile reads a file inside namespace ns.
func readFile(ctx context.Context, t *testing.T, topo *netlab.Topology, ns, path string) string {
	t.Helper()
	out, err := topo.Run(ctx, ns, "cat", path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// serve starts the serve helper in ns on addr and waits until it listens.
func serve(ctx context.Context, t *testing.T, topo *netlab.Topology, ns, addr string, port uint16) {
	t.Helper()
	p, err := topo.StartEnv(ns, []string{helperEnv + "=serve"}, self(t), addr)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := topo.WaitListening(wctx, ns, port); err != nil {
		t.Fatalf("%v (helper stderr: %s)", err, p.StderrTail(512))
	}
}

// udpProbe sends IPv4 packets of the given sizes, DF set, from namespace
// from to addr in namespace to, and returns the sizes that arrived.
func udpProbe(ctx context.Context, t *testing.T, topo *netlab.Topology, from, to, addr string, sizes ...int) []int {
	t.Helper()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	recv := topo.Command(rctx, to, self(t), addr)
	recv.Env = append(os.Environ(), helperEnv+"=udprecv")
	stdout, err := recv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	recv.Stderr = &stderr
	if err := recv.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(stdout)
	if line, err := r.ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("udp receiver: %q %v %s", line, err, stderr.String())
	}
	args := []string{addr}
	for _, s := range sizes {
		args = append(args, strconv.Itoa(s))
	}
	if out, err := runHelper(ctx, t, topo, from, "udpsend", args...); err != nil {
		t.Fatalf("udpsend: %v: %s", err, out)
	}
	rest, _ := io.ReadAll(r)
	if err := recv.Wait(); err != nil {
		t.Fatalf("udp receiver: %v: %s", err, stderr.String())
	}
	var got []int
	for f := range strings.Lines(string(rest)) {
		var n int
		if _, err := fmt.Sscanf(f, "got %d", &n); err == nil {
			got = append(got, n)
		}
	}
	return got
}

// TestClientStack builds a lab with a changed client stack and MTUs and
// checks that each setting took effect, in the kernel's own terms.
func TestClientStack(t *testing.T) {
	topo := netlab.NewForTest(t, netlab.Options{
		ClientSysctls: []string{"net.ipv4.tcp_timestamps=0", "net.ipv4.tcp_sack=0", "net.ipv4.tcp_ecn=1"},
		ClientMSS:     536,
		ClientMTU:     9000,
		TargetMTU:     1400,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("sysctls", func(t *testing.T) {
		for _, c := range []struct{ ns, file, want string }{
			{netlab.Client, "/proc/sys/net/ipv4/tcp_timestamps", "0"},
			{netlab.Client, "/proc/sys/net/ipv4/tcp_sack", "0"},
			{netlab.Client, "/proc/sys/net/ipv4/tcp_ecn", "1"},
			{netlab.Online, "/proc/sys/net/ipv4/tcp_timestamps", "1"}, // per namespace
		} {
			if got := readFile(ctx, t, topo, c.ns, c.file); got != c.want {
				t.Errorf("%s %s: got %s, want %s", c.ns, c.file, got, c.want)
			}
		}
	})

	t.Run("routes", func(t *testing.T) {
		out, err := topo.Run(ctx, netlab.Client, "ip", "-4", "route", "show", "dev", netlab.IfToOnline)
		if err != nil {
			t.Fatal(err)
		}
		if want := "192.0.2.0/24 proto kernel scope link src 192.0.2.10 mtu lock 576 advmss 536"; !strings.Contains(string(out), want) {
			t.Errorf("client IPv4 routes:\n%s\nwant %q", out, want)
		}
		// 536+60 is below the IPv6 minimum MTU: IPv6 is left alone.
		out, err = topo.Run(ctx, netlab.Client, "ip", "-6", "route", "show", "dev", netlab.IfToOnline)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), "2001:db8:1::/64 proto kernel") || strings.Contains(string(out), "advmss") {
			t.Errorf("client IPv6 routes:\n%s\nwant the connected route, unchanged", out)
		}
		if topo.ClientMSS != 536 || topo.ClientMSS6 != 0 {
			t.Errorf("topology MSS %d, IPv6 %d; want 536, 0", topo.ClientMSS, topo.ClientMSS6)
		}
	})

	t.Run("mss", func(t *testing.T) {
		// Both ends of a connection use 536: the client by its route
		// MTU, online because the client advertised it. No timestamps
		// (off at the client), so no option bytes come off.
		serve(ctx, t, topo, netlab.Online, "192.0.2.1:80", 80)
		out, err := runHelper(ctx, t, topo, netlab.Client, "mss", "192.0.2.1:80")
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if want := "client mss 536; hello from 192.0.2.10 mss 536"; out != want {
			t.Errorf("got %q, want %q", out, want)
		}
	})

	t.Run("mtu", func(t *testing.T) {
		for _, c := range []struct{ ns, dev, want string }{
			{netlab.Client, netlab.IfToOnline, "9000"},
			{netlab.Online, netlab.IfToClient, "9000"},
			{netlab.Online, netlab.IfToTarget, "1500"},
			{netlab.Online, netlab.IfToAssistant, "1500"},
			{netlab.Target, netlab.IfToOnline, "1400"},
			{netlab.Target, netlab.IfToAssistant, "1400"},
			{netlab.Assistant, netlab.IfToTarget, "1500"},
		} {
			if got := readFile(ctx, t, topo, c.ns, "/sys/class/net/"+c.dev+"/mtu"); got != c.want {
				t.Errorf("%s %s mtu: got %s, want %s", c.ns, c.dev, got, c.want)
			}
		}
	})

	t.Run("path mtu", func(t *testing.T) {
		// Online sends at 1500 toward a target at 1400: the target's
		// veth drops the 1500-byte packet, without ICMP.
		before := readFile(ctx, t, topo, netlab.Target, "/sys/class/net/to-online/statistics/rx_dropped")
		got := udpProbe(ctx, t, topo, netlab.Online, netlab.Target, "198.51.100.2:9999", 1500, 1400)
		if fmt.Sprint(got) != "[1400]" {
			t.Errorf("target received packets of %v bytes, want [1400] (1500 dropped)", got)
		}
		after := readFile(ctx, t, topo, netlab.Target, "/sys/class/net/to-online/statistics/rx_dropped")
		b, _ := strconv.Atoi(before)
		if a, _ := strconv.Atoi(after); a <= b {
			t.Errorf("target to-online rx_dropped %s -> %s: the 1500-byte packet was not counted", before, after)
		}
		// The client link carries 9000-byte packets (from online: the
		// client's own routes are locked to 576 by ClientMSS).
		got = udpProbe(ctx, t, topo, netlab.Online, netlab.Client, "192.0.2.10:9999", 9000)
		if fmt.Sprint(got) != "[9000]" {
			t.Errorf("client received packets of %v bytes, want [9000]", got)
		}
	})

	t.Run("no loss rules", func(t *testing.T) {
		if _, err := exec.LookPath("nft"); err != nil {
			t.Skip("needs nft (nftables)")
		}
		for _, ns := range []string{netlab.Online, netlab.Target} {
			out, err := topo.Run(ctx, ns, "nft", "list", "ruleset")
			if err != nil {
				t.Fatal(err)
			}
			if s := strings.TrimSpace(string(out)); s != "" {
				t.Errorf("%s has nft rules without loss:\n%s", ns, s)
			}
		}
		c, r, err := topo.LossDrops(ctx)
		if c != 0 || r != 0 || err != nil {
			t.Errorf("LossDrops without loss: %d, %d, %v", c, r, err)
		}
	})
}

// TestClientMSSIPv6 checks that an MSS whose IPv6 MTU reaches 1280 is set on
// the IPv6 route too.
func TestClientMSSIPv6(t *testing.T) {
	topo := netlab.NewForTest(t, netlab.Options{ClientMSS: 1220})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := topo.Run(ctx, netlab.Client, "ip", "-6", "route", "show", "dev", netlab.IfToOnline)
	if err != nil {
		t.Fatal(err)
	}
	if want := "2001:db8:1::/64 proto kernel metric 256 mtu lock 1280 advmss 1220"; !strings.Contains(string(out), want) {
		t.Errorf("client IPv6 routes:\n%s\nwant %q", out, want)
	}
	if topo.ClientMSS6 != 1220 {
		t.Errorf("topology IPv6 MSS %d, want 1220", topo.ClientMSS6)
	}
	serve(ctx, t, topo, netlab.Online, "[2001:db8:1::1]:80", 80)
	out2, err := runHelper(ctx, t, topo, netlab.Client, "mss", "[2001:db8:1::1]:80")
	if err != nil {
		t.Fatalf("%v: %s", err, out2)
	}
	// Timestamps are on: 12 option bytes come off both ends.
	if want := "client mss 1208; hello from 2001:db8:1::10 mss 1208"; out2 != want {
		t.Errorf("got %q, want %q", out2, want)
	}
}

// TestLoss drops 20 % of the TCP frames on both paths and checks the
// counters against what was sent: 500 SYNs from online to a closed port of
// the target (the copy path), whose RSTs go to the assistant (the response
// path).
func TestLoss(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs nft (nftables): scripts/deps.sh installs it")
	}
	topo := netlab.NewForTest(t, netlab.Options{LossCopy: 20, LossResponse: 20})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if topo.LossCopy != 20 || topo.LossResponse != 20 {
		t.Errorf("topology loss %v/%v, want 20/20", topo.LossCopy, topo.LossResponse)
	}

	// Offloads off on the lossy senders only.
	for _, c := range []struct {
		ns, dev string
		lossy   bool
	}{
		{netlab.Online, netlab.IfToTarget, true},
		{netlab.Target, netlab.IfToAssistant, true},
		{netlab.Online, netlab.IfToClient, false},
	} {
		out, err := topo.Run(ctx, c.ns, "ethtool", "-k", c.dev)
		if err != nil {
			t.Fatal(err)
		}
		want := "on"
		if c.lossy {
			want = "off"
		}
		for _, f := range []string{"tcp-segmentation-offload", "generic-segmentation-offload"} {
			if !strings.Contains(string(out), f+": "+want) {
				t.Errorf("%s %s: want %s %s:\n%s", c.ns, c.dev, f, want, out)
			}
		}
		out, err = topo.Run(ctx, c.ns, "ip", "-d", "link", "show", "dev", c.dev)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(string(out), "gso_max_segs 1 "); got != c.lossy {
			t.Errorf("%s %s: gso_max_segs 1 is %v, want %v:\n%s", c.ns, c.dev, got, c.lossy, out)
		}
	}

	const sent = 500
	if out, err := runHelper(ctx, t, topo, netlab.Online, "syn", "192.0.2.10:20000", "198.51.100.2:9", strconv.Itoa(sent)); err != nil {
		t.Fatalf("syn: %v: %s", err, out)
	}
	// The RSTs leave the target from softirq: wait until the counters
	// settle.
	var c, r uint64
	for i := 0; i < 30; i++ {
		c2, r2, err := topo.LossDrops(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 && c2 == c && r2 == r {
			break
		}
		c, r = c2, r2
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("dropped %d of %d SYNs, %d of the %d RSTs", c, sent, r, sent-c)
	// Binomial: mean 100, sd 9 for the SYNs; mean 0.2*(500-c), sd 8 for
	// the RSTs. Five sd either way.
	if c < 55 || c > 145 {
		t.Errorf("copy path dropped %d of %d TCP frames at 20 %%, want about 100", c, sent)
	}
	if want := float64(sent-c) * 0.2; float64(r) < want-45 || float64(r) > want+45 || r == 0 {
		t.Errorf("response path dropped %d of %d TCP frames at 20 %%, want about %.0f", r, sent-c, want)
	}
}
