package e2e

// HTTPS services. Nobody copies TLS connections: the packets are encrypted
// with keys the copier does not have. What can be copied is the plaintext
// hop behind the TLS terminator. These tests run the lab with nginx
// terminating TLS on online's port 443 (a certificate from a CA made for
// the run; the load client trusts that CA and nothing else) in front of the
// application, the online recorder on 127.0.0.1:8080; tcpcopy captures the
// hop on lo and copies it to the target's port, its copies coming from an
// address of -c, which the target routes to the assistant. Upstream
// keepalive on (nginx's pooled connections) and off (a connection per
// request), clients with keep-alive and with short connections, HTTP/1.1
// and HTTP/2 clients: every request must reach the target byte-identical
// (body, and head with X-Forwarded-For, as the application got them), in
// the order of nginx's connection, with tcpcopy's own fidelity at 100 %
// and every answer judged the same as the application's. About 25 s on 2
// cores.

import (
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/recorder"
)

// needTLSNginx skips the test when nginx is not installed or has no SSL
// module (scripts/deps.sh installs Debian's nginx, which has it).
func needTLSNginx(t *testing.T) {
	t.Helper()
	bin, err := labrun.FindNginx()
	if err != nil {
		t.Skipf("TLS terminator: %v", err)
	}
	ssl, _, err := labrun.NginxModules(bin)
	if err != nil {
		t.Skipf("TLS terminator: %v", err)
	}
	if !ssl {
		t.Skipf("TLS terminator: %v", labrun.ErrNoNginxSSL)
	}
}

func TestCopyHTTPS(t *testing.T) {
	needRoot(t)
	tests := []struct {
		name  string
		term  string // labrun.TLSTerminators
		mode  load.Mode
		http2 bool
	}{
		{"upstream-keepalive/keep-alive", "nginx", load.KeepAlive, false},
		{"upstream-keepalive/short", "nginx", load.Short, false},
		{"upstream-close/keep-alive", "nginx-close", load.KeepAlive, false},
		{"upstream-close/short", "nginx-close", load.Short, false},
		{"upstream-keepalive/http2-mixed", "nginx", load.Mixed, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			needTLSNginx(t)
			cfg := labrun.Config{
				GRO:           true,
				TLSTerminator: tt.term,
				ExtraClients:  3,
				AllSources:    true, // X-Forwarded-For names four client addresses
				LeakCheck:     true,
				Load: load.Options{
					Rate: 60, Duration: 3 * time.Second, MaxRequests: 180, Mode: tt.mode, RequestsPerConn: 10,
					BodySizes: bodies, Concurrency: 4, HTTP2: tt.http2,
				},
			}
			rep, online, target := run(t, cfg)
			defer func() {
				if t.Failed() && !testing.Verbose() {
					rep.WriteText(testWriter{t})
				}
			}()
			checkHTTPSCopied(t, rep, online, target)
			// nginx's connections to the application, as tcpcopy copied
			// them (a port can come back: sessions count connections).
			h, sessions := rep.Hop, int(rep.Sessions.Opened)
			switch {
			case tt.term == "nginx" && sessions > 16:
				t.Errorf("nginx with upstream keepalive 16: %d sessions, want at most 16 pooled connections", sessions)
			case tt.term == "nginx-close" && sessions != len(online):
				t.Errorf("nginx without upstream keepalive: %d sessions for %d requests, want one each", sessions, len(online))
			}
			if tt.http2 && (rep.Load.HTTP2 != rep.Load.Requests || h.Protos["HTTP/1.1"] != len(online)) {
				t.Errorf("%d of %d requests over HTTP/2, the application got %v: want all over h2, all HTTP/1.1 behind nginx",
					rep.Load.HTTP2, rep.Load.Requests, h.Protos)
			}
			t.Logf("%s %v: %d requests, %d over HTTP/2, on %d connections to the application, copied from %v; tcpcopy %.2f cpu-s, nginx %.2f cpu-s",
				tt.term, tt.mode, len(online), rep.Load.HTTP2, sessions, h.TargetFrom, rep.Tcpcopy.CPUSeconds, rep.TLS.Proc.CPUSeconds)
		})
	}
}

// checkHTTPSCopied asserts what every HTTPS run must show: every request
// the application got reached the target with the same body, the same head
// (X-Forwarded-For included: the client's address, as nginx added it) and
// in the same order on the same port; every copy from one address of the
// -c pool; tcpcopy's fidelity 100 %, every session reproduced, every answer
// the same; nothing of the target at the clients.
func checkHTTPSCopied(t *testing.T, rep *labrun.Report, online, target []recorder.Entry) {
	t.Helper()
	c := rep.Compare
	if c.Matched != c.Online || c.Missing != 0 || c.Mismatched != 0 || c.Online < 100 {
		t.Errorf("online %d, matched %d, missing %d, different body %d (fidelity %.2f%%)",
			c.Online, c.Matched, c.Missing, c.Mismatched, c.Fidelity)
	}
	if rep.Load.Failed > 0 || rep.Load.OK != c.Online {
		t.Errorf("load: %d ok, %d failed (%s); the application recorded %d", rep.Load.OK, rep.Load.Failed, rep.Load.FirstErr, c.Online)
	}
	if rep.Tcpcopy.Exit != "" || rep.Intercept.Exit != "" || rep.TLS == nil || rep.TLS.Proc == nil || rep.TLS.Proc.Exit != "" {
		t.Errorf("a program died: tcpcopy %q, intercept %q, TLS %+v", rep.Tcpcopy.Exit, rep.Intercept.Exit, rep.TLS)
	}
	checkReportedFidelity(t, rep, 1)
	if s := rep.Sessions; s.Reproduced != s.Opened || s.Opened == 0 {
		t.Errorf("sessions: %d opened, %d reproduced, %d partial, %d failed, %d open at stop",
			s.Opened, s.Reproduced, s.Partial, s.Failed, s.Open)
	}
	if r := rep.Responses; r == nil || r.Same != uint64(c.Online) || !r.AsTold {
		t.Errorf("responses compared on the hop: %+v, want %d the same", r, c.Online)
	}
	if rep.Leaks == nil || rep.Leaks.Packets != 0 {
		t.Errorf("leaks: %+v", rep.Leaks)
	}

	// Client addresses on the hop: nginx's at the application, one of
	// the pool's at the target, the ports kept.
	h := rep.Hop
	if !slices.Equal(h.OnlineFrom, []string{"127.0.0.1"}) {
		t.Errorf("the application saw %v, want nginx's 127.0.0.1 only", h.OnlineFrom)
	}
	if len(h.TargetFrom) != 1 || !slices.Contains(labrun.TLSClientPool, netip.MustParseAddr(h.TargetFrom[0])) {
		t.Errorf("the target saw %v, want one address of %v (-c is sticky per client address)", h.TargetFrom, labrun.TLSClientPool)
	}
	if h.Paired != c.Online || h.SamePorts != h.Paired || h.HeadSame != h.Paired ||
		h.Forwarded != h.Paired || h.ForwardedSame != h.Paired || h.TargetConns != h.OnlineConns {
		t.Errorf("hop %+v: want every request with the same port, head and X-Forwarded-For at both", *h)
	}

	// X-Forwarded-For is the client's address, as nginx added it.
	results, err := load.ReadResults(filepath.Join(rep.Dir, "load.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	client := map[string]string{}
	for _, r := range results {
		if ap, err := netip.ParseAddrPort(r.Local); err == nil {
			client[r.ID] = ap.Addr().String()
		}
	}
	addrs := map[string]bool{}
	for _, e := range target {
		if want := client[e.ID]; e.ForwardedFor != want {
			t.Errorf("%s: X-Forwarded-For %q at the target, the client was %s", e.ID, e.ForwardedFor, want)
		}
		addrs[e.ForwardedFor] = true
	}
	if len(addrs) != 4 {
		t.Errorf("X-Forwarded-For named %d client addresses, want 4", len(addrs))
	}

	// Per connection to the application, the target saw the requests in
	// the same order, on the same port.
	byPort := func(es []recorder.Entry) map[uint16][]string {
		m := map[uint16][]string{}
		for _, e := range es {
			ap, err := netip.ParseAddrPort(e.Remote)
			if err != nil {
				t.Fatalf("%s: peer %q: %v", e.ID, e.Remote, err)
			}
			m[ap.Port()] = append(m[ap.Port()], e.ID)
		}
		return m
	}
	on, tg := byPort(online), byPort(target)
	for port, ids := range on {
		if got := tg[port]; !slices.Equal(dedup(got), dedup(ids)) {
			t.Errorf("port %d: target saw %v, online %v", port, got, ids)
		}
	}
}
