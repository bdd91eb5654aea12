package netlab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"strconv"
	"strings"
)

// Client stack, link MTU and loss settings of Options: validation, the
// build steps that apply them, and the loss counters.
//
// Client MSS. The client's connected routes toward online (192.0.2.0/24
// and 2001:db8:1::/64 on to-online) are replaced by the same routes with
// "mtu lock MSS+40 advmss MSS" (IPv4) and "mtu lock MSS+60 advmss MSS"
// (IPv6): advmss is the MSS the client advertises in its SYN, the locked
// route MTU bounds what it sends (tcp_sync_mss uses the route's MTU), so
// both directions of the client's connections carry segments of at most
// MSS bytes. IPv6 cannot lock a route MTU below its minimum link MTU of
// 1280 (RFC 8200, section 5), so for MSS+60 < 1280 (ClientMSS 536 or 1200)
// the IPv6 route is left alone and IPv6 connections keep the link's MSS.
//
// Link MTUs. The kernel turns IPv6 off on a link whose MTU is set below
// 1280: its IPv6 addresses and routes go, and do not come back when the MTU
// is raised again. A veth drops, silently and without ICMP, a frame its
// peer hands it that is larger than its own MTU plus 4 bytes (the VLAN tag
// allowance of is_skb_forwardable, Linux 6.18), and counts it in its
// rx_dropped. Measured in this lab: with TargetMTU 1400 (online's to-target
// at 1500), IPv4 packets of 1400 and 1404 bytes from online reach the
// target, packets of 1405 and 1500 bytes are dropped at the target's
// to-online. GSO packets are exempt from that check, but tcpcopy sends
// through raw sockets, one packet per frame.
//
// Loss. An nftables table of family netdev (lossTable) in the sending
// namespace holds one chain on the egress hook of the sending interface and
// one rule, "meta l4proto tcp numgen random mod 10000 < N counter drop",
// with N the loss in hundredths of a percent. Only TCP is dropped, so ARP
// and neighbour discovery never fail. The egress hook runs before GSO
// segmentation, and Linux TCP builds GSO packets whatever the device
// offers (sk_setup_caps adds NETIF_F_GSO for TCP sockets): with TSO and GSO
// turned off only, the hook still saw 36 packets of about 55 KB for a 2 MB
// transfer, where the receiver counted 1386 frames. So each lossy sending
// interface gets "ethtool -K DEV tso off gso off" and also "ip link set DEV
// gso_max_segs 1", which makes the local TCP stack build one segment per
// packet; then one dropped packet is one frame, as on a real lossy link
// (measured: 1769 packets, none above 1514 bytes, at the hook and at the
// receiver alike).

// Loss rule names. "fwd" and other nft keywords cannot name a chain;
// these are plain identifiers.
const (
	lossTable         = "tcpcopy_lab"
	lossChainCopy     = "copy_loss"
	lossChainResponse = "response_loss"
)

// lossScale is the loss resolution: the rule compares a random number mod
// lossScale, so 1 is 0.01 %.
const lossScale = 10000

// IPv6MinMTU is the smallest IPv6 link MTU (RFC 8200, section 5). Links set
// below it lose IPv6.
const IPv6MinMTU = 1280

// defaultMTU is the veth default MTU.
const defaultMTU = 1500

// Limits of the MTU and MSS options.
const (
	MinMTU    = 68    // RFC 791: every IPv4 link carries 68-byte packets
	MaxMTU    = 65535 // veth maximum
	MinMSS    = 64    // ClientMSS; tcp_min_snd_mss is 48
	ipv4Extra = 40    // IPv4 and TCP headers without options
	ipv6Extra = 60    // IPv6 and TCP headers without options
)

// Validate checks the options without building anything: ranges, the
// sysctl form, and that ClientMSS fits the client link.
func (o Options) Validate() error {
	if o.ExtraClients < 0 || o.ExtraClients > MaxExtraClients {
		return fmt.Errorf("netlab: ExtraClients %d out of range 0..%d", o.ExtraClients, MaxExtraClients)
	}
	if o.Prefix != "" && !validPrefix(o.Prefix) {
		return fmt.Errorf("netlab: bad prefix %q: want 1-16 characters [a-z0-9]", o.Prefix)
	}
	for _, s := range o.ClientSysctls {
		if err := ValidSysctl(s); err != nil {
			return err
		}
	}
	for _, m := range []struct {
		name string
		v    int
	}{{"ClientMTU", o.ClientMTU}, {"TargetMTU", o.TargetMTU}} {
		if m.v != 0 && (m.v < MinMTU || m.v > MaxMTU) {
			return fmt.Errorf("netlab: %s %d out of range %d..%d (0 leaves the default %d)", m.name, m.v, MinMTU, MaxMTU, defaultMTU)
		}
	}
	if o.ClientMSS != 0 {
		link := o.clientLinkMTU()
		if o.ClientMSS < MinMSS || o.ClientMSS+ipv4Extra > link {
			return fmt.Errorf("netlab: ClientMSS %d out of range %d..%d (the client link MTU %d less 40 bytes of headers)",
				o.ClientMSS, MinMSS, link-ipv4Extra, link)
		}
	}
	for _, l := range []struct {
		name string
		v    float64
	}{{"LossCopy", o.LossCopy}, {"LossResponse", o.LossResponse}} {
		if _, err := lossThreshold(l.v); err != nil {
			return fmt.Errorf("netlab: %s: %w", l.name, err)
		}
	}
	return nil
}

func (o Options) clientLinkMTU() int {
	if o.ClientMTU != 0 {
		return o.ClientMTU
	}
	return defaultMTU
}

// ValidSysctl checks that s has the form "key=value": key made of
// [a-z0-9._-], starting and ending with a letter or digit, value not empty
// and without control characters. It does not check that the key exists:
// sysctl does, when the topology is built.
func ValidSysctl(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("netlab: sysctl %q: want key=value, e.g. net.ipv4.tcp_timestamps=0", s)
	}
	if k == "" {
		return fmt.Errorf("netlab: sysctl %q: empty key", s)
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("netlab: sysctl %q: key may only hold [a-z0-9._-], not %q", s, c)
		}
	}
	if edge := func(c byte) bool { return c == '.' || c == '_' || c == '-' }; edge(k[0]) || edge(k[len(k)-1]) || strings.Contains(k, "..") {
		return fmt.Errorf("netlab: sysctl %q: malformed key", s)
	}
	if v == "" {
		return fmt.Errorf("netlab: sysctl %q: empty value", s)
	}
	for _, c := range v {
		if c < ' ' && c != '\t' || c == 0x7f {
			return fmt.Errorf("netlab: sysctl %q: control character in the value", s)
		}
	}
	return nil
}

// lossThreshold converts a loss percentage to the rule's threshold N out of
// lossScale: 0 for no loss (no rule), up to lossScale for 100 %.
func lossThreshold(pct float64) (int, error) {
	if math.IsNaN(pct) || pct < 0 || pct > 100 {
		return 0, fmt.Errorf("loss %v%% out of range 0..100", pct)
	}
	n := int(math.Round(pct * lossScale / 100))
	if n == 0 && pct > 0 {
		return 0, fmt.Errorf("loss %v%% below the resolution of 0.01%%", pct)
	}
	return n, nil
}

// lossRuleset is the nft script of one lossy interface.
func lossRuleset(chain, dev string, n int) string {
	return fmt.Sprintf("table netdev %s {\n"+
		"\tchain %s {\n"+
		"\t\ttype filter hook egress device %q priority 0; policy accept;\n"+
		"\t\tmeta l4proto tcp numgen random mod %d < %d counter drop\n"+
		"\t}\n"+
		"}\n", lossTable, chain, dev, lossScale, n)
}

// checkTools says which missing program the options need.
func (o Options) checkTools() error {
	if o.LossCopy > 0 || o.LossResponse > 0 {
		if _, err := exec.LookPath("nft"); err != nil {
			return fmt.Errorf("netlab: random loss needs nft: install the nftables package (scripts/deps.sh): %w", err)
		}
		if _, err := exec.LookPath("ethtool"); err != nil {
			return fmt.Errorf("netlab: random loss needs ethtool to turn TSO and GSO off: install the ethtool package (scripts/deps.sh): %w", err)
		}
	}
	if len(o.ClientSysctls) > 0 {
		if _, err := exec.LookPath("sysctl"); err != nil {
			return fmt.Errorf("netlab: client sysctls need sysctl (procps): %w", err)
		}
	}
	return nil
}

// mtuSteps returns the commands that set the link MTUs. They run after the
// addresses and routes exist (an MTU below 1280 removes IPv6 from a link).
func (t *Topology) mtuSteps(opts Options) [][]string {
	var steps [][]string
	set := func(ns, dev string, mtu int) {
		steps = append(steps, []string{"ip", "-n", ns, "link", "set", "dev", dev, "mtu", strconv.Itoa(mtu)})
	}
	if opts.ClientMTU != 0 {
		set(t.Client.Name, IfToOnline, opts.ClientMTU)
		set(t.Online.Name, IfToClient, opts.ClientMTU)
	}
	if opts.TargetMTU != 0 {
		set(t.Target.Name, IfToOnline, opts.TargetMTU)
		set(t.Target.Name, IfToAssistant, opts.TargetMTU)
	}
	return steps
}

// applyStack applies the client sysctls, the client MSS and the loss rules
// once the links are up.
func (t *Topology) applyStack(ctx context.Context, opts Options) error {
	c := t.Client.Name
	if len(opts.ClientSysctls) > 0 {
		args := append([]string{"netns", "exec", c, "sysctl", "-q", "-w"}, opts.ClientSysctls...)
		if _, err := runCmd(ctx, nil, "ip", args...); err != nil {
			return err
		}
		t.ClientSysctls = append([]string(nil), opts.ClientSysctls...)
	}
	if mss := opts.ClientMSS; mss != 0 {
		// The connected routes as the kernel made them, with the metrics
		// added: same prefix, table, metric, protocol, scope and source.
		if _, err := runCmd(ctx, nil, "ip", "-n", c, "-4", "route", "replace", ClientPrefix4.String(),
			"dev", IfToOnline, "proto", "kernel", "scope", "link", "src", t.Client.V4.String(),
			"mtu", "lock", strconv.Itoa(mss+ipv4Extra), "advmss", strconv.Itoa(mss)); err != nil {
			return err
		}
		t.ClientMSS = mss
		if mss+ipv6Extra >= IPv6MinMTU && opts.clientLinkMTU() >= IPv6MinMTU {
			if _, err := runCmd(ctx, nil, "ip", "-n", c, "-6", "route", "replace", ClientPrefix6.String(),
				"dev", IfToOnline, "proto", "kernel", "metric", "256",
				"mtu", "lock", strconv.Itoa(mss+ipv6Extra), "advmss", strconv.Itoa(mss)); err != nil {
				return err
			}
			t.ClientMSS6 = mss
		}
	}
	t.ClientMTU, t.TargetMTU = opts.ClientMTU, opts.TargetMTU
	for _, l := range []struct {
		pct     float64
		ns, dev string
		chain   string
		dst     *float64
		path    string
	}{
		{opts.LossCopy, t.Online.Name, IfToTarget, lossChainCopy, &t.LossCopy, "copy"},
		{opts.LossResponse, t.Target.Name, IfToAssistant, lossChainResponse, &t.LossResponse, "response"},
	} {
		n, _ := lossThreshold(l.pct) // validated
		if n == 0 {
			continue
		}
		if _, err := runCmd(ctx, nil, "ip", "netns", "exec", l.ns, "ethtool", "-K", l.dev, "tso", "off", "gso", "off"); err != nil {
			return err
		}
		if _, err := runCmd(ctx, nil, "ip", "-n", l.ns, "link", "set", "dev", l.dev, "gso_max_segs", "1"); err != nil {
			return err
		}
		script := bytes.NewBufferString(lossRuleset(l.chain, l.dev, n))
		if _, err := runCmd(ctx, script, "ip", "netns", "exec", l.ns, "nft", "-f", "-"); err != nil {
			return fmt.Errorf("netlab: %s loss rule (nftables netdev egress hook): %w", l.path, err)
		}
		*l.dst = float64(n) * 100 / lossScale
	}
	return nil
}

// LossDrops returns how many TCP frames the loss rules have dropped so far
// on the copy path (online to-target) and on the response path (target
// to-assistant); 0 for a path without loss. It reads the rules' counters
// with "nft -j list table" inside the namespaces.
func (t *Topology) LossDrops(ctx context.Context) (copied, response uint64, err error) {
	read := func(ns, chain string) (uint64, error) {
		out, err := t.Run(ctx, ns, "nft", "-j", "list", "table", "netdev", lossTable)
		if err != nil {
			return 0, err
		}
		return nftCounter(out, lossTable, chain)
	}
	if t.LossCopy > 0 {
		if copied, err = read(Online, lossChainCopy); err != nil {
			return 0, 0, err
		}
	}
	if t.LossResponse > 0 {
		if response, err = read(Target, lossChainResponse); err != nil {
			return copied, 0, err
		}
	}
	return copied, response, nil
}

// nftCounter sums the packets of the counters of the rules of chain in
// table, from the output of "nft -j list ...".
func nftCounter(js []byte, table, chain string) (uint64, error) {
	var doc struct {
		Nftables []struct {
			Rule *struct {
				Table string                       `json:"table"`
				Chain string                       `json:"chain"`
				Expr  []map[string]json.RawMessage `json:"expr"`
			} `json:"rule"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(js, &doc); err != nil {
		return 0, fmt.Errorf("netlab: nft -j output: %w", err)
	}
	var n uint64
	found := false
	for _, o := range doc.Nftables {
		r := o.Rule
		if r == nil || r.Table != table || r.Chain != chain {
			continue
		}
		for _, e := range r.Expr {
			raw, ok := e["counter"]
			if !ok {
				continue
			}
			var c struct {
				Packets *uint64 `json:"packets"`
			}
			if err := json.Unmarshal(raw, &c); err != nil || c.Packets == nil {
				return 0, fmt.Errorf("netlab: nft -j output: unexpected counter %s", raw)
			}
			n += *c.Packets
			found = true
		}
	}
	if !found {
		return 0, errors.New("netlab: nft -j output: no counter in chain " + table + "/" + chain)
	}
	return n, nil
}
