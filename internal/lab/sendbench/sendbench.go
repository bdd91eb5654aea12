// Package sendbench measures the raw-send ceiling of the lab: how many
// packets per second a bare sender pushes through the same path tcpcopy
// uses (a raw IP socket, the online host's stack, the veth to the target,
// and the target's TCP answering them), so that tcpcopy's own packet rate
// can be stated as a share of that limit.
package sendbench

import (
	"errors"
	"net/netip"
	"time"

	"github.com/tcpcopy-go/tcpcopy/pkg/inject"
	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
)

// Result is one measurement.
type Result struct {
	Packets int           `json:"packets"` // sent without error
	Errors  int           `json:"errors"`  // refused by the socket (e.g. ENOBUFS)
	Elapsed time.Duration `json:"elapsed"`
	PPS     float64       `json:"pps"` // Packets per second
}

// Run sends TCP ACK segments with a 100-byte payload like a copied request
// segment, from src with a different source port for every 64 packets, to
// dst, as fast as the socket takes them, for at most d and at most count
// packets (both bounds always apply). The target answers each with a RST,
// which its route sends to the assistant, where it dies. With batch > 1
// the packets go batch at a time through one sendmmsg(2) (inject.Batcher,
// as tcpcopy's workers send), else one sendto(2) each. It needs
// CAP_NET_RAW and runs in the caller's network namespace.
func Run(src netip.Addr, dst netip.AddrPort, d time.Duration, count, batch int) (Result, error) {
	if d <= 0 || count <= 0 {
		return Result{}, errors.New("sendbench: duration and count must be positive")
	}
	s, err := inject.Open()
	if err != nil {
		return Result{}, err
	}
	defer s.Close()
	f := ipmangle.Fields{
		Src: netip.AddrPortFrom(src, 20000), Dst: dst, Seq: 1, Ack: 1,
		Flags: ipmangle.ACK | ipmangle.PSH, Window: 512, WScale: -1, DontFragment: true,
		Payload: make([]byte, 100),
	}
	buf := make([]byte, f.Len())
	var r Result
	batch = min(max(batch, 1), 64)
	var (
		b    *inject.Batcher
		pkts [][]byte
		fail = func([]byte, error) { r.Errors++ }
	)
	if batch > 1 {
		b = s.NewBatcher(batch)
	}
	start := time.Now()
	deadline := start.Add(d)
	for i := 0; i < count; {
		if i%64 == 0 {
			if time.Now().After(deadline) {
				break
			}
			f.Src = netip.AddrPortFrom(src, uint16(20000+(i/64)%40000))
			f.Seq += 1000
			f.Encode(buf)
		}
		if b == nil {
			if s.Send(buf) != nil {
				r.Errors++
			} else {
				r.Packets++
			}
			i++
			continue
		}
		// A batch never crosses a change of source port.
		n := min(batch, 64-i%64, count-i)
		pkts = pkts[:0]
		for range n {
			pkts = append(pkts, buf)
		}
		r.Packets += b.Send(pkts, fail)
		i += n
	}
	r.Elapsed = time.Since(start)
	if r.Elapsed > 0 {
		r.PPS = float64(r.Packets) / r.Elapsed.Seconds()
	}
	return r, nil
}
