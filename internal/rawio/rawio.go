// Package rawio reads and writes TCP connections with raw system calls,
// for the control links between tcpcopy and intercept.
package rawio

import (
	"io"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Conn reads and writes a TCP connection with raw system calls, waiting
// in the runtime's network poller (with the connection's deadlines) only
// when the socket is not ready. A read or write through the net package
// tells the scheduler it enters a system call, and the first one after an
// idle spell wakes the runtime's monitor thread, which then polls every
// 20 µs for a while: on the links' hot path, where every batch of records
// follows an idle spell, that cost more than the reads themselves. The
// socket is non-blocking (the net package makes it so), so a raw call
// never blocks.
//
// One goroutine may read while another writes.
type Conn struct {
	rc syscall.RawConn
	// The reading side's call, for its callback.
	rbuf   []byte
	rn     int
	rerrno syscall.Errno
	readFn func(fd uintptr) bool
	// The writing side's.
	wbuf    []byte
	wn      int
	werrno  syscall.Errno
	writeFn func(fd uintptr) bool
}

// New returns raw I/O on conn, or nil if conn is not a TCP connection
// (tests use other kinds; callers then use conn itself). The connection's
// deadlines and Close apply to the waits.
func New(conn net.Conn) *Conn {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	r := &Conn{rc: rc}
	r.readFn, r.writeFn = r.read, r.write
	return r
}

// Read reads what the socket holds, up to len(p), waiting for at least
// one byte. It returns io.EOF at the end of the stream, and the poller's
// error (os.ErrDeadlineExceeded, net.ErrClosed) when waiting fails.
func (r *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.rbuf, r.rn, r.rerrno = p, 0, 0
	err := r.rc.Read(r.readFn)
	r.rbuf = nil
	switch {
	case err != nil:
		return 0, err
	case r.rerrno != 0:
		return 0, r.rerrno
	case r.rn == 0:
		return 0, io.EOF
	}
	return r.rn, nil
}

func (r *Conn) read(fd uintptr) bool {
	for {
		n, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&r.rbuf[0])), uintptr(len(r.rbuf)))
		switch e {
		case 0:
			r.rn = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // wait in the poller
		}
		r.rerrno = e
		return true
	}
}

// Write writes all of p, waiting in the poller while the socket buffer
// is full.
func (r *Conn) Write(p []byte) (int, error) {
	r.wbuf, r.wn, r.werrno = p, 0, 0
	var err error
	if len(p) > 0 {
		err = r.rc.Write(r.writeFn)
	}
	n := r.wn
	r.wbuf = nil
	switch {
	case err != nil:
		return n, err
	case r.werrno != 0:
		return n, r.werrno
	}
	return n, nil
}

func (r *Conn) write(fd uintptr) bool {
	for r.wn < len(r.wbuf) {
		n, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&r.wbuf[r.wn])), uintptr(len(r.wbuf)-r.wn), unix.MSG_NOSIGNAL, 0, 0)
		switch e {
		case 0:
			r.wn += int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			r.werrno = e
			return true
		}
	}
	return true
}
