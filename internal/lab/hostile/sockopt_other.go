//go:build !linux

package hostile

import "syscall"

func smallRcvBuf(_, _ string, _ syscall.RawConn) error { return nil }
