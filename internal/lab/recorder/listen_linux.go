package recorder

import (
	"errors"
	"net"
	"os"
	"syscall"
)

// setBacklog calls listen(2) again on ln's socket with backlog: Linux
// takes a second listen on a listening socket as a change of its backlog
// (inet_listen), which net.Listen does not offer.
func setBacklog(ln net.Listener, backlog int) error {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return errors.New("not a TCP listener")
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return err
	}
	var lerr error
	if err := rc.Control(func(fd uintptr) { lerr = syscall.Listen(int(fd), backlog) }); err != nil {
		return err
	}
	return os.NewSyscallError("listen", lerr)
}
