package main

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/tcpcopy-go/tcpcopy/internal/cliutil"
	"github.com/tcpcopy-go/tcpcopy/internal/intercept"
)

// parse runs the command line through the real flags and configFrom,
// without starting intercept.
func parse(t *testing.T, args ...string) (intercept.Config, error) {
	t.Helper()
	cmd := newCommand()
	var (
		cfg  intercept.Config
		perr error
	)
	cmd.Action = func(_ context.Context, c *cli.Command) error {
		cfg, perr = configFrom(c)
		return nil
	}
	argv := cliutil.Normalize(append([]string{"intercept"}, args...), valueOpts, plainOpts)
	if err := cmd.Run(context.Background(), argv); err != nil {
		return cfg, err
	}
	return cfg, perr
}

func TestCaptureTimeout(t *testing.T) {
	f := []string{"-F", "tcp and src port 8080"}
	tests := []struct {
		name    string
		args    []string
		want    time.Duration
		wantErr string
	}{
		{"default", f, time.Millisecond, ""},
		{"set", append(f, "--capture-timeout", "4ms"), 4 * time.Millisecond, ""},
		{"zero", append(f, "--capture-timeout", "0"), 0, "option --capture-timeout: 0s is out of range 1ms..1s"},
		{"too long", append(f, "--capture-timeout", "2s"), 0, "option --capture-timeout: 2s is out of range 1ms..1s"},
		{"fraction", append(f, "--capture-timeout", "1.5ms"), 0, "option --capture-timeout: 1.5ms is not a whole number of milliseconds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parse(t, tt.args...)
			switch {
			case tt.wantErr != "":
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
			case err != nil:
				t.Fatalf("error = %v", err)
			case cfg.CaptureTimeout != tt.want:
				t.Errorf("CaptureTimeout = %v, want %v", cfg.CaptureTimeout, tt.want)
			}
		})
	}
}

// runMain runs the command line like main does, without starting
// intercept, and returns the exit status, the Config and standard error.
func runMain(t *testing.T, args ...string) (int, intercept.Config, string) {
	t.Helper()
	cmd := newCommand()
	var cfg intercept.Config
	cmd.Action = func(_ context.Context, c *cli.Command) error {
		var err error
		if cfg, err = configFrom(c); err != nil {
			return &cliutil.UsageError{Err: err}
		}
		return nil
	}
	var stdout, stderr bytes.Buffer
	cmd.Writer, cmd.ErrWriter = &stdout, &stderr
	code := cliutil.Run(context.Background(), cmd, cliutil.Normalize(append([]string{"intercept"}, args...), valueOpts, plainOpts), &stderr)
	return code, cfg, stderr.String()
}

// TestValues covers values the command line used to accept or refuse
// wrongly: each must exit 2 with one short line naming the option, or be
// accepted with the right meaning.
func TestValues(t *testing.T) {
	dir := t.TempDir()
	secretFile := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good, open := secretFile("good", 0o600), secretFile("open", 0o644)
	f := []string{"-F", "tcp and src port 8080"}
	long := strings.Repeat("9", 120000)
	tests := []struct {
		name  string
		args  []string
		want  string                        // stderr without "intercept: " and " (see intercept -h)"; "" for success
		check func(c intercept.Config) bool // for success
	}{
		{"--stats-interval 1ns", append(f, "--stats-interval", "1ns"), "option --stats-interval: 1ns is not 0 (off) or between 1s and 24h0m0s", nil},
		{"--stats-interval -1s", append(f, "--stats-interval", "-1s"), "option --stats-interval: -1s is not 0 (off) or between 1s and 24h0m0s", nil},
		{"--stats-interval 0", append(f, "--stats-interval", "0"), "", func(c intercept.Config) bool { return c.StatsInterval == 0 }},
		{"-n 16 --resp-payload", append(f, "-n", "16", "--resp-payload"), "option -n: 16 is out of range 1..6 with --resp-payload (192-byte records, C MAX_COMBINED with payload)", nil},
		{"-n 6 --resp-payload", append(f, "-n", "6", "--resp-payload"), "", func(c intercept.Config) bool { return c.MaxCombined == 6 }},
		{"--allow mapped", append(f, "--allow", "::ffff:203.0.113.0/120"), "", func(c intercept.Config) bool {
			return len(c.Allow) == 1 && c.Allow[0] == netip.MustParsePrefix("203.0.113.0/24")
		}},
		{"--allow mapped address", append(f, "--allow", "::ffff:203.0.113.7"), "", func(c intercept.Config) bool {
			return len(c.Allow) == 1 && c.Allow[0] == netip.MustParsePrefix("203.0.113.7/32")
		}},
		{"--allow mapped too wide", append(f, "--allow", "::ffff:0:0/80"), `option --allow: "::ffff:0:0/80" covers more than IPv4-mapped addresses: write the IPv4 and IPv6 networks separately`, nil},
		{"--allow empty", append(f, "--allow", ""), "option --allow: no network given (leave the option out to accept links from every address)", nil},
		{"--allow comma", append(f, "--allow", ","), "option --allow: no network given (leave the option out to accept links from every address)", nil},
		{"--allow garbage", append(f, "--allow", "lan"), `option --allow: "lan" is not a CIDR or address`, nil},
		{"--log-format", append(f, "--log-format", "xml"), `option --log-format: "xml" is not text or json`, nil},
		{"--log-level", append(f, "--log-level", "loud"), `option --log-level: "loud" is not debug, info, warn or error`, nil},
		{"--metrics-addr no port", append(f, "--metrics-addr", "9101"), `option --metrics-addr: "9101" is not host:port`, nil},
		{"--metrics-addr port", append(f, "--metrics-addr", "127.0.0.1:99999"), `option --metrics-addr: port "99999" is not 1..65535`, nil},
		{"--metrics-addr host", append(f, "--metrics-addr", "metrics.example:9101"), `option --metrics-addr: host "metrics.example" is not an IP address`, nil},
		{"--metrics-addr ok", append(f, "--metrics-addr", "127.0.0.1:9101"), "", func(c intercept.Config) bool { return c.MetricsAddr == "127.0.0.1:9101" }},
		{"-b garbage", append(f, "-b", "eth0"), `option -b: "eth0" is not an IP address`, nil},
		{"--queue-bytes 65536", append(f, "--queue-bytes", "65536"), "option --queue-bytes: 65536 is out of range 262144..1073741824", nil},
		{"--max-links 0", append(f, "--max-links", "0"), "option --max-links: 0 is out of range 1..65536", nil},
		{"--max-routes-per-link 0", append(f, "--max-routes-per-link", "0"), "option --max-routes-per-link: 0 is out of range 1..2097152", nil},
		{"--handshake-timeout 0", append(f, "--handshake-timeout", "0"), "option --handshake-timeout: 0s is out of range 100ms..1m0s", nil},
		{"--link-idle 0", append(f, "--link-idle", "0"), "option --link-idle: 0s is out of range 1s..24h0m0s", nil},
		{"--secret-file", append(f, "--secret-file", good), "", func(c intercept.Config) bool { return string(c.Secret) == "0123456789abcdef0123456789abcdef" }},
		{"--secret-file open", append(f, "--secret-file", open), "option --secret-file: secret file " + open + ": permissions 0644 let others read or change it; chmod 600 " + open, nil},
		{"--secret-file missing", append(f, "--secret-file", filepath.Join(dir, "none")), "option --secret-file: secret file: open " + filepath.Join(dir, "none") + ": no such file or directory", nil},
		{"120 kB value", append(f, "-b", long), cliutil.Shorten(`option -b: "` + long + `" is not an IP address`), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, cfg, stderr := runMain(t, tt.args...)
			if tt.want == "" {
				if code != 0 || !tt.check(cfg) {
					t.Errorf("exit %d (%q), config %+v", code, stderr, cfg)
				}
				return
			}
			want := "intercept: " + tt.want + " (see intercept -h)\n"
			if code != 2 || stderr != want || len(stderr) > 600 {
				t.Errorf("exit %d, stderr\n%q\nwant exit 2,\n%q", code, stderr, want)
			}
		})
	}
}
