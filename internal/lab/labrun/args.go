package labrun

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/netlab"
)

// Vars returns the placeholder values of topo for Expand: "{role.field}"
// for every interface name and address in the topology, "{role.ns}" for
// the namespace names and "{dir}" for the output directory.
func Vars(t *netlab.Topology) map[string]string {
	return map[string]string{
		"dir":                 t.Dir,
		"client.ns":           t.Client.Name,
		"client.online_if":    t.Client.OnlineIf,
		"client.v4":           t.Client.V4.String(),
		"client.v6":           t.Client.V6.String(),
		"online.ns":           t.Online.Name,
		"online.client_if":    t.Online.ClientIf,
		"online.target_if":    t.Online.TargetIf,
		"online.assistant_if": t.Online.AssistantIf,
		"online.client_v4":    t.Online.ClientV4.String(),
		"online.client_v6":    t.Online.ClientV6.String(),
		"online.target_v4":    t.Online.TargetV4.String(),
		"online.target_v6":    t.Online.TargetV6.String(),
		"online.assistant_v4": t.Online.AssistantV4.String(),
		"online.assistant_v6": t.Online.AssistantV6.String(),
		"target.ns":           t.Target.Name,
		"target.online_if":    t.Target.OnlineIf,
		"target.assistant_if": t.Target.AssistantIf,
		"target.online_v4":    t.Target.OnlineV4.String(),
		"target.online_v6":    t.Target.OnlineV6.String(),
		"target.assistant_v4": t.Target.AssistantV4.String(),
		"target.assistant_v6": t.Target.AssistantV6.String(),
		"assistant.ns":        t.Assistant.Name,
		"assistant.online_if": t.Assistant.OnlineIf,
		"assistant.target_if": t.Assistant.TargetIf,
		"assistant.online_v4": t.Assistant.OnlineV4.String(),
		"assistant.online_v6": t.Assistant.OnlineV6.String(),
		"assistant.target_v4": t.Assistant.TargetV4.String(),
		"assistant.target_v6": t.Assistant.TargetV6.String(),
		"intercept.port":      strconv.Itoa(InterceptPort),
		"online.port":         strconv.Itoa(OnlinePort),
		"target.port":         strconv.Itoa(TargetPort),
	}
}

// addMACs adds the MAC addresses of the interfaces between online and
// target, "{online.target_mac}" and "{target.online_mac}" (for tcpcopy -o
// and the -x @mac forms). An interface whose address cannot be read is
// left out, so a use of it fails in Expand.
func addMACs(ctx context.Context, t *netlab.Topology, vars map[string]string) {
	for name, x := range map[string][2]string{
		"online.target_mac": {netlab.Online, t.Online.TargetIf},
		"target.online_mac": {netlab.Target, t.Target.OnlineIf},
	} {
		out, err := t.Run(ctx, x[0], "cat", "/sys/class/net/"+x[1]+"/address")
		if err != nil {
			continue
		}
		if mac, err := net.ParseMAC(strings.TrimSpace(string(out))); err == nil {
			vars[name] = mac.String()
		}
	}
}

// Expand replaces every "{name}" in args by vars[name]. An unknown name is
// an error, so that a typo does not reach the program under test.
func Expand(args []string, vars map[string]string) ([]string, error) {
	out := make([]string, len(args))
	for i, a := range args {
		var b strings.Builder
		rest := a
		for {
			open := strings.IndexByte(rest, '{')
			if open < 0 {
				b.WriteString(rest)
				break
			}
			end := strings.IndexByte(rest[open:], '}')
			if end < 0 {
				b.WriteString(rest)
				break
			}
			name := rest[open+1 : open+end]
			v, ok := vars[name]
			if !ok {
				return nil, fmt.Errorf("unknown placeholder {%s} in %q", name, a)
			}
			b.WriteString(rest[:open])
			b.WriteString(v)
			rest = rest[open+end+1:]
		}
		out[i] = b.String()
	}
	return out, nil
}

// SplitArgs splits a command line the way a POSIX shell splits words, with
// single quotes, double quotes and backslash escapes (no expansions):
// `-F 'tcp and src port 8080' -i x` gives [-F, tcp and src port 8080, -i, x].
func SplitArgs(s string) ([]string, error) {
	var (
		args  []string
		cur   strings.Builder
		inArg bool
		quote rune
		esc   bool
	)
	for _, r := range s {
		switch {
		case esc:
			cur.WriteRune(r)
			esc = false
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case quote == '"':
			switch r {
			case '"':
				quote = 0
			case '\\':
				esc = true
			default:
				cur.WriteRune(r)
			}
		case r == '\\':
			esc, inArg = true, true
		case r == '\'' || r == '"':
			quote, inArg = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteRune(r)
			inArg = true
		}
	}
	if quote != 0 || esc {
		return nil, fmt.Errorf("unterminated quote or escape in %q", s)
	}
	if inArg {
		args = append(args, cur.String())
	}
	return args, nil
}
