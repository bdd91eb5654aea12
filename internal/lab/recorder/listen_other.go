//go:build !linux

package recorder

import (
	"errors"
	"net"
)

// setBacklog is Linux-only: elsewhere a second listen(2) may not change
// the backlog.
func setBacklog(net.Listener, int) error {
	return errors.New("a listen backlog needs Linux")
}
