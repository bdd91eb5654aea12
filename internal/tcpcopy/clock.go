package tcpcopy

import "time"

// clock is the engine's time, in Unix nanoseconds: the wall clock read
// once at the start, advanced by a monotonic clock since. Session
// timers, retransmission timeouts, the pacing of requests and of an
// offline replay, and our TCP timestamps (TSval, in milliseconds) all run
// on it, so a step of the wall clock (NTP, an operator, a VM resumed)
// neither ends every session at once nor stops their timers, and TSval
// never goes backwards (the target's PAWS check, RFC 7323 §5, would drop
// every segment after a step back). Times it gives stay comparable with
// the wall clock of the start, for logs.
type clock struct {
	base  int64                // wall clock at the start, Unix ns
	since func() time.Duration // monotonic time since the start
}

// systemClock is the clock of a running tcpcopy.
func systemClock() *clock {
	start := time.Now() // carries a monotonic reading: time.Since uses it
	return &clock{base: start.UnixNano(), since: func() time.Duration { return time.Since(start) }}
}

// now returns the engine's time.
func (c *clock) now() int64 { return c.base + int64(c.since()) }
