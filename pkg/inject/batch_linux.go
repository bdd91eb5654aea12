//go:build linux

package inject

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Batcher sends packets through a Sender in batches: one sendmmsg(2) per
// run of packets of the same IP version, instead of one sendto(2) per
// packet. Each goroutine that sends needs its own Batcher (it holds the
// system call's scratch arrays); the Sender is shared.
type Batcher struct {
	s    *Sender
	hdrs []unix.Mmsghdr
	iovs []unix.Iovec
	sa4  []unix.RawSockaddrInet4
	sa6  []unix.RawSockaddrInet6
}

// NewBatcher returns a Batcher that sends up to n packets per system call.
func (s *Sender) NewBatcher(n int) *Batcher {
	n = max(n, 1)
	return &Batcher{
		s:    s,
		hdrs: make([]unix.Mmsghdr, n),
		iovs: make([]unix.Iovec, n),
		sa4:  make([]unix.RawSockaddrInet4, n),
		sa6:  make([]unix.RawSockaddrInet6, n),
	}
}

// Send sends pkts, complete IPv4 and IPv6 packets, in order, and returns
// how many went out. Each packet that could not be sent is passed to fail
// with its error, as Sender.Send would have returned it (ErrTooBig for
// EMSGSIZE, ErrMalformed, ErrNoFamily, ...), and the batch goes on with the
// next. Like Sender.Send, it first tries without blocking and waits only
// for a full socket buffer. It does not allocate.
func (b *Batcher) Send(pkts [][]byte, fail func(pkt []byte, err error)) int {
	b.s.mu.RLock()
	defer b.s.mu.RUnlock()
	sent := 0
	for len(pkts) > 0 {
		n := min(len(pkts), len(b.hdrs))
		fd, run, err := b.prepare(pkts[:n])
		if err != nil {
			fail(pkts[0], err)
			pkts = pkts[1:]
			continue
		}
		k, err := b.sendmmsg(fd, run)
		sent += k
		pkts = pkts[k:]
		if err != nil {
			// The first packet not sent failed: report it and go on.
			fail(pkts[0], err)
			pkts = pkts[1:]
		}
	}
	return sent
}

// prepare fills the scratch arrays for the longest run at the start of
// pkts that goes through one socket, and returns the socket and the run's
// length. A first packet that cannot be sent at all is an error.
func (b *Batcher) prepare(pkts [][]byte) (fd, run int, err error) {
	v, err := b.s.version(pkts[0])
	if err != nil {
		return 0, 0, err
	}
	fd = b.s.fd4
	if v == 6 {
		fd = b.s.fd6
	}
	for run < len(pkts) {
		p := pkts[run]
		if pv, err := b.s.version(p); err != nil || pv != v {
			break
		}
		h := &b.hdrs[run].Hdr
		*h = unix.Msghdr{}
		if v == 4 {
			sa := &b.sa4[run]
			*sa = unix.RawSockaddrInet4{Family: unix.AF_INET}
			copy(sa.Addr[:], p[16:20])
			h.Name = (*byte)(unsafe.Pointer(sa))
			h.Namelen = unix.SizeofSockaddrInet4
		} else {
			sa := &b.sa6[run]
			*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6}
			copy(sa.Addr[:], p[24:40])
			h.Name = (*byte)(unsafe.Pointer(sa))
			h.Namelen = unix.SizeofSockaddrInet6
		}
		iov := &b.iovs[run]
		iov.Base = &p[0]
		iov.SetLen(len(p))
		h.Iov = iov
		h.SetIovlen(1)
		run++
	}
	return fd, run, nil
}

// sendmmsg sends the first run prepared messages and returns how many went
// out, and the error of the first that did not (nil if all did).
func (b *Batcher) sendmmsg(fd, run int) (int, error) {
	sent := 0
	for sent < run {
		n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.hdrs[sent])), uintptr(run-sent), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			sent += int(n)
			continue
		case unix.EAGAIN, unix.EINTR:
			// The socket buffer is full: wait for room for one packet,
			// as a blocking call the scheduler knows about.
			h := &b.hdrs[sent].Hdr
			buf := unsafe.Slice(h.Iov.Base, h.Iov.Len)
			if err := sendto(fd, buf, unsafe.Pointer(h.Name), uintptr(h.Namelen)); err != nil {
				return sent, err
			}
			sent++
			continue
		}
		return sent, sendError(e)
	}
	return sent, nil
}
