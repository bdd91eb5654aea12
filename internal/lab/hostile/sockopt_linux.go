package hostile

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// smallRcvBuf sets a 4 KiB receive buffer before connect, so that a slow
// reader's window closes after a few records and intercept's queue for it
// fills.
func smallRcvBuf(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
	})
	if err != nil {
		return err
	}
	return serr
}
