package recorder

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// ListenOptions make a listener behave like a busy server's (Listen). The
// zero value is a plain net.Listen.
type ListenOptions struct {
	// Backlog, when above 0, is the listen backlog (listen(2)) instead of
	// the system's somaxconn: Linux drops a SYN while Backlog accepted
	// connections wait in the accept queue and answers with SYN cookies
	// once Backlog handshakes are pending, so the clients must retransmit.
	Backlog int
	// AcceptDelay is a pause before each accept(2) while the server is
	// busy (see SlowFor): it accepts at most one connection per
	// AcceptDelay, and the accept queue fills. 0 accepts at once.
	AcceptDelay time.Duration
	// SlowFor is how long the server stays busy, from its first accepted
	// connection (so from the start of the load, not of the program), and
	// SlowEvery the period after which it is busy again (0: busy once).
	// SlowFor 0 with an AcceptDelay means always busy.
	SlowFor, SlowEvery time.Duration
}

// Validate reports settings that do not make sense.
func (o ListenOptions) Validate() error {
	switch {
	case o.Backlog < 0:
		return fmt.Errorf("recorder: negative backlog %d", o.Backlog)
	case o.AcceptDelay < 0 || o.SlowFor < 0 || o.SlowEvery < 0:
		return errors.New("recorder: negative accept delay or busy period")
	case (o.SlowFor > 0 || o.SlowEvery > 0) && o.AcceptDelay == 0:
		return errors.New("recorder: a busy period without an accept delay")
	case o.SlowEvery > 0 && o.SlowFor == 0:
		return errors.New("recorder: a busy period's repetition without its length")
	case o.SlowEvery > 0 && o.SlowEvery <= o.SlowFor:
		return fmt.Errorf("recorder: busy for %v of every %v is always busy: leave the repetition out", o.SlowFor, o.SlowEvery)
	}
	return nil
}

// Listen opens a TCP listener on addr with o's backlog, and wraps it in
// o's slow accepts when o has an AcceptDelay.
func Listen(addr string, o ListenOptions) (net.Listener, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if o.Backlog > 0 {
		if err := setBacklog(ln, o.Backlog); err != nil {
			ln.Close()
			return nil, fmt.Errorf("recorder: backlog of %s: %w", addr, err)
		}
	}
	if o.AcceptDelay == 0 {
		return ln, nil
	}
	return &slowListener{Listener: ln, o: o, now: time.Now, sleep: time.Sleep}, nil
}

// slowListener pauses before each Accept while busy (ListenOptions).
type slowListener struct {
	net.Listener
	o     ListenOptions
	now   func() time.Time
	sleep func(time.Duration)

	mu    sync.Mutex
	first time.Time // first accepted connection; zero before
}

// busy reports whether the server is busy at t.
func (l *slowListener) busy(t time.Time) bool {
	l.mu.Lock()
	first := l.first
	l.mu.Unlock()
	if l.o.SlowFor == 0 || first.IsZero() {
		return true // always, or from the start until the first connection
	}
	d := t.Sub(first)
	if l.o.SlowEvery > 0 {
		d %= l.o.SlowEvery
	}
	return d < l.o.SlowFor
}

// Accept waits AcceptDelay first while the server is busy.
func (l *slowListener) Accept() (net.Conn, error) {
	if l.busy(l.now()) {
		l.sleep(l.o.AcceptDelay)
	}
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		if l.first.IsZero() {
			l.first = l.now()
		}
		l.mu.Unlock()
	}
	return c, err
}
