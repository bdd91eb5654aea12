//go:build !linux

package netlab

import (
	"os"
	"syscall"
)

// procAttr puts a child in its own process group. The lab only works on
// Linux; this stub only keeps the package compiling elsewhere.
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

func maxRSS(*os.ProcessState) int64 { return 0 }
