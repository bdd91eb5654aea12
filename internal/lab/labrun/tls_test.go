package labrun

import (
	"errors"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labtls"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/netlab"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/recorder"
)

// TestTLSTerminators checks the table and the default command line: the
// pool lies in the client range the target routes to the assistant, above
// every address the load can use, and tcpcopy captures the hop on lo.
func TestTLSTerminators(t *testing.T) {
	name := regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
	seen := map[string]bool{}
	keepalive := map[bool]bool{}
	for _, s := range TLSTerminators {
		if !name.MatchString(s.Name) || seen[s.Name] || len(s.Doc) < 40 {
			t.Errorf("bad name or doc: %+v", s)
		}
		seen[s.Name] = true
		keepalive[s.UpstreamKeepalive > 0] = true
		if got, err := TLSTerminatorByName(s.Name); err != nil || got.Name != s.Name {
			t.Errorf("TLSTerminatorByName(%q) = %+v, %v", s.Name, got, err)
		}
	}
	if !keepalive[true] || !keepalive[false] {
		t.Error("want a set-up with upstream keepalive and one without")
	}
	if _, err := TLSTerminatorByName("haproxy"); err == nil || !strings.Contains(err.Error(), "known: nginx, nginx-close") {
		t.Errorf("unknown terminator: %v", err)
	}
	last := netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + TLSMaxExtraClients)})
	for _, a := range TLSClientPool {
		if !netlab.ClientPrefix4.Contains(a) || !last.Less(a) {
			t.Errorf("pool address %s: not in %s above %s", a, netlab.ClientPrefix4, last)
		}
	}
	args := strings.Join(DefaultTLSTcpcopyArgs, " ")
	for _, want := range []string{"-x 127.0.0.1:8080-{target.online_v4}:8080", "-i lo", "-c 192.0.2.201,192.0.2.202,192.0.2.203,192.0.2.204"} {
		if !strings.Contains(args, want) {
			t.Errorf("tcpcopy args %q lack %q", args, want)
		}
	}
}

func TestTLSNginxConfig(t *testing.T) {
	dir := t.TempDir()
	files, err := labtls.Write(dir, []string{"192.0.2.1", "2001:db8:1::1"})
	if err != nil {
		t.Fatal(err)
	}
	base := TLSNginxConfig{
		Dir: filepath.Join(dir, "nginx"), Cert: files.Cert, Key: files.Key, Upstream: appAddr,
		Listen:            []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:443"), netip.MustParseAddrPort("[2001:db8:1::1]:443")},
		UpstreamKeepalive: 16, HTTP2: true,
	}
	text, err := base.Render()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"daemon off;\nmaster_process off;\n",
		`pid "` + dir + `/nginx/nginx.pid";`,
		`access_log "` + dir + `/nginx/access.log" lab;`,
		"listen 192.0.2.1:443 ssl http2;\n\t\tlisten [2001:db8:1::1]:443 ssl http2;",
		`ssl_certificate "` + files.Cert + `";`,
		`ssl_certificate_key "` + files.Key + `";`,
		"ssl_protocols TLSv1.2 TLSv1.3;",
		"server 127.0.0.1:8080;\n\t\tkeepalive 16;",
		"proxy_http_version 1.1;",
		`proxy_set_header Connection "";`,
		"proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
		"client_max_body_size 16m;",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the configuration lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "/etc/nginx") || strings.Contains(text, "/var/") || strings.Count(text, "{") != strings.Count(text, "}") {
		t.Errorf("system paths or unbalanced braces:\n%s", text)
	}
	closing := base
	closing.UpstreamKeepalive, closing.HTTP2 = 0, false
	text, _ = closing.Render()
	if strings.Contains(text, "keepalive") || strings.Contains(text, "http2") || !strings.Contains(text, "proxy_set_header Connection close;") {
		t.Errorf("without upstream keepalive nor h2:\n%s", text)
	}
	for _, tt := range []struct {
		name string
		edit func(*TLSNginxConfig)
		want string
	}{
		{"relative dir", func(c *TLSNginxConfig) { c.Dir = "run/nginx" }, "not absolute"},
		{"dollar in key", func(c *TLSNginxConfig) { c.Key = "/tmp/$k" }, "syntax"},
		{"no listen", func(c *TLSNginxConfig) { c.Listen = nil }, "no address"},
		{"port 0", func(c *TLSNginxConfig) { c.Listen = []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:0")} }, "cannot listen"},
		{"no upstream", func(c *TLSNginxConfig) { c.Upstream = netip.AddrPort{} }, "no upstream"},
		{"negative keepalive", func(c *TLSNginxConfig) { c.UpstreamKeepalive = -1 }, "negative"},
	} {
		c := base
		tt.edit(&c)
		if _, err := c.Render(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error with %q", tt.name, err, tt.want)
		}
	}

	// nginx's own check, when nginx is here: loopback addresses, which
	// -t does not bind anyway.
	bin, err := FindNginx()
	if err != nil {
		t.Skip(err)
	}
	ssl, h2, err := NginxModules(bin)
	if err != nil || !ssl {
		t.Skipf("nginx without SSL: %v", err)
	}
	c := base
	c.Listen, c.HTTP2 = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:443")}, h2
	args, err := writeTLSNginx(c)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(args, filepath.Join(c.Dir, "nginx.conf")) {
		t.Errorf("args %q", args)
	}
	if out, err := exec.Command(bin, append([]string{"-t", "-q"}, args...)...).CombinedOutput(); err != nil {
		t.Errorf("nginx -t: %v\n%s", err, out)
	}
}

func TestHopOf(t *testing.T) {
	e := func(id, remote, xff, head string) recorder.Entry {
		return recorder.Entry{ID: id, Remote: remote, ForwardedFor: xff, HeadSHA256: head, Proto: "HTTP/1.1"}
	}
	online := []recorder.Entry{
		e("a", "127.0.0.1:40000", "192.0.2.10", "h1"),
		e("b", "127.0.0.1:40000", "192.0.2.11", "h2"),
		e("c", "127.0.0.1:40002", "192.0.2.10", "h3"),
		e("d", "127.0.0.1:40004", "", "h4"), // never copied
	}
	target := []recorder.Entry{
		e("a", "192.0.2.203:40000", "192.0.2.10", "h1"),
		e("b", "192.0.2.203:40000", "192.0.2.11", "h2"),
		e("b", "192.0.2.203:40000", "192.0.2.11", "h2"), // a duplicate counts once
		e("c", "192.0.2.203:41002", "192.0.2.99", "hx"),
	}
	h := HopOf(online, target, 3)
	want := Hop{OnlineFrom: []string{"127.0.0.1"}, TargetFrom: []string{"192.0.2.203"}, OnlineConns: 3, TargetConns: 2,
		SamePorts: 2, Paired: 3, Forwarded: 3, ForwardedSame: 2, HeadSame: 2, HTTP2: 3, Protos: map[string]int{"HTTP/1.1": 4}}
	if !slices.Equal(h.OnlineFrom, want.OnlineFrom) || !slices.Equal(h.TargetFrom, want.TargetFrom) ||
		h.OnlineConns != want.OnlineConns || h.TargetConns != want.TargetConns || h.SamePorts != want.SamePorts ||
		h.Paired != want.Paired || h.Forwarded != want.Forwarded || h.ForwardedSame != want.ForwardedSame ||
		h.HeadSame != want.HeadSame || h.HTTP2 != want.HTTP2 || h.Protos["HTTP/1.1"] != 4 {
		t.Errorf("got  %+v\nwant %+v", *h, want)
	}
	if txt := h.text(); !strings.Contains(txt, "the application saw 127.0.0.1 from 3 ports") || !strings.Contains(txt, "X-Forwarded-For as at the application on 2 of 3 requests") {
		t.Errorf("text %q", txt)
	}
}

// TestTLSRefusals: what a TLS run cannot have is refused before anything
// is built.
func TestTLSRefusals(t *testing.T) {
	for _, tt := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"unknown", func(c *Config) { c.TLSTerminator = "haproxy" }, "unknown TLS terminator"},
		{"online ports", func(c *Config) { c.OnlinePorts = []uint16{80, 81} }, "OnlinePorts"},
		{"pcap", func(c *Config) { c.Pcap = "/tmp/x.pcap" }, "Pcap"},
		{"pipeline", func(c *Config) { c.Load.Pipeline = 3 }, "pipelines"},
		{"extra clients", func(c *Config) { c.ExtraClients = TLSMaxExtraClients + 1 }, "at most 189 extra clients"},
		{"no ssl", func(c *Config) { c.NginxBin = "/bin/true" }, "no SSL module"},
	} {
		c := Config{Self: "/bin/true", TLSTerminator: "nginx"}
		tt.edit(&c)
		err := c.setDefaults()
		if !errors.Is(err, ErrSetup) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want ErrSetup with %q", tt.name, err, tt.want)
		}
	}
	plain := Config{Self: "/bin/true", Load: load.Options{HTTP2: true}}
	if err := plain.setDefaults(); !errors.Is(err, ErrSetup) || !strings.Contains(err.Error(), "give a TLS terminator") {
		t.Errorf("HTTP/2 without a terminator: %v", err)
	}
	c := Config{Self: "/bin/true", TLSTerminator: "nginx-close", NginxBin: "/bin/true"}
	if err := c.setDefaults(); !errors.Is(err, ErrNoNginxSSL) {
		t.Errorf("nginx without SSL: %v", err)
	}
}
