//go:build !cgo

package pcapfilter_test

import (
	"strings"
	"testing"

	"github.com/tcpcopy-go/tcpcopy/pkg/pcapfilter"
)

func TestCompileWithoutCgo(t *testing.T) {
	_, err := pcapfilter.Compile(pcapfilter.LinkTypeEthernet, 65535, "tcp")
	if err == nil || !strings.Contains(err.Error(), "built without cgo") {
		t.Fatalf("Compile without cgo: %v", err)
	}
}
