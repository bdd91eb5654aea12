package dnslab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Kind is a kind of query of the load.
type Kind int

// The kinds, sent in turn.
const (
	// Plain is a small query without EDNS and a small answer.
	Plain Kind = iota
	// EDNS is a query with EDNS (UDP size 1232) and an 800-byte answer.
	EDNS
	// Truncated is a query without EDNS for a 1000-byte answer: the
	// server answers with the TC bit.
	Truncated
	// BigAnswer is an EDNS query (UDP size 4096) for a 3000-byte answer,
	// which is fragmented on its way to the client.
	BigAnswer
	// BigQuery is an EDNS query padded to about 2100 bytes: the client's
	// kernel fragments it.
	BigQuery
	numKinds
)

var kindNames = [numKinds]string{"plain", "edns", "tc", "bigans", "bigq"}

// String returns the kind's name, as it appears in query names.
func (k Kind) String() string {
	if k >= 0 && k < numKinds {
		return kindNames[k]
	}
	return "unknown"
}

// BigQueryPadding is the padding of BigQuery queries, in bytes.
const BigQueryPadding = 2000

// query returns the i-th query of a load with names under suffix.
func query(i int, suffix string) Query {
	k := Kind(i % int(numKinds))
	q := Query{ID: uint16(i)}
	ans := 100
	switch k {
	case EDNS:
		q.EDNS, q.UDPSize, ans = true, 1232, 800
	case Truncated:
		ans = 1000
	case BigAnswer:
		q.EDNS, q.UDPSize, ans = true, 4096, 3000
	case BigQuery:
		q.EDNS, q.UDPSize, q.Padding = true, 4096, BigQueryPadding
	}
	q.Name = fmt.Sprintf("q%d-%s-a%d.%s", i, k, ans, suffix)
	return q
}

// KindOf returns the kind of a query name made by the load, and false for
// other names.
func KindOf(name string) (Kind, bool) {
	first, _, _ := strings.Cut(name, ".")
	parts := strings.Split(first, "-")
	if len(parts) != 3 || !strings.HasPrefix(parts[0], "q") {
		return 0, false
	}
	for k := range numKinds {
		if parts[1] == k.String() {
			return k, true
		}
	}
	return 0, false
}

// Options describe a load.
type Options struct {
	// Server is where the queries go.
	Server netip.AddrPort
	// Count is the number of queries, at least 1.
	Count int
	// Rate is the number of queries started per second; 100 by default.
	Rate float64
	// Concurrency bounds the queries waiting for their answer; 8 by
	// default.
	Concurrency int
	// Timeout is how long a query waits for its answer; 1 s by default.
	Timeout time.Duration
	// Suffix ends every name (the names are q<i>-<kind>-a<size>.Suffix);
	// "lab.example" by default.
	Suffix string
	// Open opens the socket of one query (each query has its own, so its
	// own source port, as stub resolvers do); net.ListenUDP on any
	// address by default. Tests open it in the client's namespace.
	Open func() (*net.UDPConn, error)
}

// Result is what a load saw.
type Result struct {
	Sent      int
	Answered  int // answers received (truncated ones included)
	Truncated int // answers with the TC bit
	Timeouts  int
	Errors    int
	ByKind    [numKinds]int // answers received, by kind
	MaxQuery  int           // the longest query sent, bytes of UDP payload
	MaxAnswer int           // the longest answer received
}

// Run sends o.Count queries, o.Rate per second, and waits for their
// answers. It returns within about Count/Rate + Timeout, or when ctx
// ends (the result then counts what was done).
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Count <= 0 || o.Server.Port() == 0 {
		return Result{}, errors.New("dnslab: a load needs a server and a count")
	}
	if o.Rate <= 0 {
		o.Rate = 100
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if o.Suffix == "" {
		o.Suffix = "lab.example"
	}
	if o.Open == nil {
		o.Open = func() (*net.UDPConn, error) { return net.ListenUDP("udp", nil) }
	}
	var (
		mu  sync.Mutex
		res Result
		wg  sync.WaitGroup
	)
	sem := make(chan struct{}, o.Concurrency)
	start := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	for i := range o.Count {
		due := start.Add(time.Duration(float64(i) / o.Rate * float64(time.Second)))
		t.Reset(time.Until(due))
		select {
		case <-ctx.Done():
			wg.Wait()
			return res, ctx.Err()
		case <-t.C:
		}
		select {
		case <-ctx.Done():
			wg.Wait()
			return res, ctx.Err()
		case sem <- struct{}{}:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r := ask(o, query(i, o.Suffix))
			mu.Lock()
			defer mu.Unlock()
			res.Sent++
			res.MaxQuery = max(res.MaxQuery, r.qlen)
			switch {
			case r.err != nil:
				res.Errors++
			case r.timeout:
				res.Timeouts++
			default:
				res.Answered++
				res.ByKind[Kind(i%int(numKinds))]++
				res.MaxAnswer = max(res.MaxAnswer, r.alen)
				if r.tc {
					res.Truncated++
				}
			}
		}()
	}
	wg.Wait()
	return res, nil
}

type answer struct {
	qlen, alen int
	tc         bool
	timeout    bool
	err        error
}

// ask sends q on a socket of its own and waits for the answer.
func ask(o Options, q Query) answer {
	c, err := o.Open()
	if err != nil {
		return answer{err: err}
	}
	defer c.Close()
	msg := AppendQuery(nil, q)
	if _, err := c.WriteToUDPAddrPort(msg, o.Server); err != nil {
		return answer{qlen: len(msg), err: err}
	}
	if err := c.SetReadDeadline(time.Now().Add(o.Timeout)); err != nil {
		return answer{qlen: len(msg), err: err}
	}
	buf := make([]byte, 65536)
	for {
		n, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return answer{qlen: len(msg), timeout: true}
			}
			return answer{qlen: len(msg), err: err}
		}
		id, tc, _, err := ParseResponse(buf[:n])
		if err != nil || id != q.ID {
			continue // not ours
		}
		return answer{qlen: len(msg), alen: n, tc: tc}
	}
}
