package tcpcopy

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/pkg/ipfrag"
	"github.com/tcpcopy-go/tcpcopy/pkg/tcpstate"
)

func TestDiagnose(t *testing.T) {
	const (
		P = tcpstate.Partial
		F = tcpstate.Failed
	)
	tests := []struct {
		name   string
		change func(s *snapshot)
		want   []string // warning kinds
		text   string   // in the first warning's message
	}{
		{"quiet", func(s *snapshot) {
			s.st.SYNs, s.st.SYNAcks, s.st.Closed[tcpstate.Reproduced][tcpstate.ReasonNone] = 10, 10, 10
		}, nil, ""},
		{"SYNs without SYN-ACK", func(s *snapshot) { s.st.SYNs = 40 }, []string{"no_synack"}, "scripts/route-setup.sh target --clients"},
		{"few SYNs are not enough", func(s *snapshot) { s.st.SYNs = 2 }, nil, ""},
		{"no_synack failures", func(s *snapshot) { s.st.SYNs, s.st.SYNAcks, s.st.Closed[F][tcpstate.ReasonNoSynAck] = 5, 4, 1 },
			[]string{"no_synack"}, "no SYN-ACK came back through intercept"},
		{"no link up", func(s *snapshot) { s.links.Up = 0; s.st.SYNs = 40 }, []string{"no_intercept"}, "no intercept link is up"},
		{"intercept_unavailable", func(s *snapshot) { s.st.Closed[F][tcpstate.ReasonNoIntercept] = 3 }, []string{"no_intercept"}, "intercept"},
		{"ring drops", func(s *snapshot) { s.ringDrops = 7 }, []string{"ring_full"}, "raise -B"},
		{"capture gaps", func(s *snapshot) { s.st.Closed[P][tcpstate.ReasonCaptureGap] = 2 }, []string{"capture_gap"}, "capture loss"},
		{"capture behind", func(s *snapshot) { s.overload = 1 }, []string{"busy"}, "more CPU"},
		{"target refuses", func(s *snapshot) {
			s.st.SYNs, s.st.SYNAcks, s.st.Closed[F][tcpstate.ReasonTargetRST] = 10, 0, 10
		}, []string{"target_rst"}, "port is closed"},
		{"reproduced target_rst is fine", func(s *snapshot) { s.st.Closed[tcpstate.Reproduced][tcpstate.ReasonTargetRST] = 9 }, nil, ""},
		{"target timeout", func(s *snapshot) { s.st.Closed[P][tcpstate.ReasonTargetTimeout] = 1 }, []string{"target_timeout"}, "stopped answering"},
		{"send errors", func(s *snapshot) { s.sendErrors = 3 }, []string{"send_error"}, "EPERM"},
		{"too big", func(s *snapshot) { s.tooBig = 3 }, []string{"too_big"}, "set -M"},
		{"memory", func(s *snapshot) { s.st.Closed[F][tcpstate.ReasonShed] = 4 }, []string{"shed"}, "raise -m"},
		{"capture overload is not memory", func(s *snapshot) { s.st.Closed[F][tcpstate.ReasonOverload], s.overload = 4, 4 }, []string{"busy"}, ""},
		{"handshake overload", func(s *snapshot) { s.st.Closed[F][tcpstate.ReasonOverload] = 5 }, []string{"overload"}, "copy a smaller share"},
		{"buffer full", func(s *snapshot) { s.st.Closed[F][tcpstate.ReasonBufferFull] = 1 }, []string{"buffer_full"}, ""},
		{"reconnects", func(s *snapshot) { s.st.Closed[P][tcpstate.ReasonReconnects] = 1 }, []string{"reconnects"}, ""},
		{"stalled", func(s *snapshot) {
			s.st.Closed[P][tcpstate.ReasonStalled] = 2
			s.st.LastStall = tcpstate.Stall{Key: tcpstate.Key{Client: benchClient, Target: benchTarget}, At: 1, Offset: 2000, Cause: tcpstate.StallZeroWindow}
		}, []string{"stalled"}, "stopped reading"},
		{"truncated", func(s *snapshot) { s.truncated = 1 }, []string{"truncated"}, "raise -S"},
		{"routes dropped", func(s *snapshot) { s.links.RoutesDropped = 1 }, []string{"routes_dropped"}, ""},
	}
	pl := newPipeline(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prev := snapshot{links: LinkStats{Up: 2}}
			cur := prev
			tt.change(&cur)
			ws := pl.e.diagnose(&prev, &cur)
			var got []string
			for _, w := range ws {
				got = append(got, w.Kind)
				if len(w.Attrs)%2 != 0 {
					t.Errorf("%s: odd attributes %v", w.Kind, w.Attrs)
				}
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Fatalf("warnings %q, want %q", got, tt.want)
			}
			if tt.text != "" && !strings.Contains(ws[0].Msg, tt.text) {
				t.Errorf("message %q lacks %q", ws[0].Msg, tt.text)
			}
		})
	}
}

func TestDiagnoseUDP(t *testing.T) {
	e, _, _ := udpEngine(t, func(c *Config) { c.Mappings = c.Mappings[:2]; c.Intercepts = nil })
	tests := []struct {
		name   string
		change func(s *udpStats)
		want   string
	}{
		{"quiet, no intercept needed", func(*udpStats) {}, ""},
		{"send errors", func(s *udpStats) { s.sendError = 2 }, "udp_send_error"},
		{"fragment timeouts", func(s *udpStats) { s.fragDrops[ipfrag.DropTimeout] = 2 }, "udp_fragments"},
		{"fragment overflow", func(s *udpStats) { s.fragDrops[ipfrag.DropOverflow] = 1 }, "udp_fragments"},
		{"overlaps are an attack, not a setup problem", func(s *udpStats) { s.fragDrops[ipfrag.DropOverlap] = 1 }, ""},
	}
	for _, tt := range tests {
		prev := snapshot{udp: &udpStats{}}
		cur := snapshot{udp: &udpStats{}}
		tt.change(cur.udp)
		var got []string
		for _, w := range e.diagnose(&prev, &cur) {
			got = append(got, w.Kind)
		}
		if strings.Join(got, " ") != tt.want {
			t.Errorf("%s: warnings %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestTopFailures(t *testing.T) {
	var st tcpstate.Stats
	if got := topFailures(&st, 3); got != "none" {
		t.Errorf("no failures: %q", got)
	}
	st.Closed[tcpstate.Failed][tcpstate.ReasonNoSynAck] = 40
	st.Closed[tcpstate.Partial][tcpstate.ReasonTargetRST] = 2
	st.Closed[tcpstate.Failed][tcpstate.ReasonTargetRST] = 1
	st.Closed[tcpstate.Partial][tcpstate.ReasonCaptureGap] = 5
	st.Closed[tcpstate.Failed][tcpstate.ReasonShed] = 1
	st.Closed[tcpstate.Reproduced][tcpstate.ReasonNone] = 100
	if got, want := topFailures(&st, 3), "no_synack=40 capture_gap=5 target_rst=3"; got != want {
		t.Errorf("topFailures = %q, want %q", got, want)
	}
	if got := topUncopied(&st, 3); got != "none" {
		t.Errorf("nothing uncopied: %q", got)
	}
	st.UncopiedBytes[tcpstate.ReasonTargetRST] = 700
	st.UncopiedBytes[tcpstate.ReasonOverload] = 900
	if got, want := topUncopied(&st, 3), "overload=900 target_rst=700"; got != want {
		t.Errorf("topUncopied = %q, want %q", got, want)
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestSummaryOnSIGUSR1(t *testing.T) {
	pl := newPipeline(t)
	var out syncBuffer
	pl.e.log = slog.New(slog.NewTextHandler(&out, nil))
	pl.e.cfg.StatsInterval = 0
	x := newExchange(pl)
	for range 5 {
		x.run(pl)
	}
	pl.e.disp.workers[0].publish()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pl.e.observe(ctx)
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "msg=summary") {
		if time.Now().After(deadline) {
			t.Fatalf("no summary logged after SIGUSR1; log:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	line := out.String()
	for _, want := range []string{"sessions=1", "requests=5", "fidelity=1.0000", "top_failures=none", "target_p50=", "online_p50=",
		`intercepts="198.51.100.130:36524=0"`} {
		if !strings.Contains(line, want) {
			t.Errorf("summary lacks %q:\n%s", want, line)
		}
	}
}
