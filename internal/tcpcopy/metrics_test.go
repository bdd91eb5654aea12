package tcpcopy

import (
	"context"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	imetrics "github.com/tcpcopy-go/tcpcopy/internal/metrics"
	"github.com/tcpcopy-go/tcpcopy/pkg/tcpstate"
)

// scrape serves reg on a loopback port, fetches /metrics once and parses
// it with the Prometheus text parser.
func scrape(t *testing.T, e *engine) map[string]*dto.MetricFamily {
	t.Helper()
	reg := imetrics.NewRegistry()
	e.register(reg)
	ln, err := imetrics.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- imetrics.Serve(ctx, ln, reg, slog.New(slog.DiscardHandler)) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, body)
	}
	return fams
}

// value returns the value of the series of family name whose labels
// include want (name=value pairs), or -1 if there is none.
func value(fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(want); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == want[i] && l.GetValue() == want[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return -1
}

func TestMetricsScrape(t *testing.T) {
	pl := newPipeline(t)
	x := newExchange(pl)
	for range 20 {
		x.run(pl)
	}
	pl.e.disp.workers[0].publish()
	fams := scrape(t, pl.e)
	tests := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"tcpcopy_sessions_opened_total", nil, 1},
		{"tcpcopy_syns_sent_total", nil, 1},
		{"tcpcopy_synacks_received_total", nil, 1},
		{"tcpcopy_requests_total", nil, 20},
		{"tcpcopy_captured_bytes_total", nil, 8000},
		{"tcpcopy_acked_bytes_total", nil, 8000},
		{"tcpcopy_fidelity_ratio", nil, 1},
		{"tcpcopy_sessions_active", nil, 1},
		{"tcpcopy_packets_captured_total", nil, 21},
		{"tcpcopy_records_received_total", nil, 21},
		{"tcpcopy_packets_dropped_total", []string{"reason", "ring_full"}, 0},
		{"tcpcopy_packets_dropped_total", []string{"reason", "no_session"}, 0},
		{"tcpcopy_retransmits_total", []string{"kind", "timeout"}, 0},
		{"tcpcopy_intercept_links_up", []string{"intercept", "198.51.100.130:36524"}, 0},
		// Each request's answer comes at once, and the next request
		// acknowledges it: 20 target times, 19 online times, 19 pairs.
		{"tcpcopy_target_response_seconds", nil, 20},
		{"tcpcopy_online_response_seconds", nil, 19},
		{"tcpcopy_response_time_ratio", nil, 19},
		{"tcpcopy_build_info", nil, 1},
	}
	for _, tt := range tests {
		if got := value(fams, tt.name, tt.labels...); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	h := fams["tcpcopy_target_response_seconds"].GetMetric()[0].GetHistogram()
	if b := h.GetBucket(); len(b) != 17 || b[0].GetUpperBound() != 0.0001 || b[15].GetUpperBound() != 10 || !math.IsInf(b[16].GetUpperBound(), 1) {
		t.Errorf("buckets %v, want 0.0001 s .. 10 s and +Inf", b)
	}
	// A session closed shows up by outcome and reason.
	pl.e.disp.workers[0].tab.CloseAll(1)
	pl.e.disp.workers[0].publish()
	fams = scrape(t, pl.e)
	if got := value(fams, "tcpcopy_sessions_closed_total", "outcome", "reproduced", "reason", "tcpcopy_stopped"); got != 1 {
		t.Errorf("closed{reproduced,tcpcopy_stopped} = %v, want 1", got)
	}
	// Uncopied bytes by reason, in fidelity's denominator, and stalls by
	// cause.
	w := pl.e.disp.workers[0]
	w.statsMu.Lock()
	w.stats.UncopiedBytes[tcpstate.ReasonTargetRST] = 2000
	w.stats.UncopiedRequests[tcpstate.ReasonTargetRST] = 3
	w.stats.Stalls[tcpstate.StallZeroWindow] = 1
	w.statsMu.Unlock()
	fams = scrape(t, pl.e)
	for _, tt := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"tcpcopy_uncopied_bytes_total", []string{"reason", "target_rst"}, 2000},
		{"tcpcopy_uncopied_requests_total", []string{"reason", "target_rst"}, 3},
		{"tcpcopy_fidelity_ratio", nil, 0.8},
		{"tcpcopy_stalls_total", []string{"cause", "zero_window"}, 1},
		{"tcpcopy_stalls_total", []string{"cause", "unacknowledged"}, 0},
	} {
		if got := value(fams, tt.name, tt.labels...); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
}

// TestMetricsLint checks the names, units and help texts against the
// Prometheus conventions (promtool check metrics).
func TestMetricsLint(t *testing.T) {
	pl := newPipeline(t)
	fams := scrape(t, pl.e)
	var mfs []*dto.MetricFamily
	for name, f := range fams {
		if strings.HasPrefix(name, "tcpcopy_") {
			mfs = append(mfs, f)
		}
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}
