//go:build !linux

package netlab

import "syscall"

// procAttr puts a child in its own process group. The lab only works on
// Linux; this stub only keeps the package compiling elsewhere.
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
