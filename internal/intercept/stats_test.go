package intercept

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tcpcopy-go/tcpcopy/internal/metrics"
	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
	"github.com/tcpcopy-go/tcpcopy/pkg/router"
)

func TestInterceptDiagnose(t *testing.T) {
	tests := []struct {
		name   string
		change func(s *Stats)
		want   string // warning kinds, space-separated
	}{
		{"quiet", func(s *Stats) { s.Routed, s.Unrouted = 1000, 3 }, ""},
		{"no links", func(s *Stats) { s.Links, s.Unrouted = 0, 5 }, "no_links"},
		{"many unrouted", func(s *Stats) { s.Routed, s.Unrouted = 100, 50 }, "unrouted"},
		{"queue full", func(s *Stats) { s.Dropped = 9 }, "queue_full"},
		{"ring full", func(s *Stats) { s.RingDrops = 9 }, "ring_full"},
		{"held expired", func(s *Stats) { s.Table.HeldExpired = 2 }, "held_expired"},
		{"held pool full", func(s *Stats) { s.Table.HeldDropped = 2 }, "held_full"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prev := Stats{Links: 1}
			cur := prev
			tt.change(&cur)
			var got []string
			for _, w := range diagnose(&prev, &cur) {
				got = append(got, w.Kind)
				if len(w.Attrs)%2 != 0 {
					t.Errorf("%s: odd attributes", w.Kind)
				}
			}
			if g := strings.Join(got, " "); g != tt.want {
				t.Errorf("warnings %q, want %q", g, tt.want)
			}
		})
	}
}

func TestInterceptMetricsScrape(t *testing.T) {
	s, addr := startServer(t, testConfig())
	a := dial(t, addr, true, 0)
	a.route("192.0.2.10:40000", target4)
	waitFor(t, "route", func() bool { return s.Stats().RouteMsgs == 1 })
	injectBatch(s,
		response(t, target4, "192.0.2.10:40000", ipmangle.ACK, "x"),
		response(t, target4, "192.0.2.10:40001", ipmangle.ACK, ""),
		[]byte{0x45, 0},
	)
	a.read(1)
	// Records count as sent once the write returned.
	waitFor(t, "record counted", func() bool { return s.Stats().Routed == 1 })

	reg := metrics.NewRegistry()
	s.register(reg)
	ln, err := metrics.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = metrics.Serve(ctx, ln, reg, quiet) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	get := func(name string, labels ...string) float64 {
		f := fams[name]
		if f == nil {
			return -1
		}
	next:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				ok := false
				for _, l := range m.GetLabel() {
					ok = ok || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
				}
				if !ok {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
		return -1
	}
	ls := s.LinkStats()
	if len(ls) != 1 {
		t.Fatalf("link stats %+v, want one link", ls)
	}
	link := ls[0].Remote
	tests := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"intercept_packets_captured_total", nil, 3},
		{"intercept_records_sent_total", nil, 1},
		{"intercept_responses_unrouted_total", nil, 1},
		{"intercept_packets_dropped_total", []string{"reason", "invalid"}, 1},
		{"intercept_packets_dropped_total", []string{"reason", "ring_full"}, 0},
		{"intercept_routes_added_total", nil, 1},
		{"intercept_routes", nil, 1},
		{"intercept_links", nil, 1},
		{"intercept_link_records_total", []string{"remote", link}, 1},
		{"intercept_link_route_messages_total", []string{"remote", link}, 1},
		{"intercept_link_wire_version", []string{"remote", link}, 7},
		{"intercept_link_routes", []string{"remote", link}, 1},
		{"intercept_link_routes_refused_total", []string{"remote", link}, 0},
		{"intercept_links_closed_total", []string{"cause", "idle"}, 0},
		{"intercept_routes_refused_total", []string{"cause", "link_cap"}, 0},
		{"intercept_messages_skipped_total", nil, 0},
		{"intercept_links_authenticated_total", nil, 0},
		{"intercept_build_info", nil, 1},
	}
	for _, tt := range tests {
		if got := get(tt.name, tt.labels...); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	var mfs []*dto.MetricFamily
	for name, f := range fams {
		if strings.HasPrefix(name, "intercept_") {
			mfs = append(mfs, f)
		}
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint %s: %s", p.Metric, p.Text)
	}
}

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

func TestInterceptSummaryOnSIGUSR1(t *testing.T) {
	var out syncBuffer
	s := NewServer(testConfig(), slog.New(slog.NewTextHandler(&out, nil)))
	s.routes.Add(router.Key{}, 1, time.Now(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.observe(ctx, 0)
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "summary", func() bool { return strings.Contains(out.String(), "msg=summary") })
	for _, want := range []string{"captured=0", "routes=1", "links=0"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q: %s", want, out.String())
		}
	}
}
