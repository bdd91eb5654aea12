//go:build linux

package inject

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Sender sends raw IPv4 and IPv6 packets. Make it with Open. It is safe
// for concurrent use, Close included: Close waits for the sends under way
// and later sends fail with ErrClosed, so no send ever reaches a file
// descriptor number the process has reused for something else.
type Sender struct {
	// mu is held for reading by every send, for writing by Close. The
	// read lock is two atomic additions per send (per batch with a
	// Batcher).
	mu       sync.RWMutex
	fd4, fd6 int // -1 when that family is unavailable or closed
	closed   bool
}

// Errors callers branch on.
var (
	// ErrTooBig wraps EMSGSIZE: the packet exceeds the route's MTU; split it.
	ErrTooBig = errors.New("inject: packet larger than the path MTU")
	// ErrMalformed is returned for a buffer that is not an IPv4 or IPv6
	// packet.
	ErrMalformed = errors.New("inject: not an IPv4 or IPv6 packet")
	// ErrNoFamily is returned when the socket for the packet's IP version
	// could not be opened (e.g. IPv6 disabled).
	ErrNoFamily = errors.New("inject: no raw socket for this IP version")
	// ErrClosed is returned by sends after Close.
	ErrClosed = errors.New("inject: sender closed")
)

// Open opens the raw sockets. It needs CAP_NET_RAW. An IPv6 socket that
// cannot be opened (IPv6 disabled) is not an error: sending IPv6 then
// fails with ErrNoFamily.
func Open() (*Sender, error) {
	fd4, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return nil, fmt.Errorf("inject: %w", os.NewSyscallError("socket(AF_INET, SOCK_RAW)", err))
	}
	if err := unix.SetsockoptInt(fd4, unix.IPPROTO_IP, unix.IP_HDRINCL, 1); err != nil {
		unix.Close(fd4)
		return nil, fmt.Errorf("inject: %w", os.NewSyscallError("setsockopt(IP_HDRINCL)", err))
	}
	s := &Sender{fd4: fd4, fd6: -1}
	if fd6, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW); err == nil {
		s.fd6 = fd6
	}
	// Large socket buffers absorb bursts (a 64 KiB super-packet split into
	// 45 segments) without ENOBUFS.
	for _, fd := range []int{s.fd4, s.fd6} {
		if fd >= 0 {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
		}
	}
	return s, nil
}

// Send sends pkt, a complete IPv4 or IPv6 packet, to its destination
// address. It does not allocate. A full socket buffer (ENOBUFS, EAGAIN) is
// returned as is, for the caller to count.
func (s *Sender) Send(pkt []byte) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, err := s.version(pkt)
	if err != nil {
		return err
	}
	if v == 4 {
		var sa unix.RawSockaddrInet4
		sa.Family = unix.AF_INET
		copy(sa.Addr[:], pkt[16:20])
		return sendto(s.fd4, pkt, unsafe.Pointer(&sa), unix.SizeofSockaddrInet4)
	}
	var sa unix.RawSockaddrInet6
	sa.Family = unix.AF_INET6
	copy(sa.Addr[:], pkt[24:40])
	return sendto(s.fd6, pkt, unsafe.Pointer(&sa), unix.SizeofSockaddrInet6)
}

// version returns the IP version of pkt, 4 or 6, or why it cannot be sent.
// s.mu is held for reading.
func (s *Sender) version(pkt []byte) (int, error) {
	if s.closed {
		return 0, ErrClosed
	}
	if len(pkt) < 20 {
		return 0, ErrMalformed
	}
	switch pkt[0] >> 4 {
	case 4:
		return 4, nil
	case 6:
		if len(pkt) < 40 {
			return 0, ErrMalformed
		}
		if s.fd6 < 0 {
			return 0, ErrNoFamily
		}
		return 6, nil
	}
	return 0, ErrMalformed
}

// errno values returned without boxing a new error each time.
var (
	errENOBUFS error = unix.ENOBUFS
	errEAGAIN  error = unix.EAGAIN
	errEPERM   error = unix.EPERM
)

// sendto sends b without blocking first, as a raw system call: the
// scheduler is not told, so a send that runs the kernel's whole output
// path (on a veth, the receiver's stack too) for tens of microseconds does
// not make the runtime hand this goroutine's processor to another thread.
// Only when the socket buffer is full does it wait, as a blocking call the
// scheduler knows about.
func sendto(fd int, b []byte, sa unsafe.Pointer, salen uintptr) error {
	_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), unix.MSG_DONTWAIT, uintptr(sa), salen)
	for e == unix.EAGAIN || e == unix.EINTR {
		_, _, e = unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0, uintptr(sa), salen)
	}
	return sendError(e)
}

// sendError returns the error a send reports for errno e (nil for 0),
// without boxing a new error each time.
func sendError(e unix.Errno) error {
	switch e {
	case 0:
		return nil
	case unix.EMSGSIZE:
		return ErrTooBig
	case unix.ENOBUFS:
		return errENOBUFS
	case unix.EAGAIN:
		return errEAGAIN
	case unix.EPERM:
		return errEPERM
	}
	return e
}

// Close closes the sockets, once the sends under way have returned.
// Later sends fail with ErrClosed; a second Close does nothing.
func (s *Sender) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := unix.Close(s.fd4)
	if s.fd6 >= 0 {
		if err6 := unix.Close(s.fd6); err == nil {
			err = err6
		}
	}
	s.fd4, s.fd6 = -1, -1
	return err
}

// PathMTU returns the MTU of the path to dst as the kernel knows it: the
// route's MTU, or less if an ICMP "packet too big" taught it a smaller
// one. It returns 0 if it cannot tell. It asks with a datagram socket
// connected to dst (IP_MTU, IPV6_MTU; see ip(7), ipv6(7)), which sends
// nothing; it allocates, for the rare packet refused as too big.
func (s *Sender) PathMTU(dst netip.Addr) int {
	return routeMTU(dst)
}

func routeMTU(dst netip.Addr) int {
	dst = dst.Unmap()
	var (
		family, level, opt int
		sa                 unix.Sockaddr
	)
	switch {
	case dst.Is4():
		family, level, opt = unix.AF_INET, unix.IPPROTO_IP, unix.IP_MTU
		sa = &unix.SockaddrInet4{Port: 9, Addr: dst.As4()}
	case dst.Is6():
		family, level, opt = unix.AF_INET6, unix.IPPROTO_IPV6, unix.IPV6_MTU
		sa = &unix.SockaddrInet6{Port: 9, Addr: dst.As16()}
	default:
		return 0
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0
	}
	defer unix.Close(fd)
	if unix.Connect(fd, sa) != nil {
		return 0
	}
	mtu, err := unix.GetsockoptInt(fd, level, opt)
	if err != nil || mtu <= 0 {
		return 0
	}
	return mtu
}
