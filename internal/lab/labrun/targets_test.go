package labrun

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/recorder"
)

// TestTargetServers checks the table: names unique and usable as flag
// values, a documented server whose limits say something, settings the
// recorder accepts, and a load that meets nginx's limits.
func TestTargetServers(t *testing.T) {
	if TargetServers[0].Name != "recorder" || TargetServers[0].Nginx != nil || TargetServers[0].CloseEvery != 0 {
		t.Errorf("the first server must be the plain recorder, the default: %+v", TargetServers[0])
	}
	name := regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
	seen := map[string]bool{}
	for _, s := range TargetServers {
		if !name.MatchString(s.Name) || seen[s.Name] {
			t.Errorf("bad or repeated name %q", s.Name)
		}
		seen[s.Name] = true
		if len(s.Doc) < 40 || s.Limits() == "" {
			t.Errorf("%s: doc %q, limits %q", s.Name, s.Doc, s.Limits())
		}
		if err := s.Listen.Validate(); err != nil {
			t.Errorf("%s: %v", s.Name, err)
		}
		if got, err := TargetServerByName(s.Name); err != nil || got.Name != s.Name {
			t.Errorf("TargetServerByName(%q) = %+v, %v", s.Name, got, err)
		}
		if n := s.Nginx; n != nil {
			if n.KeepaliveRequests > 0 && s.PerConn <= n.KeepaliveRequests {
				t.Errorf("%s: %d requests per connection do not reach keepalive_requests %d", s.Name, s.PerConn, n.KeepaliveRequests)
			}
			if n.KeepaliveTimeout > 0 && s.Think <= n.KeepaliveTimeout {
				t.Errorf("%s: a pause of %v does not reach keepalive_timeout %v", s.Name, s.Think, n.KeepaliveTimeout)
			}
		}
	}
	if s, err := TargetServerByName(""); err != nil || s.Name != "recorder" {
		t.Errorf(`TargetServerByName("") = %+v, %v; want the recorder`, s, err)
	}
	if _, err := TargetServerByName("apache"); err == nil || !strings.Contains(err.Error(), "known: recorder, nginx-kr100, nginx-kt1s") {
		t.Errorf("unknown server: %v", err)
	}
}

func TestTargetServerText(t *testing.T) {
	for _, tt := range []struct {
		s      TargetServer
		limits string
		args   []string
	}{
		{TargetServer{}, "keeps keep-alive connections (idle timeout 60s), no request limit, accepts at once", nil},
		{TargetServer{Nginx: &NginxLimits{KeepaliveRequests: 100}},
			"keepalive_requests 100, keepalive_timeout 75s (default)", []string{"--peer-headers"}},
		{TargetServer{Nginx: &NginxLimits{KeepaliveTimeout: 1500 * time.Millisecond}},
			"keepalive_requests 1000 (default), keepalive_timeout 1500ms", []string{"--peer-headers"}},
		{TargetServer{CloseEvery: 1}, "closes after every answer (Connection: close)", []string{"--close-every", "1"}},
		{TargetServer{CloseEvery: 2}, "answers every 2nd request with Connection: close and closes", []string{"--close-every", "2"}},
		{TargetServer{CloseEvery: 11}, "answers every 11th request with Connection: close and closes", []string{"--close-every", "11"}},
		{TargetServer{CloseEvery: 21}, "answers every 21st request with Connection: close and closes", []string{"--close-every", "21"}},
		{TargetServer{Listen: recorder.ListenOptions{Backlog: 1, AcceptDelay: 50 * time.Millisecond, SlowFor: time.Second, SlowEvery: 3 * time.Second}},
			"listen backlog 1, one accept per 50ms for 1s of every 3s",
			[]string{"--backlog", "1", "--accept-delay", "50ms", "--slow-for", "1s", "--slow-every", "3s"}},
		{TargetServer{Listen: recorder.ListenOptions{AcceptDelay: 10 * time.Millisecond, SlowFor: 2 * time.Second}},
			"one accept per 10ms for the first 2s", []string{"--accept-delay", "10ms", "--slow-for", "2s"}},
		{TargetServer{Listen: recorder.ListenOptions{AcceptDelay: 10 * time.Millisecond}},
			"one accept per 10ms always", []string{"--accept-delay", "10ms"}},
	} {
		if got := tt.s.Limits(); got != tt.limits {
			t.Errorf("%+v: limits %q, want %q", tt.s, got, tt.limits)
		}
		if got := tt.s.recorderArgs(); !slices.Equal(got, tt.args) {
			t.Errorf("%+v: args %q, want %q", tt.s, got, tt.args)
		}
	}
}

func TestExerciseLoad(t *testing.T) {
	kr, _ := TargetServerByName("nginx-kr100")
	kt, _ := TargetServerByName("nginx-kt1s")
	for _, tt := range []struct {
		name    string
		s       TargetServer
		in      load.Options
		perConn int
		think   time.Duration
	}{
		{"requests per connection raised", kr, load.Options{Mode: load.KeepAlive, RequestsPerConn: 10}, 250, 0},
		{"more requests left", kr, load.Options{Mode: load.KeepAlive, RequestsPerConn: 500}, 500, 0},
		{"pause", kt, load.Options{Mode: load.Mixed}, 0, 1500 * time.Millisecond},
		{"no pause on short connections", kt, load.Options{Mode: load.Short}, 0, 0},
	} {
		o := tt.in
		tt.s.ExerciseLoad(&o)
		if o.RequestsPerConn != tt.perConn || o.Think != tt.think {
			t.Errorf("%s: %d per connection, think %v; want %d, %v", tt.name, o.RequestsPerConn, o.Think, tt.perConn, tt.think)
		}
		if err := o.ValidateKeepAlive(); err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

func TestNginxConfig(t *testing.T) {
	base := NginxConfig{Dir: "/tmp/tcg-1/nginx", Ports: []uint16{8080, 8081}, Upstream: "127.0.0.1:18080",
		Limits: NginxLimits{KeepaliveRequests: 100, KeepaliveTimeout: 1500 * time.Millisecond}}
	text, err := base.Render()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"daemon off;\nmaster_process off;\n",
		`pid "/tmp/tcg-1/nginx/nginx.pid";`,
		`error_log "/tmp/tcg-1/nginx/error.log" notice;`,
		`access_log "/tmp/tcg-1/nginx/access.log" lab;`,
		`client_body_temp_path "/tmp/tcg-1/nginx/client_body";`,
		`proxy_temp_path "/tmp/tcg-1/nginx/proxy";`,
		"client_max_body_size 16m;",
		"keepalive_requests 100;",
		"keepalive_timeout 1500ms;",
		"server 127.0.0.1:18080;",
		"listen 8080;\n\t\tlisten [::]:8080 ipv6only=on;\n\t\tlisten 8081;\n\t\tlisten [::]:8081 ipv6only=on;",
		"proxy_http_version 1.1;",
		`proxy_set_header Connection "";`,
		"proxy_set_header X-Lab-Remote $remote_addr:$remote_port;",
		"proxy_set_header X-Lab-Local $server_addr:$server_port;",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the configuration lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "/etc/nginx") || strings.Contains(text, "/var/") {
		t.Errorf("the configuration points at the system's nginx:\n%s", text)
	}
	if strings.Count(text, "{") != strings.Count(text, "}") {
		t.Errorf("unbalanced braces:\n%s", text)
	}
	// nginx's defaults are left to nginx.
	def := base
	def.Limits = NginxLimits{}
	if text, _ := def.Render(); strings.Contains(text, "keepalive_requests") || strings.Contains(text, "keepalive_timeout") {
		t.Errorf("default limits written:\n%s", text)
	}
	for _, tt := range []struct {
		name string
		edit func(*NginxConfig)
		want string
	}{
		{"relative dir", func(c *NginxConfig) { c.Dir = "run/nginx" }, "not absolute"},
		{"quote in dir", func(c *NginxConfig) { c.Dir = `/tmp/a"b` }, "syntax"},
		{"dollar in dir", func(c *NginxConfig) { c.Dir = "/tmp/$x" }, "syntax"},
		{"no port", func(c *NginxConfig) { c.Ports = nil }, "no port"},
		{"port 0", func(c *NginxConfig) { c.Ports = []uint16{0} }, "port 0"},
		{"no upstream", func(c *NginxConfig) { c.Upstream = "" }, "no upstream"},
		{"negative requests", func(c *NginxConfig) { c.Limits.KeepaliveRequests = -1 }, "negative keepalive_requests"},
		{"sub-millisecond timeout", func(c *NginxConfig) { c.Limits.KeepaliveTimeout = 1500 * time.Microsecond }, "whole milliseconds"},
	} {
		c := base
		tt.edit(&c)
		if _, err := c.Render(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error with %q", tt.name, err, tt.want)
		}
	}
}

func TestWriteNginx(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nginx")
	args, err := writeNginx(NginxConfig{Dir: dir, Ports: []uint16{8080}, Upstream: "127.0.0.1:18080"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"-p", dir + "/", "-e", filepath.Join(dir, "error.log"), "-c", filepath.Join(dir, "nginx.conf")}
	if !slices.Equal(args, want) {
		t.Errorf("args %q, want %q", args, want)
	}
	for _, d := range nginxTempDirs {
		if fi, err := os.Stat(filepath.Join(dir, d)); err != nil || !fi.IsDir() {
			t.Errorf("no directory %s: %v", d, err)
		}
	}
	// The configuration passes nginx's own check, when nginx is here.
	bin, err := FindNginx()
	if err != nil {
		t.Skip(err)
	}
	if v, err := NginxVersion(bin); err != nil || !regexp.MustCompile(`^\d+\.\d+`).MatchString(v) {
		t.Errorf("nginx version %q, %v", v, err)
	}
	// -t parses the file and opens the logs; it binds no port.
	if out, err := exec.Command(bin, append([]string{"-t", "-q"}, args...)...).CombinedOutput(); err != nil {
		t.Errorf("nginx -t: %v\n%s", err, out)
	}
}
