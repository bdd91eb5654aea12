package tcpstate

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// TestLossyPaths copies requests over paths that lose packets at random,
// toward the target and on the way back through intercept: every byte
// arrives, in bounded time.
func TestLossyPaths(t *testing.T) {
	tests := []struct {
		out, in float64
	}{{0.01, 0.01}, {0.02, 0.02}, {0.05, 0}, {0, 0.05}}
	for _, tt := range tests {
		for _, size := range []int{20000, 1 << 20} {
			t.Run(fmt.Sprintf("out %.0f%% in %.0f%% %d bytes", tt.out*100, tt.in*100, size), func(t *testing.T) {
				var worst time.Duration
				for seed := range uint64(20) {
					p := &simPath{t: t, rtt: int64(time.Millisecond), mss: 1460, ts: true, now: 1e18,
						rng: rand.New(rand.NewPCG(seed, 7)), lossOut: tt.out, lossIn: tt.in}
					p.tab = New(Config{}, p)
					k := key1
					p.clientPkt(k, onlineAP, S, 1000, 0, nil, false)
					start := p.now
					seq := uint32(1001)
					want := body(size)
					for off := 0; off < size; off += 1448 {
						n := min(1448, size-off)
						flags := A
						if off+n == size {
							flags = PA
						}
						p.clientPkt(k, onlineAP, flags, seq, 9001, want[off:off+n], false)
						seq += uint32(n)
					}
					p.clientPkt(k, onlineAP, FA, seq, 9101, nil, false)
					for i := 0; i < 600 && !(p.finGot && len(p.got) == size); i++ {
						p.run(p.now + int64(100*time.Millisecond))
					}
					d := time.Duration(p.now - start)
					if !bytes.Equal(p.got, want) || !p.finGot {
						st := p.tab.Stats()
						t.Fatalf("seed %d: the target got %d of %d bytes, FIN %v, after %v (retransmits %d, fast %d, closed %v)",
							seed, len(p.got), size, p.finGot, d, st.Retransmits, st.FastRetransmits, st.Closed)
					}
					worst = max(worst, d)
				}
				t.Logf("worst time to deliver: %v", worst)
			})
		}
	}
}

// TestNoRecoveryAtStart: a connection is not in loss recovery when it
// starts, whatever its sequence numbers: acknowledgements of a lossless
// exchange (here with client sequence numbers in the upper half of the
// space, where a recovery point left at 0 looked ahead of them) make no
// retransmission.
func TestNoRecoveryAtStart(t *testing.T) {
	for _, isn := range []uint32{1000, 0x9000_0000, 0xffff_fff0} {
		p := &simPath{t: t, rtt: int64(time.Millisecond), mss: 1460, ts: true, now: 1e18}
		p.tab = New(Config{}, p)
		p.clientPkt(key1, onlineAP, S, isn, 0, nil, false)
		p.run(p.now + int64(2*time.Millisecond))
		seq := isn + 1
		for range 5 {
			p.clientPkt(key1, onlineAP, A, seq, 9001, body(1448), false)
			seq += 1448
		}
		p.run(p.now + int64(time.Second))
		if st := p.tab.Stats(); st.Retransmits+st.FastRetransmits != 0 || len(p.got) != 5*1448 {
			t.Errorf("ISN %#x: %d retransmissions, %d fast; %d bytes delivered", isn, st.Retransmits, st.FastRetransmits, len(p.got))
		}
	}
}
