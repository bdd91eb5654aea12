package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Layout of the TPACKET_V3 ring (linux/if_packet.h). All fields are in
// host byte order except sll_protocol.
const (
	// struct tpacket_block_desc: version, offset_to_priv, then
	// struct tpacket_hdr_v1.
	blockStatusOff   = 8  // block_status
	blockNumPktsOff  = 12 // num_pkts
	blockFirstPktOff = 16 // offset_to_first_pkt

	// struct tpacket3_hdr.
	pktNextOff    = 0  // tp_next_offset
	pktSecOff     = 4  // tp_sec
	pktNsecOff    = 8  // tp_nsec
	pktSnaplenOff = 12 // tp_snaplen
	pktLenOff     = 16 // tp_len
	pktStatusOff  = 20 // tp_status
	pktMacOff     = 24 // tp_mac
	pktVLANTCIOff = 32 // hv1.tp_vlan_tci
	// struct sockaddr_ll, at TPACKET_ALIGN(sizeof(struct tpacket3_hdr)).
	sllIfindexOff = 48 + 4 // sll_ifindex
	sllHatypeOff  = 48 + 8 // sll_hatype
	sllPkttypeOff = 48 + 10
	pktHdrLen     = 48 + 20 // TPACKET3_HDRLEN

	// maxInsns is the kernel's BPF_MAXINSNS.
	maxInsns = 4096
)

// opError wraps err with the operation and the interface it applied to.
func opError(op, iface string, err error) error {
	return fmt.Errorf("capture: %s on %s: %w", op, iface, err)
}

// Source is a live capture on an AF_PACKET socket with a TPACKET_V3 ring.
// Create it with Open; see the package documentation for ownership of
// packet data and concurrency.
type Source struct {
	iface    string   // for errors: the name, or "any"
	fd       int      // the packet socket; -1 once closed
	file     *os.File // owns fd once set up; waits for blocks in the runtime's poller
	rc       syscall.RawConn
	readyFn  func(fd uintptr) bool // s.ready, made once so that waiting allocates nothing
	woken    bool                  // ready ran after a wake-up in this wait
	waitErr  error                 // set by ready: the socket's pending error
	ring     []byte                // the mmapped ring; nil once unmapped
	nblocks  int
	bsize    int
	dropOut  bool // drop outgoing packets after the ring (no PACKET_IGNORE_OUTGOING)
	closed   atomic.Bool
	skipped  atomic.Uint64
	readMu   sync.Mutex // held by ReadBatch, and by Close while it releases resources
	statsMu  sync.Mutex // guards the fd against Close in Stats, and the totals below
	stats    Stats      // kernel counters accumulated (PACKET_STATISTICS resets on read)
	lent     bool       // a batch is outstanding: its Data points into ring
	cur      int        // block being read
	held     int        // fully read blocks before cur not yet returned to the kernel
	left     int        // packets of block cur not read yet; 0 = block not opened
	pktOff   int        // ring offset of the next packet of block cur
	blockEnd int        // ring offset of the end of block cur
}

// Open opens a capture described by cfg. Errors name the interface and the
// failed operation, e.g.
//
//	capture: attach filter (2 instructions, rejected by the kernel's BPF checker) on eth0: setsockopt SO_ATTACH_FILTER: invalid argument
func Open(cfg Config) (*Source, error) {
	name := cfg.Interface
	if name == "" {
		name = "any"
	}
	if err := applyDefaults(&cfg); err != nil {
		return nil, opError("open", name, err)
	}
	ifindex := 0
	if name != "any" {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return nil, opError("open", name, err)
		}
		if ifi.Flags&net.FlagUp == 0 {
			return nil, opError("open", name, errors.New("interface is down"))
		}
		ifindex = ifi.Index
	}
	prog, err := program(cfg, ifindex == 0)
	if err != nil {
		return nil, opError("open", name, err)
	}

	// Protocol 0: the socket receives nothing until the final bind, after
	// the filter and ring are in place.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, opError("open", name, os.NewSyscallError("socket AF_PACKET", err))
	}
	s := &Source{iface: name, fd: fd, nblocks: cfg.NumBlocks, bsize: cfg.BlockSize}
	if err := s.setup(cfg, ifindex, prog); err != nil {
		s.release()
		return nil, err
	}
	return s, nil
}

func applyDefaults(cfg *Config) error {
	if cfg.SnapLen == 0 {
		cfg.SnapLen = DefaultSnapLen
	}
	if cfg.BlockSize == 0 {
		cfg.BlockSize = DefaultBlockSize
	}
	if cfg.NumBlocks == 0 {
		cfg.NumBlocks = DefaultNumBlocks
	}
	if cfg.BlockTimeout == 0 {
		cfg.BlockTimeout = DefaultBlockTimeout
	}
	page := os.Getpagesize()
	switch {
	case cfg.SnapLen < 0 || cfg.SnapLen > 1<<30:
		return fmt.Errorf("snap length %d out of range", cfg.SnapLen)
	case cfg.BlockSize < 0 || cfg.BlockSize%page != 0:
		return fmt.Errorf("block size %d is not a positive multiple of the page size %d", cfg.BlockSize, page)
	case cfg.NumBlocks < 0:
		return fmt.Errorf("negative number of blocks %d", cfg.NumBlocks)
	case int64(cfg.BlockSize)*int64(cfg.NumBlocks) > 1<<32-1:
		return fmt.Errorf("ring of %d blocks of %d bytes is larger than 4 GiB", cfg.NumBlocks, cfg.BlockSize)
	case cfg.BlockTimeout < 0 || cfg.BlockTimeout > MaxBlockTimeout:
		return fmt.Errorf("block timeout %v out of range", cfg.BlockTimeout)
	}
	return nil
}

// program returns the program to attach: cfg.Filter with its accept
// values lowered to the snap length, behind a link-type guard when the
// socket is bound to no interface.
func program(cfg Config, guard bool) ([]bpf.RawInstruction, error) {
	snap := uint32(cfg.SnapLen)
	var prog []bpf.RawInstruction
	if guard {
		g, err := bpf.Assemble([]bpf.Instruction{
			bpf.LoadExtension{Num: bpf.ExtLinkLayerType},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.ARPHRD_ETHER, SkipTrue: 4},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.ARPHRD_LOOPBACK, SkipFalse: 2},
			// Loopback: each packet passes as sent and again as
			// received; the received one is enough.
			bpf.LoadExtension{Num: bpf.ExtType},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.PACKET_OUTGOING, SkipFalse: 1},
			bpf.RetConstant{Val: 0},
			bpf.LoadConstant{Dst: bpf.RegA, Val: 0}, // the filter starts with A = 0
		})
		if err != nil {
			return nil, fmt.Errorf("assemble link-type guard: %w", err)
		}
		prog = g
	}
	if len(cfg.Filter) == 0 {
		return append(prog, bpf.RawInstruction{Op: unix.BPF_RET | unix.BPF_K, K: snap}), nil
	}
	if len(prog)+len(cfg.Filter) > maxInsns {
		return nil, fmt.Errorf("filter of %d instructions exceeds the kernel limit of %d", len(prog)+len(cfg.Filter), maxInsns)
	}
	for _, ins := range cfg.Filter {
		if ins.Op == unix.BPF_RET|unix.BPF_K && ins.K > snap {
			ins.K = snap
		}
		prog = append(prog, ins)
	}
	return prog, nil
}

// setup configures the socket in the order that keeps unfiltered packets
// out of the ring: link check, filter, ring, then the bind that starts
// reception.
func (s *Source) setup(cfg Config, ifindex int, prog []bpf.RawInstruction) error {
	if ifindex != 0 {
		// Bind without a protocol to learn the link type.
		if err := unix.Bind(s.fd, &unix.SockaddrLinklayer{Ifindex: ifindex}); err != nil {
			return opError("bind", s.iface, os.NewSyscallError("bind", err))
		}
		sa, err := unix.Getsockname(s.fd)
		if err != nil {
			return opError("link type", s.iface, os.NewSyscallError("getsockname", err))
		}
		ll, ok := sa.(*unix.SockaddrLinklayer)
		if !ok {
			return opError("link type", s.iface, fmt.Errorf("getsockname returned %T", sa))
		}
		if ll.Hatype != unix.ARPHRD_ETHER && ll.Hatype != unix.ARPHRD_LOOPBACK {
			return opError("open", s.iface, fmt.Errorf("link type ARPHRD %d is not supported: need Ethernet or loopback", ll.Hatype))
		}
	}
	if err := unix.SetsockoptInt(s.fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return opError("open", s.iface, os.NewSyscallError("setsockopt PACKET_VERSION TPACKET_V3", err))
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: (*unix.SockFilter)(unsafe.Pointer(&prog[0]))}
	if err := unix.SetsockoptSockFprog(s.fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		op := fmt.Sprintf("attach filter (%d instructions)", len(prog))
		if err == unix.EINVAL {
			op = fmt.Sprintf("attach filter (%d instructions, rejected by the kernel's BPF checker)", len(prog))
		}
		return opError(op, s.iface, os.NewSyscallError("setsockopt SO_ATTACH_FILTER", err))
	}
	if cfg.IgnoreOutgoing {
		err := unix.SetsockoptInt(s.fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
		switch {
		case err == unix.ENOPROTOOPT:
			s.dropOut = true // kernel before 4.20
		case err != nil:
			return opError("open", s.iface, os.NewSyscallError("setsockopt PACKET_IGNORE_OUTGOING", err))
		}
	}
	page := os.Getpagesize()
	req := unix.TpacketReq3{
		Block_size:     uint32(cfg.BlockSize),
		Block_nr:       uint32(cfg.NumBlocks),
		Frame_size:     uint32(page), // unused by TPACKET_V3, but checked
		Frame_nr:       uint32(cfg.BlockSize / page * cfg.NumBlocks),
		Retire_blk_tov: uint32((cfg.BlockTimeout + time.Millisecond - 1) / time.Millisecond),
	}
	if err := unix.SetsockoptTpacketReq3(s.fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return opError("open", s.iface, os.NewSyscallError("setsockopt PACKET_RX_RING", err))
	}
	ring, err := unix.Mmap(s.fd, 0, cfg.BlockSize*cfg.NumBlocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return opError("open", s.iface, os.NewSyscallError("mmap", err))
	}
	s.ring = ring
	sll := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}
	if err := unix.Bind(s.fd, sll); err != nil {
		return opError("bind", s.iface, os.NewSyscallError("bind", err))
	}
	if cfg.FanoutGroup != 0 {
		arg := int(cfg.FanoutGroup) | unix.PACKET_FANOUT_HASH<<16
		if err := unix.SetsockoptInt(s.fd, unix.SOL_PACKET, unix.PACKET_FANOUT, arg); err != nil {
			return opError(fmt.Sprintf("join fanout group %d", cfg.FanoutGroup), s.iface, os.NewSyscallError("setsockopt PACKET_FANOUT", err))
		}
	}
	// The reader waits in the Go runtime's network poller, not in a
	// blocking poll: a goroutine parked there holds no thread, so waiting
	// costs no thread hand-offs and wake-ups in the scheduler.
	if err := unix.SetNonblock(s.fd, true); err != nil {
		return opError("open", s.iface, os.NewSyscallError("fcntl O_NONBLOCK", err))
	}
	s.file = os.NewFile(uintptr(s.fd), "packet socket "+s.iface)
	rc, err := s.file.SyscallConn()
	if err != nil {
		return opError("open", s.iface, err)
	}
	s.rc = rc
	s.readyFn = s.ready
	return nil
}

// htons converts a 16-bit value from host to network byte order.
func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

// ReadBatch waits until at least one packet is available, then fills pkts
// with as many packets as are ready, up to len(pkts), and returns how many
// it filled. It ends the previous batch: the Data of packets returned by
// the previous call become invalid. With an empty pkts it returns 0 at
// once. Packets come in the order the kernel queued them. After Close it
// returns ErrClosed; if
// the bound interface goes down it returns an error wrapping ENETDOWN and
// can be called again. It does not allocate.
func (s *Source) ReadBatch(pkts []Packet) (int, error) {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	if s.closed.Load() {
		s.unmapLocked()
		return 0, ErrClosed
	}
	s.lent = false
	s.releaseLocked()
	n := 0
	for n < len(pkts) {
		if s.left == 0 {
			if s.held == s.nblocks {
				if n > 0 {
					break // every block is in this batch
				}
				s.releaseLocked() // all of them skipped
			}
			base := s.cur * s.bsize
			if atomic.LoadUint32(s.status(base))&unix.TP_STATUS_USER == 0 {
				if n > 0 {
					break
				}
				// Nothing delivered from the blocks read so far (all
				// skipped): the kernel may have them back before we sleep.
				s.releaseLocked()
				if err := s.wait(); err != nil {
					return 0, err
				}
				continue
			}
			s.left = int(binary.NativeEndian.Uint32(s.ring[base+blockNumPktsOff:]))
			s.pktOff = base + int(binary.NativeEndian.Uint32(s.ring[base+blockFirstPktOff:]))
			s.blockEnd = base + s.bsize
			if s.left == 0 {
				s.nextBlock()
			}
			continue
		}
		ok, valid := s.readPacket(&pkts[n])
		s.left--
		if !valid {
			s.left = 0 // corrupt block: skip what is left of it
		}
		if s.left == 0 {
			s.nextBlock()
		}
		if ok {
			n++
		} else {
			s.skipped.Add(1)
		}
	}
	s.lent = n > 0
	return n, nil
}

// Behind reports whether the reader has fallen behind the kernel: half
// the ring or more, from the block being read on, is filled and waiting.
// The caller may then shed work (tcpcopy refuses new sessions) before the
// ring fills and the kernel drops packets at random. Call it from the
// reading goroutine, after a ReadBatch that returned packets.
func (s *Source) Behind() bool {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	if s.ring == nil {
		return false
	}
	half := max(s.nblocks/2, 1)
	b := s.cur
	if s.left == 0 {
		// cur is not opened yet: it counts only if it is ready.
		if atomic.LoadUint32(s.status(b*s.bsize))&unix.TP_STATUS_USER == 0 {
			return false
		}
	}
	for n := 1; n < half; n++ {
		if b++; b == s.nblocks {
			b = 0
		}
		if atomic.LoadUint32(s.status(b*s.bsize))&unix.TP_STATUS_USER == 0 {
			return false
		}
	}
	return true
}

// status returns the block_status word of the block at ring offset base.
func (s *Source) status(base int) *uint32 {
	return (*uint32)(unsafe.Pointer(&s.ring[base+blockStatusOff]))
}

// nextBlock moves past the fully read block cur, which stays held until
// the batch ends.
func (s *Source) nextBlock() {
	s.left = 0
	s.held++
	s.cur++
	if s.cur == s.nblocks {
		s.cur = 0
	}
}

// releaseLocked returns the held blocks to the kernel.
func (s *Source) releaseLocked() {
	b := s.cur - s.held
	if b < 0 {
		b += s.nblocks
	}
	for ; s.held > 0; s.held-- {
		atomic.StoreUint32(s.status(b*s.bsize), unix.TP_STATUS_KERNEL)
		if b++; b == s.nblocks {
			b = 0
		}
	}
}

// readPacket fills p from the packet at s.pktOff and moves s.pktOff to the
// next one. ok reports whether p holds an IP packet to return; valid is
// false if the packet header lies outside its block.
func (s *Source) readPacket(p *Packet) (ok, valid bool) {
	off := s.pktOff
	if off < 0 || off+pktHdrLen > s.blockEnd {
		return false, false
	}
	h := s.ring[off : off+pktHdrLen]
	ne := binary.NativeEndian
	s.pktOff = off + int(ne.Uint32(h[pktNextOff:]))
	mac := off + int(ne.Uint16(h[pktMacOff:]))
	snap := int(ne.Uint32(h[pktSnaplenOff:]))
	if mac+snap > s.blockEnd {
		return false, false
	}
	hatype := ne.Uint16(h[sllHatypeOff:])
	if hatype != unix.ARPHRD_ETHER && hatype != unix.ARPHRD_LOOPBACK {
		return false, true
	}
	outgoing := h[sllPkttypeOff] == unix.PACKET_OUTGOING
	if outgoing && s.dropOut {
		return false, true
	}
	frame := s.ring[mac : mac+snap : mac+snap]
	ip := EthernetIPOffset(frame)
	if ip < 0 {
		return false, true
	}
	p.Data = frame[ip:]
	p.Len = int(ne.Uint32(h[pktLenOff:])) - ip
	p.Time = time.Unix(int64(ne.Uint32(h[pktSecOff:])), int64(ne.Uint32(h[pktNsecOff:])))
	p.Ifindex = int(int32(ne.Uint32(h[sllIfindexOff:])))
	p.VLAN = 0
	if ne.Uint32(h[pktStatusOff:])&unix.TP_STATUS_VLAN_VALID != 0 {
		p.VLAN = uint16(ne.Uint32(h[pktVLANTCIOff:]) & 0xfff)
	}
	p.Outgoing = outgoing
	return true, true
}

// wait blocks until the kernel hands over block s.cur, the socket reports
// an error, or Close is called.
func (s *Source) wait() error {
	s.woken, s.waitErr = false, nil
	err := s.rc.Read(s.readyFn)
	switch {
	case s.closed.Load():
		return ErrClosed
	case err != nil:
		return opError("read", s.iface, err)
	}
	return s.waitErr
}

// ready is the poller's readiness check: true when block s.cur is ours,
// when the socket has a pending error (in s.waitErr; e.g. ENETDOWN when
// the bound interface goes down, cleared by reading it), or after Close.
// False parks the reader until the socket is signalled again: the kernel
// signals every block it closes, when full or when its timeout expires.
func (s *Source) ready(fd uintptr) bool {
	if s.closed.Load() || atomic.LoadUint32(s.status(s.cur*s.bsize))&unix.TP_STATUS_USER != 0 {
		return true
	}
	if !s.woken {
		s.woken = true // the first check, before any wake-up
		return false
	}
	serr, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
	switch {
	case err != nil:
		s.waitErr = opError("read", s.iface, os.NewSyscallError("getsockopt SO_ERROR", err))
	case serr != 0:
		s.waitErr = opError("read", s.iface, os.NewSyscallError("poll", unix.Errno(serr)))
	default:
		return false
	}
	return true
}

// Stats returns the counters since Open. It may be called concurrently with
// ReadBatch and after Close, which keeps the final counts.
func (s *Source) Stats() Stats {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	s.updateStatsLocked()
	st := s.stats
	st.Skipped = s.skipped.Load()
	return st
}

// updateStatsLocked adds the kernel's counters, which reset when read.
func (s *Source) updateStatsLocked() {
	if s.fd < 0 {
		return
	}
	ks, err := unix.GetsockoptTpacketStatsV3(s.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return // only EBADF or EFAULT, neither possible here
	}
	s.stats.Packets += uint64(ks.Packets)
	s.stats.Drops += uint64(ks.Drops)
	s.stats.QueueFreezes += uint64(ks.Freeze_q_cnt)
}

// Close stops the capture: a ReadBatch blocked in another goroutine returns
// ErrClosed at once, and later calls return ErrClosed too. The socket is
// closed now; the ring is unmapped now if no batch is outstanding, or else
// by the next ReadBatch, so the reading goroutine may finish the packets it
// holds. Close is idempotent and safe for concurrent use.
func (s *Source) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	err := s.closeSocket() // wakes a waiting ReadBatch
	s.readMu.Lock()
	defer s.readMu.Unlock()
	if !s.lent {
		s.unmapLocked()
	}
	return err
}

// release frees everything of a Source that failed to open.
func (s *Source) release() {
	s.closeSocket()
	s.unmapLocked()
}

// closeSocket keeps the kernel's final counters and closes the socket.
func (s *Source) closeSocket() error {
	s.statsMu.Lock()
	s.updateStatsLocked()
	fd := s.fd
	s.fd = -1
	s.statsMu.Unlock()
	var err error
	switch {
	case s.file != nil:
		err = s.file.Close()
	case fd >= 0:
		err = os.NewSyscallError("close", unix.Close(fd))
	}
	if err != nil {
		return opError("close", s.iface, err)
	}
	return nil
}

// unmapLocked unmaps the ring; the caller holds readMu.
func (s *Source) unmapLocked() {
	if s.ring != nil {
		unix.Munmap(s.ring)
		s.ring = nil
	}
	s.lent = false
}
