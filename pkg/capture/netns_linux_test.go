package capture_test

// Network namespace fixtures for the root tests. Every test builds its own
// namespaces with unique names, holding only addresses from documentation
// ranges, and deletes them in t.Cleanup, also when the test fails. The
// host's own interfaces are never touched.

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// peer4 is vB's address.
var peer4 = netip.MustParseAddr("192.0.2.2")

// MAC addresses of the veth ends, as used by the frame builder.
const (
	macA = "02:00:00:00:00:01" // vA, in namespace A: where captures run
	macB = "02:00:00:00:00:02" // vB, in namespace B: where traffic comes from
)

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
}

// ip runs ip(8) with args and fails the test on error.
func ip(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// netns is a namespace created for one test.
type netns struct {
	name string
}

// newNetns creates a namespace that t.Cleanup deletes.
func newNetns(t testing.TB, suffix string) netns {
	t.Helper()
	name := fmt.Sprintf("tcg-cap-%d-%08x-%s", os.Getpid(), rand.Uint32(), suffix)
	ip(t, "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	ip(t, "-n", name, "link", "set", "lo", "up")
	return netns{name: name}
}

// pair is two namespaces joined by a veth pair: vA (192.0.2.1/24,
// 2001:db8::1/64) in A and vB (192.0.2.2/24, 2001:db8::2/64) in B.
type pair struct {
	a, b netns
}

func newPair(t testing.TB) pair {
	t.Helper()
	needRoot(t)
	p := pair{a: newNetns(t, "a"), b: newNetns(t, "b")}
	ip(t, "-n", p.a.name, "link", "add", "vA", "address", macA, "type", "veth", "peer", "name", "vB", "address", macB, "netns", p.b.name)
	for _, c := range []struct {
		ns          netns
		dev, v4, v6 string
	}{{p.a, "vA", "192.0.2.1/24", "2001:db8::1/64"}, {p.b, "vB", "192.0.2.2/24", "2001:db8::2/64"}} {
		ip(t, "-n", c.ns.name, "addr", "add", c.v4, "dev", c.dev)
		ip(t, "-n", c.ns.name, "addr", "add", c.v6, "dev", c.dev, "nodad")
		ip(t, "-n", c.ns.name, "link", "set", c.dev, "up")
	}
	return p
}

// do runs fn on an OS thread that has entered the namespace. Sockets fn
// creates stay in the namespace after it returns. fn must not rely on other
// goroutines being in the namespace.
func (ns netns) do(t testing.TB, fn func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Unlocked only once the thread is back in its own namespace;
		// otherwise the runtime ends the thread with this goroutine.
		self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(self)
		target, err := unix.Open("/run/netns/"+ns.name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns.name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(self, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns back: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// ifindex returns the index of dev in the namespace.
func (ns netns) ifindex(t testing.TB, dev string) int {
	t.Helper()
	var idx int
	ns.do(t, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		idx = ifi.Index
		return nil
	})
	return idx
}

// injector writes raw Ethernet frames onto an interface of a namespace.
type injector struct {
	fd int
}

// newInjector opens an AF_PACKET socket sending on dev in ns.
func newInjector(t testing.TB, ns netns, dev string) *injector {
	t.Helper()
	idx := ns.ifindex(t, dev)
	var fd int
	ns.do(t, func() error {
		var err error
		// Protocol 0: send only, never receive.
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: idx})
	})
	t.Cleanup(func() { unix.Close(fd) })
	return &injector{fd: fd}
}

func (in *injector) send(t testing.TB, frames ...[]byte) {
	t.Helper()
	for _, f := range frames {
		if _, err := unix.Write(in.fd, f); err != nil {
			t.Fatalf("inject %d bytes: %v", len(f), err)
		}
	}
}

// newTun creates an up tun device (IFF_TUN, no packet information: a
// non-Ethernet link layer) named dev in ns and returns its file; writing an
// IP packet to it makes the packet arrive on dev.
func newTun(t testing.TB, ns netns, dev string) *os.File {
	t.Helper()
	var fd int
	ns.do(t, func() error {
		var err error
		fd, err = unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		ifr, err := unix.NewIfreq(dev)
		if err != nil {
			return err
		}
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
		return unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
	})
	f := os.NewFile(uintptr(fd), "tun")
	t.Cleanup(func() { f.Close() })
	ip(t, "-n", ns.name, "addr", "add", "203.0.113.1/24", "dev", dev)
	ip(t, "-n", ns.name, "link", "set", dev, "up")
	return f
}
