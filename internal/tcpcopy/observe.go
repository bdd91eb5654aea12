package tcpcopy

import (
	"context"
	"fmt"
	"runtime/metrics"
	"time"

	"github.com/tcpcopy-go/tcpcopy/pkg/tcpstate"
)

// observe starts the loops that watch a running copy: the periodic stats
// line and the memory budget.
func (e *engine) observe(ctx context.Context) {
	go e.statsLoop(ctx, e.cfg.StatsInterval)
	go e.memoryLoop(ctx, int64(e.cfg.MemoryMB)<<20)
}

// stats sums every worker's published counters.
func (e *engine) stats() tcpstate.Stats {
	var st tcpstate.Stats
	for _, w := range e.disp.workers {
		ws := w.snapshot()
		st.Add(&ws)
	}
	return st
}

func (e *engine) ringDrops() uint64 {
	var n uint64
	for _, s := range e.sources {
		n += s.Stats().Drops
	}
	return n
}

// statsLoop logs a stats line every interval.
func (e *engine) statsLoop(ctx context.Context, every time.Duration) {
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			st := e.stats()
			ls := e.links.Stats()
			e.log.Info("stats",
				"captured", e.captured.Load(), "sessions_active", st.Active, "sessions_opened", st.Opened,
				"reproduced", st.ClosedBy(tcpstate.Reproduced), "partial", st.ClosedBy(tcpstate.Partial),
				"failed", st.ClosedBy(tcpstate.Failed), "requests", st.Requests, "responses", st.Responses,
				"retransmits", st.Retransmits+st.FastRetransmits, "fidelity", fmt.Sprintf("%.4f", st.Fidelity()),
				"links_up", ls.Up, "dropped_busy", e.disp.busy.Load(), "ring_drops", e.ringDrops(),
				"send_errors", e.sc.errors.Load())
		}
	}
}

// memoryLoop enforces the memory budget (-m): above it new sessions are
// shed, the process keeps running (C TCPCopy exits).
func (e *engine) memoryLoop(ctx context.Context, budget int64) {
	if budget <= 0 {
		return
	}
	sample := []metrics.Sample{{Name: "/memory/classes/total:bytes"}}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			metrics.Read(sample)
			used := int64(sample[0].Value.Uint64())
			over := used > budget
			if e.shed.Swap(over) != over {
				if over {
					e.log.Warn("memory budget exceeded: new sessions are shed", "used_mb", used>>20, "budget_mb", budget>>20)
				} else {
					e.log.Info("memory back under budget: new sessions accepted", "used_mb", used>>20)
				}
			}
		}
	}
}

// logSummary writes the end-of-run summary.
func (e *engine) logSummary() {
	st := e.stats()
	attrs := []any{"sessions", st.Opened, "requests", st.Requests,
		"reproduced", st.ClosedBy(tcpstate.Reproduced), "partial", st.ClosedBy(tcpstate.Partial),
		"failed", st.ClosedBy(tcpstate.Failed), "fidelity", fmt.Sprintf("%.4f", st.Fidelity()),
		"captured_bytes", st.CapturedBytes, "acked_bytes", st.AckedBytes}
	for o := range tcpstate.NumOutcomes {
		for r := range tcpstate.NumReasons {
			if n := st.Closed[o][r]; n > 0 && tcpstate.Outcome(o) != tcpstate.Reproduced {
				attrs = append(attrs, tcpstate.Outcome(o).String()+"_"+tcpstate.Reason(r).String(), n)
			}
		}
	}
	e.log.Info("tcpcopy stopped", attrs...)
}
