//go:build !linux

package load

import "errors"

// setDeferAccept is Linux-only: Options.DataOnAck relies on how Linux
// treats TCP_DEFER_ACCEPT on a client socket.
func setDeferAccept(uintptr) error {
	return errors.New("load: DataOnAck needs Linux")
}
