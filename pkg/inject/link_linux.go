//go:build linux

package inject

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// LinkRoute says which Ethernet addresses the frames to one destination
// IP address carry (tcpcopy -o with the -x "@mac" forms).
type LinkRoute struct {
	Dst    netip.Addr       // the packet's destination address (the target)
	SrcMAC net.HardwareAddr // the frame's source
	DstMAC net.HardwareAddr // the target's MAC, or the next hop's
}

// LinkSender sends IP packets as Ethernet frames on one interface,
// bypassing routing, the firewall and neighbour discovery (C TCPCopy
// --pcap-send). It is safe for concurrent use; Send does not allocate.
type LinkSender struct {
	ifindex int
	conn    *packet.Conn
	rc      syscall.RawConn
	routes  map[netip.Addr]int // destination -> index in heads
	heads   [][14]byte         // Ethernet headers, EtherType filled per packet

	mu    sync.Mutex
	frame []byte
	cur   []byte
	err   error
	write func(fd uintptr) bool // built once: no closure per packet
}

// ErrNoLinkRoute is returned by LinkSender.Send for a destination no
// LinkRoute names.
var ErrNoLinkRoute = errors.New("inject: no MAC addresses for this destination (-x @mac)")

// OpenLink opens a packet socket on the interface named ifname that
// receives nothing and sends frames for routes. It needs CAP_NET_RAW.
func OpenLink(ifname string, routes []LinkRoute) (*LinkSender, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("inject: -o %s: %w", ifname, err)
	}
	// Protocol 0: the socket is bound to the interface for sending but
	// receives no packets.
	conn, err := packet.Listen(ifi, packet.Raw, 0, nil)
	if err != nil {
		return nil, fmt.Errorf("inject: -o %s: %w", ifname, err)
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("inject: -o %s: %w", ifname, err)
	}
	s := &LinkSender{ifindex: ifi.Index, conn: conn, rc: rc, routes: make(map[netip.Addr]int), frame: make([]byte, 14+65535)}
	for _, r := range routes {
		if len(r.SrcMAC) != 6 || len(r.DstMAC) != 6 || !r.Dst.IsValid() {
			conn.Close()
			return nil, fmt.Errorf("inject: -o %s: route to %v needs two 6-byte MAC addresses", ifname, r.Dst)
		}
		var h [14]byte
		copy(h[0:6], r.DstMAC)
		copy(h[6:12], r.SrcMAC)
		s.routes[r.Dst.Unmap()] = len(s.heads)
		s.heads = append(s.heads, h)
	}
	s.write = func(fd uintptr) bool {
		_, _, e := unix.Syscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&s.cur[0])), uintptr(len(s.cur)))
		switch e {
		case unix.EAGAIN:
			return false // wait until writable
		case 0:
			s.err = nil
		case unix.EMSGSIZE:
			s.err = ErrTooBig
		default:
			s.err = e
		}
		return true
	}
	return s, nil
}

// Send sends pkt, a complete IPv4 or IPv6 packet, in a frame addressed by
// the LinkRoute of its destination.
func (s *LinkSender) Send(pkt []byte) error {
	var (
		dst   netip.Addr
		etype uint16
	)
	switch {
	case len(pkt) >= 20 && pkt[0]>>4 == 4:
		dst, etype = netip.AddrFrom4([4]byte(pkt[16:20])), unix.ETH_P_IP
	case len(pkt) >= 40 && pkt[0]>>4 == 6:
		dst, etype = netip.AddrFrom16([16]byte(pkt[24:40])), unix.ETH_P_IPV6
	default:
		return ErrMalformed
	}
	i, ok := s.routes[dst]
	if !ok {
		return ErrNoLinkRoute
	}
	if len(pkt) > len(s.frame)-14 {
		return ErrTooBig
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.heads[i]
	copy(s.frame, h[:12])
	s.frame[12], s.frame[13] = byte(etype>>8), byte(etype)
	n := 14 + copy(s.frame[14:], pkt)
	s.cur = s.frame[:n]
	if err := s.rc.Write(s.write); err != nil {
		return os.NewSyscallError("write", err)
	}
	return s.err
}

// Close closes the socket. Sends under way or later fail; the runtime
// keeps the descriptor until they have returned.
func (s *LinkSender) Close() error { return s.conn.Close() }

// PathMTU returns the MTU of the interface frames leave by, whatever
// dst: frames bypass routing. It returns 0 if it cannot tell.
func (s *LinkSender) PathMTU(netip.Addr) int {
	ifi, err := net.InterfaceByIndex(s.ifindex)
	if err != nil {
		return 0
	}
	return ifi.MTU
}
