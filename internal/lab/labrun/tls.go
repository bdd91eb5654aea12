package labrun

import (
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/recorder"
)

// TLSTerminator is a TLS terminator on the online host: the set-up of a
// service whose clients speak HTTPS. Neither tcpcopy nor any other copier
// can copy the encrypted connections (it does not have the keys), so it
// copies the plaintext hop behind the terminator instead: nginx
// terminates TLS on the client-facing addresses (TLSPort) and proxies to
// the application, the online recorder on the online namespace's
// loopback (AppPort), over HTTP/1.1; tcpcopy captures that hop on lo and
// copies it to the target's port. Those connections come from nginx's
// address, 127.0.0.1, which the target cannot answer: tcpcopy's -c gives
// the copies an address of the lab's client range (TLSClientPool), which
// the target routes to the assistant.
//
// A row of TLSTerminators is one such set-up; the run's report names it
// (Report.TLS) and says what the application and the target saw of the
// hop (Report.Hop).
type TLSTerminator struct {
	Name string // short, lowercase: the --tls-terminator value
	Doc  string // what it reproduces and why it matters to a copier
	// UpstreamKeepalive is nginx's keepalive in the upstream block: the
	// idle connections to the application it keeps for reuse. 0: a new
	// connection to the application for every request (nginx then sends
	// "Connection: close" and the application closes after its answer).
	UpstreamKeepalive int
}

// Ports of the TLS set-up.
const (
	TLSPort = 443  // nginx's TLS port on online's client-facing addresses
	AppPort = 8080 // the application (online recorder) behind it, on online's loopback
)

// TLSClientPool is the -c pool of the default tcpcopy command line with
// a TLS terminator: addresses of the lab's client range (the target
// routes it to the assistant) above the load client's own (192.0.2.10 and
// at most TLSMaxExtraClients more). tcpcopy maps a client address to one
// pool address, stickily: every copy of the hop comes from 127.0.0.1, so
// every copy comes from one of these.
var TLSClientPool = []netip.Addr{
	netip.MustParseAddr("192.0.2.201"), netip.MustParseAddr("192.0.2.202"),
	netip.MustParseAddr("192.0.2.203"), netip.MustParseAddr("192.0.2.204"),
}

// TLSMaxExtraClients is the most Config.ExtraClients with a TLS
// terminator: the load's addresses stay below TLSClientPool.
const TLSMaxExtraClients = 189

// DefaultTLSTcpcopyArgs is tcpcopy's command line with a TLS terminator,
// before placeholder expansion: the application's port on loopback,
// captured on lo, copied to the target's port, the copies' client
// addresses from TLSClientPool.
var DefaultTLSTcpcopyArgs = []string{
	"-x", "127.0.0.1:" + strconv.Itoa(AppPort) + "-{target.online_v4}:" + strconv.Itoa(TargetPort),
	"-s", "{assistant.online_v4}", "-i", "lo", "-c", poolArg(TLSClientPool),
}

func poolArg(pool []netip.Addr) string {
	s := make([]string, len(pool))
	for i, a := range pool {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

// TLSTerminators are the TLS set-ups the lab reproduces.
var TLSTerminators = []TLSTerminator{
	{Name: "nginx", UpstreamKeepalive: 16,
		Doc: "nginx terminates TLS (HTTP/1.1 and h2 from the clients) and keeps up to 16 idle HTTP/1.1 connections " +
			"to the application (upstream keepalive): the copies follow nginx's pooled connections, which carry " +
			"the requests of many clients, not the clients' own connections"},
	{Name: "nginx-close",
		Doc: "nginx terminates TLS (HTTP/1.1 and h2 from the clients) and opens a new HTTP/1.1 connection to the " +
			"application for every request (no upstream keepalive): one short connection per request to copy, " +
			"whatever the clients do"},
}

// TLSTerminatorByName returns the set-up of TLSTerminators named name.
func TLSTerminatorByName(name string) (TLSTerminator, error) {
	for _, s := range TLSTerminators {
		if s.Name == name {
			return s, nil
		}
	}
	var names []string
	for _, s := range TLSTerminators {
		names = append(names, s.Name)
	}
	return TLSTerminator{}, fmt.Errorf("unknown TLS terminator %q (known: %s)", name, strings.Join(names, ", "))
}

// Upstream describes in words how nginx talks to the application.
func (s TLSTerminator) Upstream() string {
	if s.UpstreamKeepalive > 0 {
		return fmt.Sprintf("HTTP/1.1 with upstream keepalive %d (pooled connections)", s.UpstreamKeepalive)
	}
	return "HTTP/1.1, a new connection per request (no upstream keepalive)"
}

// ErrNoNginxSSL is returned (wrapped in ErrSetup) when the nginx binary
// has no SSL module.
var ErrNoNginxSSL = errors.New("nginx has no SSL module (nginx -V lacks --with-http_ssl_module): install Debian's nginx (scripts/deps.sh does)")

// NginxModules runs "bin -V" and reports whether nginx was built with the
// HTTP SSL and HTTP/2 modules.
func NginxModules(bin string) (ssl, http2 bool, err error) {
	out, err := exec.Command(bin, "-V").CombinedOutput()
	if err != nil {
		return false, false, fmt.Errorf("%s -V: %w: %s", bin, err, strings.TrimSpace(string(out)))
	}
	fields := strings.Fields(string(out))
	return slices.Contains(fields, "--with-http_ssl_module"), slices.Contains(fields, "--with-http_v2_module"), nil
}

// TLSNginxConfig is what Render writes: nginx as the TLS terminator of the
// online host, everything it writes under Dir.
type TLSNginxConfig struct {
	Dir      string           // pid file, logs and temporary files; absolute
	Listen   []netip.AddrPort // TLS, on these addresses
	Cert     string           // PEM certificate file; absolute
	Key      string           // its key; absolute
	Upstream netip.AddrPort   // the application, plain HTTP
	// UpstreamKeepalive is TLSTerminator.UpstreamKeepalive.
	UpstreamKeepalive int
	// HTTP2 offers h2 to the clients (nginx built with the HTTP/2 module).
	HTTP2 bool
}

// Validate reports a configuration nginx would refuse or the lab cannot
// use.
func (c TLSNginxConfig) Validate() error {
	for _, p := range []string{c.Dir, c.Cert, c.Key} {
		switch {
		case !filepath.IsAbs(p):
			return fmt.Errorf("nginx: path %q is not absolute", p)
		case strings.ContainsFunc(p, func(r rune) bool { return r == '"' || r == '\\' || r == '$' || r < ' ' }):
			return fmt.Errorf("nginx: path %q has a character nginx would read as syntax (\", \\, $, a control)", p)
		}
	}
	switch {
	case len(c.Listen) == 0:
		return errors.New("nginx: no address to listen on")
	case !c.Upstream.IsValid() || c.Upstream.Port() == 0:
		return errors.New("nginx: no upstream")
	case c.UpstreamKeepalive < 0:
		return fmt.Errorf("nginx: negative upstream keepalive %d", c.UpstreamKeepalive)
	}
	for _, l := range c.Listen {
		if !l.IsValid() || l.Port() == 0 {
			return fmt.Errorf("nginx: cannot listen on %v", l)
		}
	}
	return nil
}

// Render returns the nginx.conf for c. As the target's nginx (NginxConfig)
// it runs in the foreground as a single process with its files under Dir.
// It terminates TLS 1.2 and 1.3 with c's certificate and proxies every
// request to the application over HTTP/1.1 (proxy_http_version 1.1),
// request bodies buffered (nginx's default) up to 16 MiB, with the
// client's address appended to X-Forwarded-For ($proxy_add_x_forwarded_for)
// and X-Forwarded-Proto. With UpstreamKeepalive it keeps that many idle
// connections to the application and clears the Connection header, as
// upstream keepalive needs; without, it sends "Connection: close" and
// the application closes after each answer. The access log has one line
// per request with its protocol from the client (HTTP/1.1 or HTTP/2.0),
// the TLS version and the upstream it went to.
func (c TLSNginxConfig) Render() (string, error) {
	if err := c.Validate(); err != nil {
		return "", err
	}
	q := func(name string) string { return nginxQuote(filepath.Join(c.Dir, name)) }
	var b strings.Builder
	fmt.Fprintf(&b, `# nginx as the tcpcopy lab's TLS terminator on online (internal/lab/labrun). Generated.
daemon off;
master_process off;
pid %s;
error_log %s notice;
worker_rlimit_nofile 16384;

events {
	worker_connections 8192;
}

http {
	log_format lab '$remote_addr:$remote_port $connection $connection_requests $server_protocol $ssl_protocol $request_length $status $upstream_addr $http_x_lab_id';
	access_log %s lab;
	client_body_temp_path %s;
	proxy_temp_path %s;
	fastcgi_temp_path %s;
	uwsgi_temp_path %s;
	scgi_temp_path %s;
	client_max_body_size 16m;
	client_body_buffer_size 1m;

	upstream app {
		server %s;
`, q("nginx.pid"), q("error.log"), q("access.log"), q("client_body"), q("proxy"), q("fastcgi"), q("uwsgi"), q("scgi"), c.Upstream)
	conn := "close"
	if c.UpstreamKeepalive > 0 {
		fmt.Fprintf(&b, "\t\tkeepalive %d;\n", c.UpstreamKeepalive)
		conn = `""`
	}
	b.WriteString("\t}\n\n\tserver {\n")
	h2 := ""
	if c.HTTP2 {
		h2 = " http2"
	}
	for _, l := range c.Listen {
		fmt.Fprintf(&b, "\t\tlisten %s ssl%s;\n", l, h2)
	}
	fmt.Fprintf(&b, `		ssl_certificate %s;
		ssl_certificate_key %s;
		ssl_protocols TLSv1.2 TLSv1.3;

		location / {
			proxy_pass http://app;
			proxy_http_version 1.1;
			proxy_set_header Connection %s;
			proxy_set_header Host $host;
			proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
			proxy_set_header X-Forwarded-Proto $scheme;
		}
	}
}
`, nginxQuote(c.Cert), nginxQuote(c.Key), conn)
	return b.String(), nil
}

// writeTLSNginx writes c's configuration file and makes its directories;
// it returns the arguments nginx runs with.
func writeTLSNginx(c TLSNginxConfig) ([]string, error) {
	text, err := c.Render()
	if err != nil {
		return nil, err
	}
	return writeNginxFiles(c.Dir, text)
}

// TLSReport names the TLS set-up of a run (Config.TLSTerminator).
type TLSReport struct {
	Name     string   `json:"name"`     // a TLSTerminators name
	Software string   `json:"software"` // "nginx 1.22.1"
	Listen   []string `json:"listen"`   // where it terminates TLS
	Upstream string   `json:"upstream"` // the application, ADDR:PORT
	How      string   `json:"how"`      // TLSTerminator.Upstream
	HTTP2    bool     `json:"http2"`    // h2 offered to the clients
	Doc      string   `json:"doc"`
	// Proc is nginx's CPU time and memory.
	Proc *ProcReport `json:"proc,omitempty"`
}

// text is the report's "tls" line, after the label.
func (t *TLSReport) text() string {
	protos := "HTTP/1.1"
	if t.HTTP2 {
		protos = "HTTP/1.1 and h2"
	}
	return fmt.Sprintf("%s: %s terminates TLS on %s (%s) and proxies to the application at %s over %s; tcpcopy copies that plaintext hop",
		t.Name, t.Software, strings.Join(t.Listen, " and "), protos, t.Upstream, t.How)
}

// Hop is what the two recorders saw of the copied hop behind a TLS
// terminator: the application's peers are the proxy's connections, the
// target's the copies'. Requests are paired by id.
type Hop struct {
	// OnlineFrom and TargetFrom are the distinct peer addresses each
	// recorder saw, sorted; OnlineConns and TargetConns the distinct peer
	// address:port pairs.
	OnlineFrom  []string `json:"online_from"`
	TargetFrom  []string `json:"target_from"`
	OnlineConns int      `json:"online_conns"`
	TargetConns int      `json:"target_conns"`
	// SamePorts counts the paired requests whose peer port is the same at
	// both (tcpcopy keeps the client's port without -f or -n).
	SamePorts int `json:"same_ports"`
	// Paired are the requests found at both; Forwarded those with an
	// X-Forwarded-For, ForwardedSame those whose X-Forwarded-For is the
	// same at both, HeadSame those whose head digest is.
	Paired        int `json:"paired"`
	Forwarded     int `json:"forwarded"`
	ForwardedSame int `json:"forwarded_same"`
	HeadSame      int `json:"head_same"`
	// HTTP2 counts the load's requests answered over HTTP/2; the
	// application saw them as Protos says.
	HTTP2  int            `json:"http2"`
	Protos map[string]int `json:"protos"` // the application's request versions
}

// HopOf compares what the online and the target recorders saw of the
// requests behind a TLS terminator; http2 is the load's count of
// requests answered over HTTP/2.
func HopOf(online, target []recorder.Entry, http2 int) *Hop {
	h := &Hop{HTTP2: http2, Protos: map[string]int{}}
	addrs := func(es []recorder.Entry) ([]string, int) {
		from, conns := map[string]bool{}, map[string]bool{}
		for _, e := range es {
			conns[e.Remote] = true
			if ap, err := netip.ParseAddrPort(e.Remote); err == nil {
				from[ap.Addr().String()] = true
			}
		}
		return slices.Sorted(func(yield func(string) bool) {
			for a := range from {
				if !yield(a) {
					return
				}
			}
		}), len(conns)
	}
	h.OnlineFrom, h.OnlineConns = addrs(online)
	h.TargetFrom, h.TargetConns = addrs(target)
	byID := make(map[string]recorder.Entry, len(target))
	for _, e := range target {
		if _, ok := byID[e.ID]; !ok && e.ID != "" {
			byID[e.ID] = e
		}
	}
	seen := map[string]bool{}
	for _, e := range online {
		h.Protos[e.Proto]++
		t, ok := byID[e.ID]
		if !ok || seen[e.ID] {
			continue
		}
		seen[e.ID] = true
		h.Paired++
		if e.ForwardedFor != "" {
			h.Forwarded++
		}
		if e.ForwardedFor == t.ForwardedFor {
			h.ForwardedSame++
		}
		if e.HeadSHA256 != "" && e.HeadSHA256 == t.HeadSHA256 {
			h.HeadSame++
		}
		on, err1 := netip.ParseAddrPort(e.Remote)
		tg, err2 := netip.ParseAddrPort(t.Remote)
		if err1 == nil && err2 == nil && on.Port() == tg.Port() {
			h.SamePorts++
		}
	}
	return h
}

// text is the report's "hop" lines, after the label.
func (h *Hop) text() string {
	var protos []string
	for _, p := range slices.Sorted(func(yield func(string) bool) {
		for p := range h.Protos {
			if !yield(p) {
				return
			}
		}
	}) {
		protos = append(protos, fmt.Sprintf("%s %d", p, h.Protos[p]))
	}
	return fmt.Sprintf("the application saw %s from %d ports, the target %s from %d ports, the same port on %d of %d requests\n"+
		"  headers  X-Forwarded-For as at the application on %d of %d requests (%d had one), request heads identical on %d; "+
		"the application got %s (%d of the load's requests over HTTP/2)",
		orNone(h.OnlineFrom), h.OnlineConns, orNone(h.TargetFrom), h.TargetConns, h.SamePorts, h.Paired,
		h.ForwardedSame, h.Paired, h.Forwarded, h.HeadSame, strings.Join(protos, ", "), h.HTTP2)
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "nothing"
	}
	return strings.Join(s, ", ")
}
