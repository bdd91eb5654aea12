package labrun

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/recorder"
)

// TargetServer is a named kind of target server. The lab's recorder never
// closes a keep-alive connection and accepts at once; real servers close
// connections on purpose (after so many requests, after an idle time, with
// "Connection: close", after every answer) and are sometimes too busy to
// accept. The online server keeps its connections all the while, so the
// client goes on sending on connections the target has closed, and the
// copier has to follow (docs/troubleshooting.md, "The target closes
// keep-alive connections"). Each row of TargetServers reproduces one of
// these servers; with every one, every request should be copied.
//
// The target's recorder always writes the log the run is judged by
// ("target.jsonl"); a row with Nginx puts nginx in front of it.
type TargetServer struct {
	Name string // short, lowercase: the --target-server value
	Doc  string // what it reproduces and why it matters to a copier

	// Nginx, when set, runs nginx (Debian's nginx) on the target
	// ports as a reverse proxy to the target's recorder, which then
	// listens on loopback (NginxUpstreamPort) and records the client
	// address nginx passes on (recorder.Options.PeerHeaders).
	Nginx *NginxLimits
	// CloseEvery makes the target's recorder answer every CloseEvery-th
	// request with "Connection: close" and close the connection
	// (recorder.Options.CloseEvery); 1 is every answer.
	CloseEvery int64
	// Listen makes the target's recorder slow to accept
	// (recorder.ListenOptions).
	Listen recorder.ListenOptions

	// PerConn and Think are what a keep-alive load needs to meet the
	// server's limit: at least PerConn requests per connection (more than
	// keepalive_requests), and pauses of Think between them (longer than
	// the keep-alive timeout). Tests and the bench set them
	// (ExerciseLoad); 0 needs nothing special.
	PerConn int
	Think   time.Duration
}

// NginxLimits are the nginx settings that close client connections. Zero
// values leave nginx's defaults.
type NginxLimits struct {
	// KeepaliveRequests is keepalive_requests: nginx closes a keep-alive
	// connection after answering this many requests on it (1000 by default
	// since nginx 1.19.10, 100 before).
	KeepaliveRequests int
	// KeepaliveTimeout is keepalive_timeout: nginx closes a keep-alive
	// connection idle this long (75 s by default). Whole seconds, or
	// milliseconds.
	KeepaliveTimeout time.Duration
}

// nginx's defaults (nginx 1.22, http core module).
const (
	nginxDefaultKeepaliveRequests = 1000
	nginxDefaultKeepaliveTimeout  = 75 * time.Second
)

// NginxUpstreamPort is where the target's recorder listens, on the target
// namespace's loopback, when nginx is in front of it.
const NginxUpstreamPort = 18080

// TargetServers are the target servers the lab reproduces; the first,
// recorder, is the default.
var TargetServers = []TargetServer{
	{Name: "recorder",
		Doc: "the lab's recorder (Go net/http): never closes a keep-alive connection before the client does " +
			"(idle timeout 60 s), accepts at once; the easy case"},
	{Name: "nginx-kr100", Nginx: &NginxLimits{KeepaliveRequests: 100}, PerConn: 250,
		Doc: "nginx with keepalive_requests 100 (the default before nginx 1.19.10) in front of the recorder: " +
			"every 100th answer on a connection says Connection: close and nginx closes it, while the client " +
			"goes on sending on its connection to the online server"},
	{Name: "nginx-kt1s", Nginx: &NginxLimits{KeepaliveTimeout: time.Second}, Think: 1500 * time.Millisecond,
		Doc: "nginx with keepalive_timeout 1s in front of the recorder, clients pausing 1.5 s between requests: " +
			"nginx closes every idle connection, quietly, between two requests the online server takes on one connection"},
	{Name: "close-some", CloseEvery: 5,
		Doc: "the recorder answering every 5th request with Connection: close and closing the connection, " +
			"as application servers do that recycle connections or shed load"},
	{Name: "close-each", CloseEvery: 1,
		Doc: "the recorder closing the connection after every answer (HTTP/1.0 style, Connection: close): " +
			"every request after a connection's first goes on a new connection to the target"},
	{Name: "slow-accept",
		Listen: recorder.ListenOptions{Backlog: 1, AcceptDelay: 50 * time.Millisecond, SlowFor: time.Second, SlowEvery: 3 * time.Second},
		Doc: "a busy server: listen backlog 1, and for 2 s of every 4 s (from its first connection) at most one " +
			"accept per 100 ms; the kernel drops SYNs while the accept queue is full and answers with SYN cookies, " +
			"so handshakes and first requests need retransmissions"},
}

// TargetServerByName returns the server of TargetServers named name; ""
// is the default, recorder.
func TargetServerByName(name string) (TargetServer, error) {
	if name == "" {
		return TargetServers[0], nil
	}
	for _, s := range TargetServers {
		if s.Name == name {
			return s, nil
		}
	}
	return TargetServer{}, fmt.Errorf("unknown target server %q (known: %s)", name, TargetServerNames())
}

// TargetServerNames lists the names of TargetServers, comma-separated.
func TargetServerNames() string {
	var names []string
	for _, s := range TargetServers {
		names = append(names, s.Name)
	}
	return strings.Join(names, ", ")
}

// ExerciseLoad sets what o needs to meet the server's limits with
// keep-alive connections: at least PerConn requests per connection, and
// the Think pause (not with short connections, which have no pause). The
// rest of o is left as it is.
func (s TargetServer) ExerciseLoad(o *load.Options) {
	if s.PerConn > o.RequestsPerConn {
		o.RequestsPerConn = s.PerConn
	}
	if s.Think > o.Think && o.Mode != load.Short {
		o.Think = s.Think
	}
}

// Limits describes in words what makes the server close or refuse
// connections.
func (s TargetServer) Limits() string {
	var parts []string
	if n := s.Nginx; n != nil {
		kr, kt := n.KeepaliveRequests, n.KeepaliveTimeout
		krNote, ktNote := "", ""
		if kr == 0 {
			kr, krNote = nginxDefaultKeepaliveRequests, " (default)"
		}
		if kt == 0 {
			kt, ktNote = nginxDefaultKeepaliveTimeout, " (default)"
		}
		parts = append(parts, fmt.Sprintf("keepalive_requests %d%s", kr, krNote), "keepalive_timeout "+nginxDuration(kt)+ktNote)
	}
	switch {
	case s.CloseEvery == 1:
		parts = append(parts, "closes after every answer (Connection: close)")
	case s.CloseEvery > 1:
		parts = append(parts, fmt.Sprintf("answers every %s request with Connection: close and closes", ordinal(s.CloseEvery)))
	}
	if l := s.Listen; l.Backlog > 0 || l.AcceptDelay > 0 {
		if l.Backlog > 0 {
			parts = append(parts, fmt.Sprintf("listen backlog %d", l.Backlog))
		}
		if l.AcceptDelay > 0 {
			when := "always"
			switch {
			case l.SlowEvery > 0:
				when = fmt.Sprintf("for %v of every %v", l.SlowFor, l.SlowEvery)
			case l.SlowFor > 0:
				when = fmt.Sprintf("for the first %v", l.SlowFor)
			}
			parts = append(parts, fmt.Sprintf("one accept per %v %s", l.AcceptDelay, when))
		}
	}
	if len(parts) == 0 {
		return "keeps keep-alive connections (idle timeout 60s), no request limit, accepts at once"
	}
	return strings.Join(parts, ", ")
}

func ordinal(n int64) string {
	suffix := "th"
	switch {
	case n%100 >= 11 && n%100 <= 13:
	case n%10 == 1:
		suffix = "st"
	case n%10 == 2:
		suffix = "nd"
	case n%10 == 3:
		suffix = "rd"
	}
	return strconv.FormatInt(n, 10) + suffix
}

// recorderArgs are the target recorder's serve flags for the server's
// behaviour.
func (s TargetServer) recorderArgs() []string {
	var args []string
	if s.Nginx != nil {
		args = append(args, "--peer-headers")
	}
	if s.CloseEvery > 0 {
		args = append(args, "--close-every", strconv.FormatInt(s.CloseEvery, 10))
	}
	l := s.Listen
	if l.Backlog > 0 {
		args = append(args, "--backlog", strconv.Itoa(l.Backlog))
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"accept-delay", l.AcceptDelay}, {"slow-for", l.SlowFor}, {"slow-every", l.SlowEvery}} {
		if d.v > 0 {
			args = append(args, "--"+d.flag, d.v.String())
		}
	}
	return args
}

// ErrNoNginx is returned (wrapped in ErrSetup) when a target server needs
// nginx and none is installed.
var ErrNoNginx = errors.New("nginx is not installed: install Debian's nginx (scripts/deps.sh does)")

// FindNginx returns the path of the nginx binary: on PATH, or Debian's
// /usr/sbin/nginx (not on every user's PATH).
func FindNginx() (string, error) {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	const debian = "/usr/sbin/nginx"
	if fi, err := os.Stat(debian); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return debian, nil
	}
	return "", ErrNoNginx
}

var nginxVersionRE = regexp.MustCompile(`nginx/([0-9][0-9.]*)`)

// NginxVersion runs "bin -v" and returns the version it prints, such as
// "1.22.1".
func NginxVersion(bin string) (string, error) {
	out, err := exec.Command(bin, "-v").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s -v: %w: %s", bin, err, strings.TrimSpace(string(out)))
	}
	m := nginxVersionRE.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("%s -v: no version in %q", bin, strings.TrimSpace(string(out)))
	}
	return string(m[1]), nil
}

// NginxConfig is what NginxConfig.Render writes: nginx as the lab's target,
// a reverse proxy to the target's recorder, with everything it writes
// under Dir (never the system's /etc/nginx, /var/log/nginx or
// /var/lib/nginx).
type NginxConfig struct {
	Dir      string   // pid file, logs and temporary files; absolute
	Ports    []uint16 // listened on, every IPv4 and IPv6 address
	Upstream string   // the recorder, ADDR:PORT
	Limits   NginxLimits
}

// Validate reports a configuration nginx would refuse or the lab cannot
// use.
func (c NginxConfig) Validate() error {
	switch {
	case !filepath.IsAbs(c.Dir):
		return fmt.Errorf("nginx: directory %q is not absolute", c.Dir)
	case strings.ContainsFunc(c.Dir, func(r rune) bool { return r == '"' || r == '\\' || r == '$' || r < ' ' }):
		return fmt.Errorf("nginx: directory %q has a character nginx would read as syntax (\", \\, $, a control)", c.Dir)
	case len(c.Ports) == 0:
		return errors.New("nginx: no port to listen on")
	case c.Upstream == "":
		return errors.New("nginx: no upstream")
	case c.Limits.KeepaliveRequests < 0:
		return fmt.Errorf("nginx: negative keepalive_requests %d", c.Limits.KeepaliveRequests)
	case c.Limits.KeepaliveTimeout < 0:
		return fmt.Errorf("nginx: negative keepalive_timeout %v", c.Limits.KeepaliveTimeout)
	case c.Limits.KeepaliveTimeout%time.Millisecond != 0:
		return fmt.Errorf("nginx: keepalive_timeout %v is not whole milliseconds", c.Limits.KeepaliveTimeout)
	}
	for _, p := range c.Ports {
		if p == 0 {
			return errors.New("nginx: port 0")
		}
	}
	return nil
}

// nginxDuration formats d as an nginx time: "1s", "1500ms".
func nginxDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strconv.FormatInt(int64(d/time.Millisecond), 10) + "ms"
}

// nginxQuote quotes s, free of '"', '\\' and '$' (Validate), for an
// nginx configuration file.
func nginxQuote(s string) string { return `"` + s + `"` }

// Render returns the nginx.conf for c. nginx runs in the foreground as a
// single process (daemon off, master_process off): its pid is the one
// the lab started, and the parent-death signal the lab gives its programs
// reaches it (the workers of a master would outlive a killed lab). The
// request bodies are buffered (nginx's default) up to 16 MiB, so the
// recorder gets every request whole; nginx keeps its connections to the
// recorder alive (HTTP/1.1). The access log has one line per request nginx
// answered, with the request's length and the client connection's
// number of requests so far.
func (c NginxConfig) Render() (string, error) {
	if err := c.Validate(); err != nil {
		return "", err
	}
	q := func(name string) string { return nginxQuote(filepath.Join(c.Dir, name)) }
	var b strings.Builder
	fmt.Fprintf(&b, `# nginx as the tcpcopy lab's target (internal/lab/labrun). Generated.
daemon off;
master_process off;
pid %s;
error_log %s notice;
worker_rlimit_nofile 16384;

events {
	worker_connections 8192;
}

http {
	log_format lab '$remote_addr:$remote_port $connection $connection_requests $request_length $status $http_x_lab_id';
	access_log %s lab;
	client_body_temp_path %s;
	proxy_temp_path %s;
	fastcgi_temp_path %s;
	uwsgi_temp_path %s;
	scgi_temp_path %s;
	client_max_body_size 16m;
	client_body_buffer_size 1m;
`, q("nginx.pid"), q("error.log"), q("access.log"), q("client_body"), q("proxy"), q("fastcgi"), q("uwsgi"), q("scgi"))
	if n := c.Limits.KeepaliveRequests; n > 0 {
		fmt.Fprintf(&b, "\tkeepalive_requests %d;\n", n)
	}
	if d := c.Limits.KeepaliveTimeout; d > 0 {
		fmt.Fprintf(&b, "\tkeepalive_timeout %s;\n", nginxDuration(d))
	}
	fmt.Fprintf(&b, `
	upstream recorder {
		server %s;
		keepalive 64;
	}

	server {
`, c.Upstream)
	for _, p := range c.Ports {
		fmt.Fprintf(&b, "\t\tlisten %d;\n\t\tlisten [::]:%d ipv6only=on;\n", p, p)
	}
	fmt.Fprintf(&b, `
		location / {
			proxy_pass http://recorder;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Host $host;
			proxy_set_header %s $remote_addr:$remote_port;
			proxy_set_header %s $server_addr:$server_port;
		}
	}
}
`, recorder.RemoteHeader, recorder.LocalHeader)
	return b.String(), nil
}

// nginxTempDirs are the directories under NginxConfig.Dir that nginx
// writes into.
var nginxTempDirs = []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"}

// writeNginx writes c's configuration file and makes its directories; it
// returns the arguments nginx runs with.
func writeNginx(c NginxConfig) ([]string, error) {
	text, err := c.Render()
	if err != nil {
		return nil, err
	}
	return writeNginxFiles(c.Dir, text)
}

// writeNginxFiles writes the configuration text to dir/nginx.conf and
// makes dir and the directories nginx writes into; it returns the
// arguments nginx runs with.
func writeNginxFiles(dir, text string) ([]string, error) {
	for _, d := range append([]string{""}, nginxTempDirs...) {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return nil, err
	}
	// -p and -e keep nginx off its compiled-in prefix and error log even
	// before it has read the configuration.
	return []string{"-p", dir + "/", "-e", filepath.Join(dir, "error.log"), "-c", conf}, nil
}
