package metrics

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestServeScrape(t *testing.T) {
	var n atomic.Uint64
	n.Store(42)
	reg := NewRegistry()
	Counter(reg, "test_packets_total", "Packets.", func() float64 { return float64(n.Load()) })
	Gauge(reg, "test_links", "Links.", func() float64 { return 3 })
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, reg, slog.New(slog.DiscardHandler)) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if got := fams["test_packets_total"].GetMetric()[0].GetCounter().GetValue(); got != 42 {
		t.Errorf("test_packets_total = %v, want 42", got)
	}
	if got := fams["test_links"].GetMetric()[0].GetGauge().GetValue(); got != 3 {
		t.Errorf("test_links = %v, want 3", got)
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Errorf("runtime metrics missing")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}
