package netlab_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/netlab"
)

// helperEnv makes the test binary act as a small network tool inside a
// namespace (see helper) instead of running tests.
const helperEnv = "NETLAB_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helper(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

func self(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// runHelper runs the test binary as helper mode in ns and returns its output.
func runHelper(ctx context.Context, t *testing.T, topo *netlab.Topology, ns, mode string, args ...string) (string, error) {
	t.Helper()
	cmd := topo.Command(ctx, ns, self(t), args...)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func TestTopology(t *testing.T) {
	topo := netlab.NewForTest(t, netlab.Options{ExtraClients: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for _, ns := range []string{topo.Client.Name, topo.Online.Name, topo.Target.Name, topo.Assistant.Name} {
		if _, err := os.Stat(filepath.Join("/run/netns", ns)); err != nil {
			t.Fatalf("namespace %s: %v", ns, err)
		}
		if !strings.HasPrefix(ns, topo.ID+"-") {
			t.Errorf("namespace %s does not start with %s", ns, topo.ID)
		}
	}
	if got, want := len(topo.Client.Extra4), 3; got != want {
		t.Fatalf("extra clients: got %d, want %d", got, want)
	}
	if got, want := topo.Client.Extra4[2], netip.MustParseAddr("192.0.2.13"); got != want {
		t.Errorf("third extra client: got %v, want %v", got, want)
	}

	t.Run("addresses", func(t *testing.T) {
		out, err := topo.Run(ctx, netlab.Client, "ip", "-br", "addr", "show", "dev", netlab.IfToOnline)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range append([]netip.Addr{topo.Client.V4, topo.Client.V6}, append(topo.Client.Extra4, topo.Client.Extra6...)...) {
			if !strings.Contains(string(out), a.String()+"/") {
				t.Errorf("client address %v missing: %s", a, out)
			}
		}
		if strings.Contains(string(out), "tentative") {
			t.Errorf("tentative address (nodad missing): %s", out)
		}
	})

	t.Run("routes", func(t *testing.T) {
		cases := []struct {
			name, ns string
			args     []string
			want     string
		}{
			{"target v4 to client via assistant", netlab.Target, []string{"route", "get", "192.0.2.10"}, "via 203.0.113.3 dev to-assistant"},
			{"target v4 to extra client via assistant", netlab.Target, []string{"route", "get", "192.0.2.13"}, "via 203.0.113.3 dev to-assistant"},
			{"target v6 to client via assistant", netlab.Target, []string{"-6", "route", "get", "2001:db8:1::10"}, "via 2001:db8:3::3 dev to-assistant"},
			{"target v4 to online direct", netlab.Target, []string{"route", "get", "198.51.100.1"}, "dev to-online"},
			{"online v4 to target", netlab.Online, []string{"route", "get", "198.51.100.2"}, "dev to-target"},
			{"online v4 to assistant", netlab.Online, []string{"route", "get", "198.51.100.130"}, "dev to-assistant"},
		}
		for _, c := range cases {
			out, err := topo.Run(ctx, c.ns, "ip", c.args...)
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
				continue
			}
			if !strings.Contains(string(out), c.want) {
				t.Errorf("%s: got %q, want it to contain %q", c.name, out, c.want)
			}
		}
		// The client has no route to the target: copies can only come
		// from online.
		if out, err := topo.Run(ctx, netlab.Client, "ip", "route", "get", "198.51.100.2"); err == nil {
			t.Errorf("client has a route to the target: %s", out)
		}
	})

	t.Run("sysctls", func(t *testing.T) {
		cases := []struct {
			ns, file, want string
		}{
			{netlab.Assistant, "/proc/sys/net/ipv4/ip_forward", "0"},
			{netlab.Assistant, "/proc/sys/net/ipv6/conf/all/forwarding", "0"},
			{netlab.Online, "/proc/sys/net/ipv4/ip_forward", "0"},
			{netlab.Online, "/proc/sys/net/ipv6/conf/all/forwarding", "0"},
			{netlab.Target, "/proc/sys/net/ipv4/conf/all/rp_filter", "0"},
			{netlab.Target, "/proc/sys/net/ipv4/conf/to-online/rp_filter", "0"},
			{netlab.Target, "/proc/sys/net/ipv4/conf/to-assistant/rp_filter", "0"},
		}
		for _, c := range cases {
			out, err := topo.Run(ctx, c.ns, "cat", c.file)
			if err != nil {
				t.Error(err)
				continue
			}
			if got := strings.TrimSpace(string(out)); got != c.want {
				t.Errorf("%s %s: got %s, want %s", c.ns, c.file, got, c.want)
			}
		}
	})

	t.Run("reachability", func(t *testing.T) {
		servers := []struct {
			ns    string
			addrs []string
			port  uint16
		}{
			{netlab.Online, []string{"192.0.2.1:80", "[2001:db8:1::1]:80"}, 80},
			{netlab.Target, []string{":8080"}, 8080},
			{netlab.Assistant, []string{"198.51.100.130:36524"}, 36524},
		}
		for _, s := range servers {
			p, err := topo.StartEnv(s.ns, []string{helperEnv + "=serve"}, self(t), s.addrs...)
			if err != nil {
				t.Fatal(err)
			}
			wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
			err = topo.WaitListening(wctx, s.ns, s.port)
			wcancel()
			if err != nil {
				t.Fatalf("%v (helper stderr: %s)", err, p.StderrTail(512))
			}
		}
		cases := []struct {
			name, ns, addr, local string
		}{
			{"client to online v4", netlab.Client, "192.0.2.1:80", ""},
			{"client to online v6", netlab.Client, "[2001:db8:1::1]:80", ""},
			{"extra client to online v4", netlab.Client, "192.0.2.1:80", "192.0.2.13"},
			{"extra client to online v6", netlab.Client, "[2001:db8:1::1]:80", "2001:db8:1::13"},
			{"online to target v4", netlab.Online, "198.51.100.2:8080", ""},
			{"online to target v6", netlab.Online, "[2001:db8:2::2]:8080", ""},
			{"online to assistant", netlab.Online, "198.51.100.130:36524", ""},
		}
		for _, c := range cases {
			args := []string{c.addr}
			if c.local != "" {
				args = append(args, c.local)
			}
			out, err := runHelper(ctx, t, topo, c.ns, "dial", args...)
			if err != nil {
				t.Errorf("%s: %v: %s", c.name, err, out)
				continue
			}
			if !strings.HasPrefix(out, "hello") {
				t.Errorf("%s: got %q", c.name, out)
			}
			if c.local != "" && !strings.Contains(out, "from "+c.local) {
				t.Errorf("%s: server saw %q, want source %s", c.name, out, c.local)
			}
		}
	})

	// The property TCPCopy depends on: a SYN sent from online with a
	// client source address is accepted by the target (rp_filter off), and
	// the SYN-ACK goes to the assistant.
	t.Run("responses to spoofed client go to assistant", func(t *testing.T) {
		sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
		defer scancel()
		sniff := topo.Command(sctx, netlab.Assistant, self(t), netlab.IfToTarget, "198.51.100.2:8080", "192.0.2.10:40001")
		sniff.Env = append(os.Environ(), helperEnv+"=sniff")
		stdout, err := sniff.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		sniff.Stderr = &stderr
		if err := sniff.Start(); err != nil {
			t.Fatal(err)
		}
		defer sniff.Wait()
		r := bufio.NewReader(stdout)
		if line, err := r.ReadString('\n'); err != nil || line != "ready\n" {
			t.Fatalf("sniffer: %q %v %s", line, err, stderr.String())
		}
		if out, err := runHelper(ctx, t, topo, netlab.Online, "syn", "192.0.2.10:40001", "198.51.100.2:8080"); err != nil {
			t.Fatalf("syn: %v: %s", err, out)
		}
		rest, _ := io.ReadAll(r)
		if err := sniff.Wait(); err != nil {
			t.Fatalf("sniffer: %v: %s %s", err, rest, stderr.String())
		}
		if got := strings.TrimSpace(string(rest)); got != "synack" {
			t.Errorf("sniffer: got %q, want synack", got)
		}
	})
}

func TestClose(t *testing.T) {
	topo := netlab.NewForTest(t, netlab.Options{})
	p, err := topo.Start(netlab.Online, "sleep", "30")
	if err != nil {
		t.Fatal(err)
	}
	if err := topo.Close(); err != nil {
		t.Fatal(err)
	}
	if p.Running() {
		t.Error("process still running after Close")
	}
	var ee *exec.ExitError
	if err := p.Wait(); !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Errorf("sleep ended with %v, want SIGTERM", err)
	}
	if err := p.Err(); err != nil {
		t.Errorf("process stopped by Close: got error %v, want nil", err)
	}
	for _, ns := range []string{topo.Client.Name, topo.Online.Name, topo.Target.Name, topo.Assistant.Name} {
		if _, err := os.Stat(filepath.Join("/run/netns", ns)); err == nil {
			t.Errorf("namespace %s still exists after Close", ns)
		}
	}
	if err := topo.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := topo.Start(netlab.Online, "true"); err == nil {
		t.Error("Start after Close succeeded")
	}
	if err := topo.Command(context.Background(), netlab.Online, "true").Run(); err == nil {
		t.Error("Command after Close ran")
	}
}

func TestUnknownNamespace(t *testing.T) {
	topo := netlab.NewForTest(t, netlab.Options{})
	if err := topo.Command(context.Background(), "host", "true").Run(); err == nil {
		t.Error("Command in unknown namespace ran")
	}
	if _, err := topo.Start("", "true"); err == nil {
		t.Error("Start in empty namespace succeeded")
	}
}

func TestProcUsageAndFailure(t *testing.T) {
	topo := netlab.NewForTest(t, netlab.Options{})
	// A process that fails on its own: Stop reports it with its stderr.
	p, err := topo.Start(netlab.Target, "sh", "-c", "echo boom >&2; exit 3")
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if err := p.Stop(); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("Stop of failed process: got %v, want an error with its stderr", err)
	}
	// A busy process: Sample sees CPU time and memory.
	busy, err := topo.Start(netlab.Online, "sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 30")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var u netlab.Usage
	for time.Now().Before(deadline) {
		if u, err = busy.Sample(); err != nil {
			t.Fatal(err)
		}
		if u.CPU() > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if u.CPU() <= 0 || u.PeakRSS <= 0 {
		t.Errorf("sample: got %+v, want CPU and RSS > 0", u)
	}
	if err := busy.Stop(); err != nil {
		t.Fatal(err)
	}
	if after := busy.Usage(); after.CPU() < u.CPU() || after.PeakRSS < u.PeakRSS {
		t.Errorf("usage after exit %+v is below the sample %+v", after, u)
	}
}

// helper implements the helper modes; it runs inside a namespace.
func helper(mode string, args []string) int {
	var err error
	switch mode {
	case "serve":
		err = helperServe(args)
	case "dial":
		err = helperDial(args)
	case "syn":
		err = helperSYN(args)
	case "sniff":
		err = helperSniff(args)
	case "mss":
		err = helperMSS(args)
	case "udprecv":
		err = helperUDPRecv(args)
	case "udpsend":
		err = helperUDPSend(args)
	default:
		err = fmt.Errorf("unknown helper mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// helperServe accepts on every address and answers "hello from <peer>".
func helperServe(addrs []string) error {
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return err
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
				fmt.Fprintf(c, "hello from %s mss %d\n", host, tcpMaxSeg(c))
				c.Close()
			}
		}()
	}
	time.Sleep(time.Minute) // bounded; Stop or Close ends it sooner
	return nil
}

// helperDial dials args[0], from args[1] when given, and prints the reply.
func helperDial(args []string) error {
	d := net.Dialer{Timeout: 3 * time.Second}
	if len(args) > 1 {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(args[1])}
	}
	c, err := d.Dial("tcp", args[0])
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(b)
	return err
}

// helperSYN sends an IPv4 TCP SYN from args[0] to args[1] through a raw
// socket, with a source address that is not local; args[2], when given, is
// the number of SYNs, from consecutive source ports.
func helperSYN(args []string) error {
	src, err := netip.ParseAddrPort(args[0])
	if err != nil {
		return err
	}
	dst, err := netip.ParseAddrPort(args[1])
	if err != nil {
		return err
	}
	n := 1
	if len(args) > 2 {
		if n, err = strconv.Atoi(args[2]); err != nil {
			return err
		}
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer syscall.Close(fd)
	for i := range n {
		pkt := synPacket(netip.AddrPortFrom(src.Addr(), src.Port()+uint16(i)), dst)
		if err := syscall.Sendto(fd, pkt, 0, &syscall.SockaddrInet4{Addr: dst.Addr().As4()}); err != nil {
			return os.NewSyscallError("sendto", err)
		}
	}
	return nil
}

// synPacket builds an IPv4 TCP SYN with valid checksums.
func synPacket(src, dst netip.AddrPort) []byte {
	pkt := make([]byte, 40)
	// IPv4 header.
	pkt[0] = 0x45                               // version 4, IHL 5
	binary.BigEndian.PutUint16(pkt[2:], 40)     // total length
	binary.BigEndian.PutUint16(pkt[4:], 0x1234) // id
	pkt[8] = 64                                 // TTL
	pkt[9] = syscall.IPPROTO_TCP
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	copy(pkt[12:16], s4[:])
	copy(pkt[16:20], d4[:])
	binary.BigEndian.PutUint16(pkt[10:], ^sum(0, pkt[:20]))
	// TCP header.
	tcp := pkt[20:]
	binary.BigEndian.PutUint16(tcp[0:], src.Port())
	binary.BigEndian.PutUint16(tcp[2:], dst.Port())
	binary.BigEndian.PutUint32(tcp[4:], 1000) // seq
	tcp[12] = 5 << 4                          // data offset
	tcp[13] = 0x02                            // SYN
	binary.BigEndian.PutUint16(tcp[14:], 65535)
	pseudo := make([]byte, 12)
	copy(pseudo[0:4], s4[:])
	copy(pseudo[4:8], d4[:])
	pseudo[9] = syscall.IPPROTO_TCP
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(tcp)))
	binary.BigEndian.PutUint16(tcp[16:], ^sum(uint32(sum(0, pseudo)), tcp))
	return pkt
}

// sum is the RFC 1071 one's complement sum, folded.
func sum(initial uint32, b []byte) uint16 {
	s := initial
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// helperSniff waits up to 5 s on interface args[0] for a TCP SYN-ACK from
// args[1] to args[2], printing "ready" once listening and "synack" when seen.
func helperSniff(args []string) error {
	ifi, err := net.InterfaceByName(args[0])
	if err != nil {
		return err
	}
	from, err := netip.ParseAddrPort(args[1])
	if err != nil {
		return err
	}
	to, err := netip.ParseAddrPort(args[2])
	if err != nil {
		return err
	}
	const ethPIP = 0x0800
	proto := int(ethPIP>>8 | (ethPIP&0xff)<<8) // htons
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_DGRAM, proto)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: ifi.Index}); err != nil {
		return os.NewSyscallError("bind", err)
	}
	tv := syscall.NsecToTimeval(int64(200 * time.Millisecond))
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		return os.NewSyscallError("setsockopt", err)
	}
	fmt.Println("ready")
	buf := make([]byte, 65536)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		n, _, err := syscall.Recvfrom(fd, buf, 0)
		if err != nil {
			continue // timeout or EINTR
		}
		p := buf[:n]
		if n < 40 || p[0]>>4 != 4 || p[9] != syscall.IPPROTO_TCP {
			continue
		}
		ihl := int(p[0]&0xf) * 4
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte(p[12:16])), binary.BigEndian.Uint16(p[ihl:]))
		dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte(p[16:20])), binary.BigEndian.Uint16(p[ihl+2:]))
		if src == from && dst == to && p[ihl+13]&0x12 == 0x12 {
			fmt.Println("synack")
			return nil
		}
	}
	return fmt.Errorf("no SYN-ACK from %v to %v on %s", from, to, args[0])
}

// TestProcTCPSockets checks that a process's own sockets are told apart
// from those of another process in the same namespace.
func TestProcTCPSockets(t *testing.T) {
	topo := netlab.NewForTest(t, netlab.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := func(addr string) *netlab.Proc {
		p, err := topo.StartEnv(netlab.Target, []string{helperEnv + "=serve"}, self(t), addr)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	a, b := start("198.51.100.2:7001"), start("[2001:db8:2::2]:7002")
	for _, port := range []uint16{7001, 7002} {
		if err := topo.WaitListening(ctx, netlab.Target, port); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		p    *netlab.Proc
		want string
	}{{a, "198.51.100.2:7001"}, {b, "[2001:db8:2::2]:7002"}} {
		socks, err := c.p.TCPSockets()
		if err != nil {
			t.Fatal(err)
		}
		if len(socks) != 1 || socks[0].Local.String() != c.want || socks[0].State != netlab.TCPListen || socks[0].Inode == 0 {
			t.Errorf("pid %d sockets %+v, want one listening on %s", c.p.Pid, socks, c.want)
		}
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.TCPSockets(); err == nil {
		t.Error("sockets of an exited process: want an error")
	}
}

// TestPeakRSSNotInherited checks that a small child of a big parent reports
// its own peak RSS: ru_maxrss from wait4 would report the parent's, since
// os/exec starts children on the parent's memory (CLONE_VM|CLONE_VFORK).
func TestPeakRSSNotInherited(t *testing.T) {
	topo := netlab.NewForTest(t, netlab.Options{})
	big := make([]byte, 96<<20)
	for i := range big {
		big[i] = byte(i)
	}
	p, err := topo.Start(netlab.Target, "sleep", "0.5")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	u := p.Usage()
	if u.PeakRSS <= 0 || u.PeakRSS > 32<<20 {
		t.Errorf("peak RSS of sleep %d bytes; want its own few MiB (this test holds %d MiB)", u.PeakRSS, len(big)>>20)
	}
	runtime.KeepAlive(big)
}

// tcpMaxSeg returns the TCP_MAXSEG of a TCP connection (the MSS it sends
// with), -1 when it cannot be read.
func tcpMaxSeg(c net.Conn) int {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return -1
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return -1
	}
	mss := -1
	rc.Control(func(fd uintptr) {
		if v, err := syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG); err == nil {
			mss = v
		}
	})
	return mss
}

// helperMSS dials args[0] (a serve helper) and prints "client mss N; "
// followed by the server's reply, which holds the server's MSS.
func helperMSS(args []string) error {
	c, err := net.DialTimeout("tcp", args[0], 3*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	fmt.Printf("client mss %d; %s", tcpMaxSeg(c), b)
	return nil
}

// helperUDPRecv listens on UDP address args[0], prints "ready", then
// "got N" for each datagram, N its IPv4 packet size, until nothing came
// for 300 ms (5 s at most).
func helperUDPRecv(args []string) error {
	pc, err := net.ListenPacket("udp4", args[0])
	if err != nil {
		return err
	}
	defer pc.Close()
	fmt.Println("ready")
	buf := make([]byte, 65536)
	end := time.Now().Add(5 * time.Second)
	for time.Now().Before(end) {
		pc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			return nil // idle
		}
		fmt.Printf("got %d\n", n+28)
	}
	return nil
}

// helperUDPSend sends one UDP datagram to args[0] for each IPv4 packet size
// in args[1:], with the DF bit set (IP_PMTUDISC_DO: nothing is fragmented).
func helperUDPSend(args []string) error {
	dst, err := netip.ParseAddrPort(args[0])
	if err != nil {
		return err
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer syscall.Close(fd)
	if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_IP, syscall.IP_MTU_DISCOVER, syscall.IP_PMTUDISC_DO); err != nil {
		return os.NewSyscallError("setsockopt", err)
	}
	for _, a := range args[1:] {
		size, err := strconv.Atoi(a)
		if err != nil {
			return err
		}
		sa := &syscall.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())}
		if err := syscall.Sendto(fd, make([]byte, size-28), 0, sa); err != nil {
			return fmt.Errorf("send %d bytes: %w", size, os.NewSyscallError("sendto", err))
		}
		time.Sleep(20 * time.Millisecond) // keep the order on the receiver's lines
	}
	return nil
}
