//go:build !cgo

package pcapfilter

import (
	"errors"

	"golang.org/x/net/bpf"
)

var errNoCgo = errors.New("pcapfilter: built without cgo: libpcap filter compilation unavailable")

func compile(linkType, snaplen int, expr string) ([]bpf.RawInstruction, error) {
	return nil, errNoCgo
}
