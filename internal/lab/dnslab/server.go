package dnslab

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Entry is one query a Server got.
type Entry struct {
	Time   time.Time
	Remote netip.AddrPort // as the server saw it (IPv4 unmapped)
	Query  Query
	// Size is the length of the query's UDP payload: a copy that arrived
	// whole has the size of the original.
	Size int
	// TC reports that the answer was truncated (TC bit, no answer).
	TC bool
	// Dropped reports that the server did not answer (ServeOptions.DropEvery).
	Dropped bool
	// Altered reports that the answer had its RA flag cleared
	// (ServeOptions.AlterEvery).
	Altered bool
}

// ServeOptions change how a Server answers, to make a target that
// misbehaves.
type ServeOptions struct {
	// DropEvery > 0 leaves every DropEvery-th query (counted from 1, in
	// arrival order, over all sockets) unanswered.
	DropEvery int
	// AlterEvery > 0 answers every AlterEvery-th query (counted from 1,
	// in arrival order, over all sockets) with the RA flag cleared: the
	// same length, other bytes than a plain server's answer.
	AlterEvery int
}

// Server answers the queries that arrive on its sockets and records each
// of them. Make it with Serve.
type Server struct {
	conns []*net.UDPConn
	opts  ServeOptions
	wg    sync.WaitGroup

	mu        sync.Mutex
	entries   []Entry
	malformed int
}

// Serve starts answering on conns (bound by the caller, in whatever
// network namespace) until Close.
func Serve(conns ...*net.UDPConn) *Server {
	return ServeWith(ServeOptions{}, conns...)
}

// ServeWith is Serve with options.
func ServeWith(o ServeOptions, conns ...*net.UDPConn) *Server {
	s := &Server{conns: conns, opts: o}
	for _, c := range conns {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.loop(c)
		}()
	}
	return s
}

func (s *Server) loop(c *net.UDPConn) {
	buf := make([]byte, 65536)
	var out []byte
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		msg := buf[:n]
		q, err := ParseQuery(msg)
		if err != nil {
			s.mu.Lock()
			s.malformed++
			s.mu.Unlock()
			continue
		}
		var tc bool
		out, tc = AppendResponse(out[:0], msg, q)
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		s.mu.Lock()
		drop := s.opts.DropEvery > 0 && (len(s.entries)+1)%s.opts.DropEvery == 0
		alter := s.opts.AlterEvery > 0 && (len(s.entries)+1)%s.opts.AlterEvery == 0
		if alter {
			out[3] &^= byte(flagRA)
		}
		s.entries = append(s.entries, Entry{Time: time.Now(), Remote: from, Query: q, Size: n, TC: tc, Dropped: drop, Altered: alter})
		s.mu.Unlock()
		if !drop {
			_, _ = c.WriteToUDPAddrPort(out, from)
		}
	}
}

// Entries returns a copy of the queries recorded so far, in arrival
// order.
func (s *Server) Entries() []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Entry(nil), s.entries...)
}

// Count returns the number of queries recorded so far.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// Malformed returns the number of datagrams that were not queries.
func (s *Server) Malformed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.malformed
}

// Close closes the sockets and waits for the server to stop.
func (s *Server) Close() error {
	var errs []error
	for _, c := range s.conns {
		errs = append(errs, c.Close())
	}
	s.wg.Wait()
	return errors.Join(errs...)
}
