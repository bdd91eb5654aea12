package labbench

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
)

func TestParseTargets(t *testing.T) {
	for _, tt := range []struct {
		in, want, wantErr string
	}{
		{in: "all", want: labrun.TargetServerNames()},
		{in: "close-each, nginx-kr100", want: "close-each, nginx-kr100"},
		{in: "recorder,apache", wantErr: `unknown target server "apache" (known: recorder, nginx-kr100`},
		{in: "slow-accept,slow-accept", wantErr: `"slow-accept" given twice`},
		{in: "", wantErr: "no target server given"},
		{in: "recorder,", wantErr: "no target server given"},
	} {
		got, err := ParseTargets(tt.in)
		var names []string
		for _, s := range got {
			names = append(names, s.Name)
		}
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: got %v, %v; want an error with %q", tt.in, names, err, tt.wantErr)
			}
			continue
		}
		if err != nil || strings.Join(names, ", ") != tt.want {
			t.Errorf("%q: got %v, %v; want %s", tt.in, names, err, tt.want)
		}
	}
}

func TestTargetRow(t *testing.T) {
	for _, tt := range []struct {
		name  string
		r     TargetResult
		row   string
		bench string
	}{
		{
			name: "met",
			r: TargetResult{Server: "nginx-kr100", Mode: TargetKeepAlive, Requests: 300, Fidelity: 100, Reported: 100,
				Reconnects: 2, TcpcopyCPU: 0.123, Met: true},
			row:   "nginx-kr100   keepalive        300   100.000%          100.000%           2  met",
			bench: "BenchmarkLabTarget/nginx-kr100-keepalive 1 300 requests 100.000 fidelity-% 100.000 tcpcopy-fidelity-% 2 reconnects 0 uncopied-requests 0.123 tcpcopy-cpu-s",
		},
		{
			name: "missed",
			r: TargetResult{Server: "close-some", Mode: TargetPipelined, Requests: 600, Fidelity: 17.833, Reported: 29.95,
				Reconnects: 16, UncopiedRequests: 119, TcpcopyCPU: 0.2,
				Why: "target: 107 of 600 requests byte-identical (0 different, 493 missing)", Dir: "/tmp/t"},
			row: "close-some    pipelined        600    17.833%           29.950%          16  " +
				"MISSED (target: 107 of 600 requests byte-identical (0 different, 493 missing); logs in /tmp/t)",
			bench: "BenchmarkLabTarget/close-some-pipelined 1 600 requests 17.833 fidelity-% 29.950 tcpcopy-fidelity-% 16 reconnects 119 uncopied-requests 0.200 tcpcopy-cpu-s",
		},
		{
			name: "run failed",
			r:    TargetResult{Server: "slow-accept", Mode: TargetShort, Reported: -1, Why: "the run failed: nginx missing"},
			row:  "slow-accept   short              0     0.000%                 -           0  MISSED (the run failed: nginx missing)",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.row(); got != tt.row {
				t.Errorf("row\n%q\nwant\n%q", got, tt.row)
			}
			if got := tt.r.benchLine(); got != tt.bench {
				t.Errorf("benchmark line\n%q\nwant\n%q", got, tt.bench)
			}
			checkColumns(t, targetHeader, tt.row, []string{"requests", "at target", "tcpcopy fidelity", "reconnects"})
		})
	}
}

// TestTargetLab checks each row's load: it meets the server's limits, and
// the bench's own load is left alone.
func TestTargetLab(t *testing.T) {
	cfg := Config{}
	cfg.setDefaults()
	srv := func(name string) labrun.TargetServer {
		s, err := labrun.TargetServerByName(name)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, tt := range []struct {
		server                string
		mode                  TargetMode
		wantMode              load.Mode
		conc, perConn, pipe   int
		rate                  float64
		duration, think, tail time.Duration
	}{
		{"recorder", TargetKeepAlive, load.KeepAlive, 4, 10, 0, 100, 2 * time.Second, 0, time.Second},
		{"recorder", TargetShort, load.Short, 4, 10, 0, 100, 2 * time.Second, 0, time.Second},
		{"recorder", TargetPipelined, load.KeepAlive, 2, 151, 3, 150, 2 * time.Second, 0, time.Second},
		{"nginx-kr100", TargetKeepAlive, load.KeepAlive, 2, 250, 0, 150, 2 * time.Second, 0, time.Second},
		{"nginx-kt1s", TargetKeepAlive, load.KeepAlive, 8, 10, 0, 100, 3750 * time.Millisecond, 1500 * time.Millisecond, time.Second},
		{"nginx-kt1s", TargetShort, load.Short, 4, 10, 0, 100, 2 * time.Second, 0, time.Second},
		{"slow-accept", TargetShort, load.Short, 4, 10, 0, 100, 2 * time.Second, 0, 2 * time.Second},
	} {
		lab := targetLab(cfg, srv(tt.server), tt.mode)
		l := lab.Load
		if lab.TargetServer != tt.server || l.Mode != tt.wantMode || l.Concurrency != tt.conc || l.RequestsPerConn != tt.perConn ||
			l.Pipeline != tt.pipe || l.Rate != tt.rate || l.Duration != tt.duration || l.Think != tt.think || lab.Tail != tt.tail ||
			l.MaxRequests != int(tt.rate*tt.duration.Seconds())+1 || !slices.Equal(l.BodySizes, TargetBodySizes) {
			t.Errorf("%s %s: server %q tail %v load %+v", tt.server, tt.mode, lab.TargetServer, lab.Tail, l)
		}
		if err := l.ValidateKeepAlive(); err != nil {
			t.Errorf("%s %s: %v", tt.server, tt.mode, err)
		}
	}
	if cfg.Lab.Load.Pipeline != 0 || cfg.Lab.TargetServer != "" || !slices.Equal(cfg.Lab.Load.BodySizes, DefaultBodySizes) {
		t.Errorf("the bench's load changed: %+v", cfg.Lab)
	}
	// Every pipelined server exists, and gets three rows.
	for _, name := range PipelinedTargets {
		if got := targetModes(srv(name)); len(got) != 3 || got[2] != TargetPipelined {
			t.Errorf("%s: modes %v", name, got)
		}
	}
}
