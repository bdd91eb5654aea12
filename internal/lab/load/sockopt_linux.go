package load

import "syscall"

// setDeferAccept sets TCP_DEFER_ACCEPT on a socket before connect. On a
// client socket it makes the kernel hold back the ACK that completes the
// handshake until data is written, up to the delayed-ACK timeout
// (tcp_rcv_synsent_state_process: rskq_defer_accept), so the request rides
// on that ACK. The value is in seconds; any positive value will do.
func setDeferAccept(fd uintptr) error {
	return syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT, 1)
}
