package netlab

import "syscall"

// procAttr puts a child in its own process group, so that it can be stopped
// as a group, and asks the kernel to SIGKILL it when this process dies
// (prctl PR_SET_PDEATHSIG, kept across the exec that "ip netns exec" does),
// so that a crashed test or orchestrator leaves no processes behind.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
