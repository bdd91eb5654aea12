package e2e

// Tests of scripts/route-setup.sh. The script changes routes and sysctls,
// so it only ever runs inside lab namespaces ("ip netns exec"), never in
// the host namespace.

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/netlab"
)

// rsScript returns the path of scripts/route-setup.sh.
func rsScript(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller information")
	}
	p := filepath.Join(filepath.Dir(file), "..", "..", "scripts", "route-setup.sh")
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// rsRun runs the script with args in namespace ns of topo and returns its
// exit status and combined output.
func rsRun(ctx context.Context, t *testing.T, topo *netlab.Topology, ns string, args ...string) (int, string) {
	t.Helper()
	cmd := topo.Command(ctx, ns, "bash", append([]string{rsScript(t)}, args...)...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("route-setup.sh %v in %s: %v\n%s", args, ns, err, out)
	return 0, ""
}

// The lab's client ranges and the assistant's addresses on the target's
// network.
var (
	rsTargetArgs = []string{"target", "--clients", "192.0.2.0/24,2001:db8:1::/64", "--assistant", "203.0.113.3,2001:db8:3::3"}
	rsAssistArgs = []string{"assistant", "--clients", "192.0.2.0/24,2001:db8:1::/64"}
)

func rsArgs(base []string, more ...string) []string {
	return append(append([]string(nil), base...), more...)
}

// rsMust runs commands in namespaces, failing the test on error.
func rsMust(ctx context.Context, t *testing.T, topo *netlab.Topology, cmds ...[]string) {
	t.Helper()
	for _, c := range cmds {
		if _, err := topo.Run(ctx, c[0], c[1], c[2:]...); err != nil {
			t.Fatal(err)
		}
	}
}

// rsBreak undoes what the lab set up for copying: the target loses its
// routes to the clients and gets strict reverse path filtering, the
// assistant forwards.
func rsBreak(ctx context.Context, t *testing.T, topo *netlab.Topology) {
	t.Helper()
	rsMust(ctx, t, topo,
		[]string{netlab.Target, "ip", "route", "del", netlab.ClientPrefix4.String()},
		[]string{netlab.Target, "ip", "-6", "route", "del", netlab.ClientPrefix6.String()},
		[]string{netlab.Target, "sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=1", "net.ipv4.conf.to-online.rp_filter=1"},
		[]string{netlab.Assistant, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"},
	)
}

func TestRouteSetupUsage(t *testing.T) {
	needRoot(t)
	topo := netlab.NewForTest(t, netlab.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no arguments", nil, "missing role"},
		{"unknown role", []string{"online"}, "unknown role"},
		{"target without clients", []string{"target", "--assistant", "203.0.113.3"}, "needs --clients"},
		{"target without assistant", []string{"target", "--clients", "192.0.2.0/24"}, "needs --assistant"},
		{"flag without value", []string{"target", "--clients"}, "needs a value"},
		{"flag followed by a flag", []string{"target", "--clients", "--check"}, "needs a value"},
		{"host bits", []string{"target", "--clients", "192.0.2.7/24", "--assistant", "203.0.113.3"}, "did you mean 192.0.2.0/24"},
		{"bad range", []string{"target", "--clients", "192.0.2.300/24", "--assistant", "203.0.113.3"}, "not an IPv4 or IPv6 range"},
		{"bad prefix", []string{"target", "--clients", "192.0.2.0/33", "--assistant", "203.0.113.3"}, "bad prefix length"},
		{"family without assistant", []string{"target", "--clients", "2001:db8:1::/64", "--assistant", "203.0.113.3"}, "no IPv6 address"},
		{"two assistants of a family", []string{"target", "--clients", "192.0.2.0/24", "--assistant", "203.0.113.3,203.0.113.4"}, "two IPv4"},
		{"assistant with --assistant", []string{"assistant", "--assistant", "203.0.113.3"}, "for the target"},
		{"check and dry-run", []string{"assistant", "--check", "--dry-run"}, "exclude each other"},
		{"unknown flag", []string{"assistant", "--force"}, "unknown argument"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out := rsRun(ctx, t, topo, netlab.Target, tt.args...)
			if code != 2 || !strings.Contains(out, tt.want) || !strings.Contains(out, "usage:") {
				t.Errorf("exit %d, output:\n%s\nwant exit 2, %q and the usage", code, out, tt.want)
			}
		})
	}
	if code, out := rsRun(ctx, t, topo, netlab.Target, "--help"); code != 0 || !strings.Contains(out, "usage:") {
		t.Errorf("--help: exit %d\n%s", code, out)
	}
}

// TestRouteSetupCheckAndApply checks that the lab's own topology passes
// --check, that --check reports a broken one in plain words and changes
// nothing, that --dry-run only prints, and that applying fixes it.
func TestRouteSetupCheckAndApply(t *testing.T) {
	needRoot(t)
	topo := netlab.NewForTest(t, netlab.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	target := rsArgs(rsTargetArgs, "--dev", netlab.IfToAssistant)

	check := func(name string, wantCode int, ns string, args []string, want ...string) string {
		t.Helper()
		code, out := rsRun(ctx, t, topo, ns, args...)
		if code != wantCode {
			t.Errorf("%s: exit %d, want %d:\n%s", name, code, wantCode, out)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: output lacks %q:\n%s", name, w, out)
			}
		}
		return out
	}

	check("lab target", 0, netlab.Target, rsArgs(target, "--check"), "target: all checks passed")
	check("lab assistant", 0, netlab.Assistant, rsArgs(rsAssistArgs, "--check"), "assistant: all checks passed")
	check("nothing to do", 0, netlab.Target, rsArgs(target, "--dry-run"),
		"+ ip -4 route replace 192.0.2.0/24 via 203.0.113.3 dev to-assistant")

	rsBreak(ctx, t, topo)
	for range 2 { // the second time proves that --check and --dry-run changed nothing
		check("broken target", 1, netlab.Target, rsArgs(target, "--check"),
			"PROBLEM: no route to the client 192.0.2.1 (192.0.2.0/24)",
			"PROBLEM: no route to the client 2001:db8:1::1 (2001:db8:1::/64)",
			"PROBLEM: rp_filter is strict on to-assistant to-online (net.ipv4.conf.all.rp_filter=1)",
			"target: 4 problem(s) found")
		check("broken assistant", 1, netlab.Assistant, rsArgs(rsAssistArgs, "--check"),
			"PROBLEM: IPv4 forwarding is on (net.ipv4.ip_forward=1): responses would reach the real clients",
			"PROBLEM: IPv6 forwarding is on")
		check("dry-run target", 0, netlab.Target, rsArgs(target, "--dry-run"),
			"+ ip -4 route replace 192.0.2.0/24 via 203.0.113.3 dev to-assistant",
			"+ ip -6 route replace 2001:db8:1::/64 via 2001:db8:3::3 dev to-assistant",
			"+ sysctl -w net.ipv4.conf.all.rp_filter=2",
			"+ sysctl -w net.ipv4.conf.to-online.rp_filter=2")
		check("dry-run assistant", 0, netlab.Assistant, rsArgs(rsAssistArgs, "--dry-run"),
			"+ sysctl -w net.ipv4.ip_forward=0", "+ sysctl -w net.ipv6.conf.all.forwarding=0")
	}

	// A route to the clients that bypasses the assistant.
	rsMust(ctx, t, topo, []string{netlab.Target, "ip", "route", "add", netlab.ClientPrefix4.String(), "via", topo.Online.TargetV4.String()})
	check("route elsewhere", 1, netlab.Target, rsArgs(target, "--check"),
		"PROBLEM: responses to the client 192.0.2.1 (192.0.2.0/24) go via 198.51.100.1, not via the assistant 203.0.113.3: they would reach the real clients")

	check("apply target", 0, netlab.Target, target, "target: ready")
	check("apply assistant", 0, netlab.Assistant, rsAssistArgs, "assistant: ready")
	check("fixed target", 0, netlab.Target, rsArgs(target, "--check"), "target: all checks passed")
	check("fixed assistant", 0, netlab.Assistant, rsArgs(rsAssistArgs, "--check"), "assistant: all checks passed")
	check("idempotent", 0, netlab.Assistant, rsArgs(rsAssistArgs, "--dry-run"), "nothing to change")

	// Loose, not off: rp_filter is now 2 where it was 1.
	out, err := topo.Run(ctx, netlab.Target, "sysctl", "-n", "net.ipv4.conf.all.rp_filter", "net.ipv4.conf.to-online.rp_filter")
	if err != nil || strings.Fields(string(out))[0] != "2" || strings.Fields(string(out))[1] != "2" {
		t.Errorf("rp_filter after apply: %q, %v; want 2 and 2", out, err)
	}

	// Problems routing cannot fix.
	rsMust(ctx, t, topo, []string{netlab.Assistant, "ip", "addr", "add", "192.0.2.99/32", "dev", "lo"})
	check("client address on the assistant", 1, netlab.Assistant, rsArgs(rsAssistArgs, "--check"),
		"PROBLEM: this host has addresses inside the client range 192.0.2.0/24 (192.0.2.99/32 on lo)")
	check("assistant unreachable", 1, netlab.Target,
		[]string{"target", "--clients", "192.0.2.0/24", "--assistant", "198.51.100.130", "--check"},
		"PROBLEM: the assistant 198.51.100.130 is unreachable from this host")
	rsMust(ctx, t, topo, []string{netlab.Target, "ip", "route", "add", "198.51.100.128/25", "via", topo.Online.TargetV4.String()})
	check("assistant not on-link", 1, netlab.Target,
		[]string{"target", "--clients", "192.0.2.0/24", "--assistant", "198.51.100.130", "--check"},
		"PROBLEM: the assistant 198.51.100.130 is not on a directly connected network (reached via 198.51.100.1)")
	rsMust(ctx, t, topo, []string{netlab.Target, "ip", "addr", "add", "192.0.2.98/32", "dev", "lo"})
	check("client address on the target", 1, netlab.Target, rsArgs(target),
		"has addresses inside the client range 192.0.2.0/24")
}

// TestRouteSetupCopies copies through a lab whose routing the script set
// up: the lab's routes are taken away, strict rp_filter and forwarding
// are put in their place, and route-setup.sh repairs both hosts before
// tcpcopy starts. rp_filter ends up loose (2), not off.
func TestRouteSetupCopies(t *testing.T) {
	needRoot(t)
	cfg := scenConfig(2 * time.Second)
	cfg.Setup = func(ctx context.Context, lab *labrun.Lab) error {
		rsBreak(ctx, t, lab.Topo)
		for _, c := range []struct {
			ns   string
			args []string
		}{
			{netlab.Target, rsArgs(rsTargetArgs, "--dev", netlab.IfToAssistant)},
			{netlab.Assistant, rsAssistArgs},
		} {
			if code, out := rsRun(ctx, t, lab.Topo, c.ns, c.args...); code != 0 {
				t.Errorf("route-setup.sh %v: exit %d\n%s", c.args, code, out)
			}
		}
		return nil
	}
	rep, online, target := run(t, cfg)
	checkAllCopied(t, rep, online, target)
	scenCheckNoLeaks(t, rep)
}

func TestRouteSetupShellcheck(t *testing.T) {
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Skip("shellcheck not installed")
	}
	if out, err := exec.Command(sc, rsScript(t)).CombinedOutput(); err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
}
