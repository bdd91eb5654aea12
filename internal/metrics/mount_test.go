package metrics

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

func TestServeMounts(t *testing.T) {
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, "the page")
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ln, NewRegistry(), slog.New(slog.DiscardHandler),
			Mount{Pattern: "/", Handler: page}, Mount{Pattern: "GET /api/x", Handler: page})
	}()
	tests := []struct {
		path   string
		status int
		body   string
	}{
		{"/", 200, "the page"},
		{"/metrics", 200, "go_goroutines"}, // the more specific pattern wins
		{"/api/x", 404, "not found"},       // mounted, and its handler answers
		{"/other", 404, "not found"},       // to "/", which does not know it
	}
	for _, tt := range tests {
		resp, err := http.Get("http://" + ln.Addr().String() + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || !strings.Contains(string(b), tt.body) {
			t.Errorf("%s: %d %.80q, want %d with %q", tt.path, resp.StatusCode, b, tt.status, tt.body)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}
