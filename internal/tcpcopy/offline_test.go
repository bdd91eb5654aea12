package tcpcopy

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
	"github.com/tcpcopy-go/tcpcopy/pkg/tcpstate"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

const ms64 = int64(time.Millisecond)

func TestPacer(t *testing.T) {
	type step struct {
		ts, now, due int64 // ms
	}
	tests := []struct {
		name  string
		accel float64
		idle  time.Duration
		steps []step
	}{
		{"capture timing", 1, 0, []step{{1000, 50, 50}, {1010, 55, 60}, {1500, 60, 550}, {1500, 600, 550}}},
		{"twice as fast", 2, 0, []step{{1000, 0, 0}, {1100, 0, 50}, {3000, 10, 1000}}},
		{"slower", 0.5, 0, []step{{0, 0, 0}, {100, 0, 200}}},
		{"time going backwards", 1, 0, []step{{1000, 0, 0}, {900, 5, 0}, {1050, 5, 50}}},
		// -I 100: the 400 ms gap is skipped, once; the 100 ms one is not.
		{"idle skip", 1, 100 * time.Millisecond, []step{{0, 0, 0}, {100, 0, 100}, {500, 0, 100}, {510, 0, 110}, {2000, 0, 110}, {2001, 0, 111}}},
		{"idle skip, accelerated", 10, 100 * time.Millisecond, []step{{0, 0, 0}, {50, 0, 5}, {1050, 0, 5}, {1100, 0, 10}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pc := pacer{accel: tt.accel, idle: int64(tt.idle)}
			for i, s := range tt.steps {
				if got := pc.due(s.ts*ms64, s.now*ms64); got != s.due*ms64 {
					t.Errorf("step %d (ts %d ms): due %v, want %d ms", i, s.ts, time.Duration(got), s.due)
				}
			}
		})
	}
	// A new pass starts at the current time.
	pc := pacer{accel: 1}
	pc.due(5000*ms64, 0)
	pc.due(6000*ms64, 0)
	pc.reset()
	if got := pc.due(5000*ms64, 7000*ms64); got != 7000*ms64 {
		t.Errorf("first packet of a new pass due at %v", time.Duration(got))
	}
}

// releases replays the golden capture through engine.replay in a
// synctest bubble (virtual time) and returns when each session's SYN was
// sent to the target, relative to the first, by client endpoint.
func releases(t *testing.T, edit func(*Config)) (map[string]time.Duration, *engine) {
	t.Helper()
	var (
		got = map[string]time.Duration{}
		e   *engine
	)
	synctest.Test(t, func(t *testing.T) {
		cfg := goldenCfg(filepath.Join(goldenDir, "http.pcap"))
		if edit != nil {
			edit(&cfg)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		log := slog.New(slog.DiscardHandler)
		syns := &synClock{got: got}
		e = newEngine(&cfg, syns, log)
		e.linksUp = func() int { return 1 }
		for _, w := range e.disp.workers {
			w.links = routeRecorder{new([]wire.Route)}
			e.track(w)
		}
		src, err := openOffline(&cfg, log)
		if err != nil {
			t.Fatal(err)
		}
		defer src.close()
		if err := e.replay(context.Background(), src); err != nil {
			t.Fatal(err)
		}
	})
	return got, e
}

// synClock is a sender that notes when the first SYN of each client
// endpoint went out.
type synClock struct {
	first time.Time
	got   map[string]time.Duration
}

func (s *synClock) Send(pkt []byte) error {
	var p ipmangle.Parsed
	p.Decode(pkt)
	if p.Flags != ipmangle.SYN {
		return nil
	}
	now := time.Now()
	if s.first.IsZero() {
		s.first = now
	}
	if _, ok := s.got[p.Src.String()]; !ok {
		s.got[p.Src.String()] = now.Sub(s.first)
	}
	return nil
}

func TestReplayTiming(t *testing.T) {
	// The golden capture: connection A at 0, B 383.584 ms later after a
	// 300 ms pause, C at 405.055 ms (IPv6).
	tests := []struct {
		name string
		edit func(*Config)
		want map[string]time.Duration
	}{
		{"capture timing", nil, map[string]time.Duration{
			"192.0.2.10:51206": 0, "192.0.2.10:51316": 383584 * time.Microsecond, "[2001:db8:1::10]:35648": 405055 * time.Microsecond}},
		{"-a 10", func(c *Config) { c.Accel = 10 }, map[string]time.Duration{
			"192.0.2.10:51206": 0, "192.0.2.10:51316": 38358 * time.Microsecond, "[2001:db8:1::10]:35648": 40505 * time.Microsecond}},
		{"-a 4 -I 100", func(c *Config) { c.Accel, c.IdleSkip = 4, 100*time.Millisecond }, map[string]time.Duration{
			"192.0.2.10:51206": 0, "192.0.2.10:51316": 26074 * time.Microsecond, "[2001:db8:1::10]:35648": 31441 * time.Microsecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, e := releases(t, tt.edit)
			for client, want := range tt.want {
				d, ok := got[client]
				if !ok {
					t.Errorf("no SYN of %s released (got %v)", client, got)
					continue
				}
				// The replay releases up to paceSlack early.
				if diff := d - want; diff > time.Microsecond || diff < -paceSlack-time.Microsecond {
					t.Errorf("%s released at %v, want %v", client, d, want)
				}
			}
			if n := e.replayed.relevant.Load(); n == 0 {
				t.Error("no relevant packet counted")
			}
		})
	}
}

func TestReplayPassesTiming(t *testing.T) {
	got, _ := releases(t, func(c *Config) { c.Repeat, c.Accel = 3, 100 })
	// Three passes: nine sessions, on distinct endpoints, each pass right
	// after the one before.
	if len(got) != 9 {
		t.Fatalf("%d sessions released, want 9: %v", len(got), got)
	}
	var last time.Duration
	for _, d := range got {
		last = max(last, d)
	}
	// One pass lasts 467.6 ms of capture, 4.7 ms at -a 100.
	if last < 9*time.Millisecond || last > 15*time.Millisecond {
		t.Errorf("the third pass's last session began at %v", last)
	}
}

func TestTail(t *testing.T) {
	tests := []struct {
		name   string
		queued int
		want   time.Duration
	}{
		{"nothing left", 0, tailSettle},
		{"stuck sessions", 5, tailQuiet},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newTestEngine(t, nil)
				e.disp.workers[0].stats = tcpstate.Stats{QueuedSegments: tt.queued}
				start := time.Now()
				e.tail(context.Background())
				if d := time.Since(start); d < tt.want || d > tt.want+2*tailPoll {
					t.Errorf("tail lasted %v, want %v", d, tt.want)
				}
			})
		})
	}
	t.Run("limited by -t", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newTestEngine(t, func(c *Config) { c.SessionTimeout = 3 * time.Second })
			w := e.disp.workers[0]
			w.stats = tcpstate.Stats{QueuedSegments: 1}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan struct{})
			go func() { // progress every 100 ms
				defer close(done)
				for ctx.Err() == nil {
					time.Sleep(100 * time.Millisecond)
					w.statsMu.Lock()
					w.stats.AckedBytes++
					w.statsMu.Unlock()
				}
			}()
			start := time.Now()
			e.tail(ctx)
			if d := time.Since(start); d < 3*time.Second || d > 3*time.Second+2*tailPoll {
				t.Errorf("tail lasted %v, want -t (3s)", d)
			}
			cancel()
			<-done
		})
	})
}

func TestOpenOfflineErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// pcap header, little-endian, microseconds, link type 105 (802.11).
	wifi := []byte{0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 105, 0, 0, 0}
	tests := []struct {
		name, path, filter, want string
	}{
		{"missing", filepath.Join(dir, "none.pcap"), "", "no such file"},
		{"not a capture", write("text.pcap", []byte("GET / HTTP/1.1\r\n")), "", "not a pcap or pcapng file"},
		{"unsupported link type", write("wifi.pcap", wifi), "", "link type 105 is not supported"},
		{"bad filter", filepath.Join(goldenDir, "http.pcap"), "tcp and", "option -F for ethernet frames"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := goldenCfg(tt.path)
			cfg.Filter = tt.filter
			_, err := openOffline(&cfg, slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err %v, want %q", err, tt.want)
			}
		})
	}
}

func TestOfflineFilter(t *testing.T) {
	// -F applies to the file's frames, compiled for their link type.
	for _, tt := range []struct {
		filter string
		want   int
	}{
		{"", 3},
		{"tcp and src host 192.0.2.10", 2},
		{"ip6", 1},
	} {
		out, err := goldenRun(t, filepath.Join(goldenDir, "http.pcap"), func(c *Config) { c.Filter = tt.filter }, true)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(out, " S "); n != tt.want {
			t.Errorf("-F %q: %d sessions, want %d", tt.filter, n, tt.want)
		}
	}
	// Other link types: the filter is compiled for each, with libpcap's
	// meaning. As with tcpdump, VLAN-tagged frames only match expressions
	// that say "vlan"; and for BSD loopback captures this host's libpcap
	// knows only its own AF_INET6 value, so "ip6" would not match them.
	for _, v := range linkVariants(t, filepath.Join(goldenDir, "http.pcap")) {
		filter := "ip and tcp dst port 80"
		if v.name == "vlan" {
			filter = "vlan and " + filter
		}
		out, err := goldenRun(t, v.path, func(c *Config) { c.Filter = filter }, true)
		if err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
		if n := strings.Count(out, " S "); n != 2 {
			t.Errorf("%s: %d sessions, want 2:\n%s", v.name, n, out)
		}
	}
}

// FuzzReplay replays arbitrary files through the offline reader, the
// rewriter (with -n 2) and the session engine: a damaged file never
// crashes tcpcopy, it ends the replay with an error.
func FuzzReplay(f *testing.F) {
	for _, name := range []string{"http.pcap", "http.pcapng"} {
		b, err := os.ReadFile(filepath.Join(goldenDir, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[:min(len(b), 4096)])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), "fuzz.pcap")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := goldenCfg(path)
		cfg.Copies = 2
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		log := slog.New(slog.DiscardHandler)
		d := &goldenDriver{now: virtualStart}
		d.e = newEngine(&cfg, nopSender{}, log)
		d.e.now = func() int64 { return d.now }
		d.b = d.e.disp.newBatch()
		for _, w := range d.e.disp.workers {
			w.links = routeRecorder{new([]wire.Route)}
			d.e.track(w)
		}
		src, err := openOffline(&cfg, log)
		if err != nil {
			return
		}
		defer src.close()
		rp := newReplayer(src, d.e.rw, &cfg)
		var (
			p   ipmangle.Parsed
			seg ipmangle.Segmenter
		)
		segb := make([]byte, cfg.MTU)
		for range 10000 {
			ip, due, _, ok, err := rp.next(&p, d.now)
			if !ok {
				if err != nil && !strings.Contains(err.Error(), path) {
					t.Errorf("error %v does not name the file", err)
				}
				break
			}
			d.now = max(d.now, due)
			d.e.handleParsed(ip, &p, &seg, segb, d.b, uint32(rp.pass), d.now, false)
			d.drain()
		}
	})
}

func TestReplayAllocs(t *testing.T) {
	// Reading, decoding and pacing a packet of the file allocates nothing.
	// (What the engine does with it is measured by TestHandleCapturedAllocs
	// and TestPipelineCopies, on sessions the target answers; here nobody
	// answers, and queued data needs segments.)
	cfg := goldenCfg(filepath.Join(goldenDir, "http.pcap"))
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	e := newEngine(&cfg, nopSender{}, log)
	src, err := openOffline(&cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer src.close()
	rp := newReplayer(src, e.rw, &cfg)
	var p ipmangle.Parsed
	now := virtualStart
	relevant := 0
	step := func() {
		_, due, rel, ok, err := rp.next(&p, now)
		if !ok || err != nil {
			t.Fatalf("the capture ended early: %v", err)
		}
		now = max(now, due)
		if rel {
			relevant++
		}
	}
	for range 10 { // the reader's buffer grows to the largest packet so far
		step()
	}
	if n := testing.AllocsPerRun(40, step); n != 0 {
		t.Errorf("replaying a packet allocates %.2f times", n)
	}
	if relevant == 0 {
		t.Error("no packet of the file matched -x")
	}
}
