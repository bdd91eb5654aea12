// Package netlab builds the four-namespace TCPCopy lab with iproute2 and runs
// programs inside it.
//
// The topology is the one C TCPCopy 1.x documents for its "assistant" mode
// (see /work/shared/reference/tcpcopy-c.md):
//
//	client ──── online ──── target
//	              │            │
//	              └─ assistant ┘
//
//	client    to-online     192.0.2.10/24       2001:db8:1::10/64 (+ extra clients)
//	online    to-client     192.0.2.1/24        2001:db8:1::1/64
//	online    to-target     198.51.100.1/25     2001:db8:2::1/64
//	online    to-assistant  198.51.100.129/25   2001:db8:4::1/64
//	target    to-online     198.51.100.2/25     2001:db8:2::2/64
//	target    to-assistant  203.0.113.2/24      2001:db8:3::2/64
//	assistant to-online     198.51.100.130/25   2001:db8:4::2/64
//	assistant to-target     203.0.113.3/24      2001:db8:3::3/64
//
// The target routes the client ranges (192.0.2.0/24, 2001:db8:1::/64) to the
// assistant and has rp_filter off, because tcpcopy's copies arrive from online
// with client source addresses. Forwarding is off everywhere, so the target's
// responses die on the assistant after intercept has seen them, and no
// namespace ever answers them with RST (see pitfalls.md, "Sending"). Only
// documentation prefixes are used (RFC 5737, RFC 3849) and IPv6 addresses are
// added with nodad so they are usable at once.
//
// Every command that touches the network runs inside a namespace created by
// New: links are created with "ip -n NS link add ... peer ... netns PEER", so
// nothing is ever created in, or moved through, the host namespace. Interface
// names are the same in every topology (interface names are per namespace):
// "to-<peer role>", see the If* constants. Interface indexes are fixed too:
// client to-online 10, online to-client 11, to-target 20, to-assistant 30,
// target to-online 21, to-assistant 40, assistant to-online 31, to-target 41.
//
// Namespaces are named "<prefix>-<6 hex>-<role>" (prefix "tcg" by default).
// Before creating them New records its pid (and the pid's start time) in an
// owner file under /run/tcpcopy-lab, so that Cleanup can remove namespaces
// left behind by a process that died, and only those. Close is idempotent: it
// stops every process started through the topology and deletes the
// namespaces. NewForTest wires that to testing.TB.Cleanup and to SIGINT and
// SIGTERM.
//
// Offloads stay at the veth defaults (TSO/GSO on), so captures in the lab see
// the same super-packets real NICs produce. Options.GRO additionally turns on
// GRO on the receiving veths when ethtool is installed. The exceptions are
// the interfaces that send with random loss (Options.LossCopy,
// LossResponse): TSO and GSO are off there, so that a dropped packet is one
// frame (see stack.go).
//
// Options can also change the client's TCP stack (ClientSysctls, ClientMSS),
// the client link's MTU (ClientMTU, both ends), the target's MTU (TargetMTU,
// the target's interfaces only, so that online sends frames the target
// drops without ICMP) and drop TCP frames at random on the copy path
// (online to-target) and the response path (target to-assistant) with
// nftables. They are applied while the topology is built, before New
// returns.
//
// Building a topology takes about 0.1 s (about 1 s without the explicit
// interface indexes, see build). Build one per test: reusing one carries
// TIME_WAIT state between runs (pitfalls.md, "The lab").
//
// The package is Linux-only and needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN).
// A Topology is safe for concurrent use.
package netlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Namespace roles. Methods that take a namespace accept a role or the full
// namespace name (Topology.Client.Name, ...).
const (
	Client    = "client"
	Online    = "online"
	Target    = "target"
	Assistant = "assistant"
)

// Interface names. Each interface is named after the namespace at its other end.
const (
	IfToClient    = "to-client"
	IfToOnline    = "to-online"
	IfToTarget    = "to-target"
	IfToAssistant = "to-assistant"
)

// DefaultPrefix is the namespace name prefix used when Options.Prefix is empty.
const DefaultPrefix = "tcg"

// MaxExtraClients is the largest Options.ExtraClients: 192.0.2.11 to
// 192.0.2.254.
const MaxExtraClients = 244

// Client address ranges: the target routes them to the assistant.
var (
	ClientPrefix4 = netip.MustParsePrefix("192.0.2.0/24")
	ClientPrefix6 = netip.MustParsePrefix("2001:db8:1::/64")
)

var (
	errNotRoot = errors.New("netlab: needs root (builds network namespaces)")
	errClosed  = errors.New("netlab: topology closed")
	errUnknown = errors.New("netlab: unknown namespace")
)

// Options configures New.
type Options struct {
	// ExtraClients adds that many client addresses after 192.0.2.10:
	// 192.0.2.11, 192.0.2.12, ... and 2001:db8:1::11, 2001:db8:1::12, ...
	// (hexadecimal), at most MaxExtraClients.
	ExtraClients int
	// Prefix starts every namespace name; DefaultPrefix when empty. It must
	// be short and made of [a-z0-9].
	Prefix string
	// Dir receives the stdout and stderr files of started processes. When
	// empty, New creates a temporary directory and leaves it in place after
	// Close, so logs stay readable.
	Dir string
	// GRO enables generic receive offload on the veths that receive the
	// client's traffic (online to-client), the copies (target to-online) and
	// the responses (assistant to-target) when ethtool is installed.
	// Topology.GRO says whether it was done.
	GRO bool
	// StopGrace is how long Proc.Stop waits after SIGTERM before SIGKILL;
	// 3 s when zero.
	StopGrace time.Duration

	// ClientSysctls are "key=value" sysctls applied in the client
	// namespace, in order (a later one wins), once the links are up: for
	// example "net.ipv4.tcp_timestamps=0", "net.ipv4.tcp_sack=0",
	// "net.ipv4.tcp_window_scaling=0", "net.ipv4.tcp_ecn=1". Keys are made
	// of [a-z0-9._-] (ValidSysctl).
	ClientSysctls []string
	// ClientMSS, when not 0, makes the client advertise and send TCP
	// segments of at most ClientMSS bytes toward online: its connected
	// routes get "mtu lock MSS+40 advmss MSS" (IPv4) and, only when MSS+60
	// is at least IPv6MinMTU, "mtu lock MSS+60 advmss MSS" (IPv6; below
	// that the IPv6 route is left alone, Topology.ClientMSS6 is 0). At
	// least MinMSS and at most the client link MTU less 40.
	ClientMSS int
	// ClientMTU, when not 0, is the MTU of both ends of the client-online
	// link (for example 9000, a jumbo-frame client while online-target
	// stays at 1500), MinMTU..MaxMTU. Below IPv6MinMTU the kernel removes
	// IPv6 from the link.
	ClientMTU int
	// TargetMTU, when not 0, is the MTU of the target's interfaces only
	// (to-online and to-assistant), MinMTU..MaxMTU; online's to-target
	// stays at 1500, so frames above TargetMTU (plus the veth's 4-byte
	// slack) from online are dropped at the target without ICMP: a path
	// MTU smaller than online's. Below IPv6MinMTU the target has no IPv6.
	TargetMTU int
	// LossCopy and LossResponse are the percentages (0..100, resolution
	// 0.01) of TCP frames dropped at random on the copy path (egress of
	// online's to-target) and on the response path (egress of the target's
	// to-assistant). 0 adds no rule. Needs nft and ethtool; see
	// Topology.LossDrops.
	LossCopy, LossResponse float64
}

// ClientNS describes the client namespace.
type ClientNS struct {
	Name     string     // namespace name
	OnlineIf string     // IfToOnline
	V4       netip.Addr // 192.0.2.10
	V6       netip.Addr // 2001:db8:1::10
	// Extra4 and Extra6 are Options.ExtraClients more addresses on OnlineIf.
	Extra4, Extra6 []netip.Addr
}

// OnlineNS describes the online namespace, where the real server and tcpcopy run.
type OnlineNS struct {
	Name                     string
	ClientIf                 string     // IfToClient
	TargetIf                 string     // IfToTarget
	AssistantIf              string     // IfToAssistant
	ClientV4, ClientV6       netip.Addr // 192.0.2.1, 2001:db8:1::1 (on ClientIf)
	TargetV4, TargetV6       netip.Addr // 198.51.100.1, 2001:db8:2::1 (on TargetIf)
	AssistantV4, AssistantV6 netip.Addr // 198.51.100.129, 2001:db8:4::1 (on AssistantIf)
}

// TargetNS describes the target namespace, the server under test.
type TargetNS struct {
	Name                     string
	OnlineIf                 string     // IfToOnline
	AssistantIf              string     // IfToAssistant
	OnlineV4, OnlineV6       netip.Addr // 198.51.100.2, 2001:db8:2::2 (on OnlineIf)
	AssistantV4, AssistantV6 netip.Addr // 203.0.113.2, 2001:db8:3::2 (on AssistantIf)
}

// AssistantNS describes the assistant namespace, where intercept runs.
type AssistantNS struct {
	Name               string
	OnlineIf           string     // IfToOnline
	TargetIf           string     // IfToTarget
	OnlineV4, OnlineV6 netip.Addr // 198.51.100.130, 2001:db8:4::2 (on OnlineIf)
	TargetV4, TargetV6 netip.Addr // 203.0.113.3, 2001:db8:3::3 (on TargetIf)
}

// Topology is a built lab. Fields are read-only after New.
type Topology struct {
	ID        string // "<prefix>-<6 hex>", the common start of the namespace names
	Dir       string // where process output goes
	Client    ClientNS
	Online    OnlineNS
	Target    TargetNS
	Assistant AssistantNS
	GRO       bool // GRO was enabled with ethtool

	// The client stack, link MTUs and loss as applied (Options).
	ClientSysctls []string
	ClientMSS     int // IPv4 MSS of the client's routes to online; 0: unchanged
	ClientMSS6    int // IPv6 MSS of those routes; 0: unchanged
	ClientMTU     int // 0: the veth default, 1500
	TargetMTU     int // 0: the veth default, 1500
	LossCopy      float64
	LossResponse  float64

	grace     time.Duration
	ownerPath string
	life      context.Context // canceled by Close; bounds Command
	endLife   context.CancelFunc

	mu      sync.Mutex
	procs   map[*Proc]struct{}
	seq     int
	closing bool

	closeOnce sync.Once
	closeErr  error
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// New builds a fresh topology. On error nothing is left behind. ctx bounds
// the build only, not the topology's lifetime: call Close.
func New(ctx context.Context, opts Options) (*Topology, error) {
	if os.Geteuid() != 0 {
		return nil, errNotRoot
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("netlab: iproute2 is needed: %w", err)
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if err := opts.checkTools(); err != nil {
		return nil, err
	}
	prefix := opts.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("netlab: random id: %w", err)
	}
	id := prefix + "-" + hex.EncodeToString(rnd[:])

	t := &Topology{
		ID:    id,
		grace: opts.StopGrace,
		procs: make(map[*Proc]struct{}),
		Client: ClientNS{
			Name: id + "-" + Client, OnlineIf: IfToOnline,
			V4: addr("192.0.2.10"), V6: addr("2001:db8:1::10"),
		},
		Online: OnlineNS{
			Name: id + "-" + Online, ClientIf: IfToClient, TargetIf: IfToTarget, AssistantIf: IfToAssistant,
			ClientV4: addr("192.0.2.1"), ClientV6: addr("2001:db8:1::1"),
			TargetV4: addr("198.51.100.1"), TargetV6: addr("2001:db8:2::1"),
			AssistantV4: addr("198.51.100.129"), AssistantV6: addr("2001:db8:4::1"),
		},
		Target: TargetNS{
			Name: id + "-" + Target, OnlineIf: IfToOnline, AssistantIf: IfToAssistant,
			OnlineV4: addr("198.51.100.2"), OnlineV6: addr("2001:db8:2::2"),
			AssistantV4: addr("203.0.113.2"), AssistantV6: addr("2001:db8:3::2"),
		},
		Assistant: AssistantNS{
			Name: id + "-" + Assistant, OnlineIf: IfToOnline, TargetIf: IfToTarget,
			OnlineV4: addr("198.51.100.130"), OnlineV6: addr("2001:db8:4::2"),
			TargetV4: addr("203.0.113.3"), TargetV6: addr("2001:db8:3::3"),
		},
	}
	if t.grace <= 0 {
		t.grace = 3 * time.Second
	}
	for i := range opts.ExtraClients {
		a4 := t.Client.V4.As4()
		a4[3] += byte(i + 1)
		t.Client.Extra4 = append(t.Client.Extra4, netip.AddrFrom4(a4))
		a16 := t.Client.V6.As16()
		a16[15] += byte(i + 1)
		t.Client.Extra6 = append(t.Client.Extra6, netip.AddrFrom16(a16))
	}
	t.life, t.endLife = context.WithCancel(context.Background())

	if opts.Dir != "" {
		if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("netlab: %w", err)
		}
		t.Dir = opts.Dir
	} else {
		dir, err := os.MkdirTemp("", id+"-")
		if err != nil {
			return nil, fmt.Errorf("netlab: %w", err)
		}
		t.Dir = dir
	}

	// The owner file comes first: a namespace matching our pattern without
	// an owner file is never ours to delete.
	ownerPath, err := writeOwner(id, t.namespaces())
	if err != nil {
		return nil, err
	}
	t.ownerPath = ownerPath
	register(t)
	if err := t.build(ctx, opts); err != nil {
		if cerr := t.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, err
	}
	return t, nil
}

func validPrefix(p string) bool {
	if len(p) == 0 || len(p) > 16 {
		return false
	}
	for _, c := range p {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// namespaces returns the namespace names in creation order.
func (t *Topology) namespaces() []string {
	return []string{t.Client.Name, t.Online.Name, t.Target.Name, t.Assistant.Name}
}

// NS resolves a role or a namespace name of this topology to the namespace
// name.
func (t *Topology) NS(ns string) (string, error) {
	switch ns {
	case Client, t.Client.Name:
		return t.Client.Name, nil
	case Online, t.Online.Name:
		return t.Online.Name, nil
	case Target, t.Target.Name:
		return t.Target.Name, nil
	case Assistant, t.Assistant.Name:
		return t.Assistant.Name, nil
	}
	return "", fmt.Errorf("%w %q", errUnknown, ns)
}

func (t *Topology) build(ctx context.Context, opts Options) error {
	c, o, tg, a := t.Client.Name, t.Online.Name, t.Target.Name, t.Assistant.Name
	type step struct {
		args  []string
		stdin string
	}
	var steps []step
	add := func(args ...string) { steps = append(steps, step{args: args}) }
	for _, ns := range t.namespaces() {
		add("ip", "netns", "add", ns)
	}
	for _, ns := range t.namespaces() {
		// Before any link exists, so every interface inherits "default":
		// no DAD, no router solicitations (quiet captures), no forwarding.
		add("ip", "netns", "exec", ns, "sysctl", "-q", "-w",
			"net.ipv4.ip_forward=0",
			"net.ipv6.conf.all.forwarding=0",
			"net.ipv6.conf.default.forwarding=0",
			"net.ipv6.conf.all.accept_dad=0",
			"net.ipv6.conf.default.accept_dad=0",
			"net.ipv6.conf.default.accept_ra=0",
			"net.ipv6.conf.default.router_solicitations=0",
		)
	}
	// Explicit, distinct interface indexes: a veth whose index equals its
	// peer's (both are 2 in fresh namespaces) gets its carrier change
	// handled as a non-urgent link-watch event, up to a second later; until
	// then it drops what it sends (see waitUp).
	veth := func(ns, name string, index int, peerNS, peer string) {
		add("ip", "-n", ns, "link", "add", name, "index", strconv.Itoa(index), "type", "veth",
			"peer", "name", peer, "index", strconv.Itoa(index+1), "netns", peerNS)
	}
	veth(c, IfToOnline, 10, o, IfToClient)
	veth(o, IfToTarget, 20, tg, IfToOnline)
	veth(o, IfToAssistant, 30, a, IfToOnline)
	veth(tg, IfToAssistant, 40, a, IfToTarget)

	addAddr := func(ns, dev string, a netip.Addr, bits int) {
		args := []string{"ip", "-n", ns, "addr", "add", netip.PrefixFrom(a, bits).String(), "dev", dev}
		if a.Is6() {
			args = append(args, "nodad")
		}
		add(args...)
	}
	// The first IPv4 address of a subnet is the primary one, the default
	// source; IPv6 prefers the address added last. Either way 192.0.2.10 and
	// 2001:db8:1::10 are the client's default sources, the extras are used
	// when bound explicitly.
	addAddr(c, IfToOnline, t.Client.V4, 24)
	if len(t.Client.Extra4) > 0 {
		// One ip process for all extra addresses instead of 2N.
		var batch strings.Builder
		for i := range t.Client.Extra4 {
			fmt.Fprintf(&batch, "addr add %s dev %s\n", netip.PrefixFrom(t.Client.Extra4[i], 24), IfToOnline)
			fmt.Fprintf(&batch, "addr add %s dev %s nodad\n", netip.PrefixFrom(t.Client.Extra6[i], 64), IfToOnline)
		}
		steps = append(steps, step{args: []string{"ip", "-n", c, "-batch", "-"}, stdin: batch.String()})
	}
	addAddr(c, IfToOnline, t.Client.V6, 64)
	addAddr(o, IfToClient, t.Online.ClientV4, 24)
	addAddr(o, IfToClient, t.Online.ClientV6, 64)
	addAddr(o, IfToTarget, t.Online.TargetV4, 25)
	addAddr(o, IfToTarget, t.Online.TargetV6, 64)
	addAddr(o, IfToAssistant, t.Online.AssistantV4, 25)
	addAddr(o, IfToAssistant, t.Online.AssistantV6, 64)
	addAddr(tg, IfToOnline, t.Target.OnlineV4, 25)
	addAddr(tg, IfToOnline, t.Target.OnlineV6, 64)
	addAddr(tg, IfToAssistant, t.Target.AssistantV4, 24)
	addAddr(tg, IfToAssistant, t.Target.AssistantV6, 64)
	addAddr(a, IfToOnline, t.Assistant.OnlineV4, 25)
	addAddr(a, IfToOnline, t.Assistant.OnlineV6, 64)
	addAddr(a, IfToTarget, t.Assistant.TargetV4, 24)
	addAddr(a, IfToTarget, t.Assistant.TargetV6, 64)

	// Copies arrive on to-online with client sources while the route back
	// to the clients leaves by to-assistant: strict or loose reverse path
	// filtering would drop them. The effective value is max(all, dev).
	add("ip", "netns", "exec", tg, "sysctl", "-q", "-w",
		"net.ipv4.conf.all.rp_filter=0",
		"net.ipv4.conf.default.rp_filter=0",
		"net.ipv4.conf."+IfToOnline+".rp_filter=0",
		"net.ipv4.conf."+IfToAssistant+".rp_filter=0",
	)

	up := map[string][]string{
		c:  {"lo", IfToOnline},
		o:  {"lo", IfToClient, IfToTarget, IfToAssistant},
		tg: {"lo", IfToOnline, IfToAssistant},
		a:  {"lo", IfToOnline, IfToTarget},
	}
	for _, ns := range t.namespaces() {
		for _, dev := range up[ns] {
			add("ip", "-n", ns, "link", "set", dev, "up")
		}
	}
	add("ip", "-n", tg, "route", "add", ClientPrefix4.String(), "via", t.Assistant.TargetV4.String(), "dev", IfToAssistant)
	add("ip", "-n", tg, "-6", "route", "add", ClientPrefix6.String(), "via", t.Assistant.TargetV6.String(), "dev", IfToAssistant)
	for _, s := range t.mtuSteps(opts) {
		add(s...)
	}

	for _, s := range steps {
		var stdin *bytes.Buffer
		if s.stdin != "" {
			stdin = bytes.NewBufferString(s.stdin)
		}
		if _, err := runCmd(ctx, stdin, s.args[0], s.args[1:]...); err != nil {
			return err
		}
	}
	if err := t.waitUp(ctx, up); err != nil {
		return err
	}

	if opts.GRO {
		if _, err := exec.LookPath("ethtool"); err == nil {
			for _, nd := range [][2]string{{o, IfToClient}, {tg, IfToOnline}, {a, IfToTarget}} {
				if _, err := runCmd(ctx, nil, "ip", "netns", "exec", nd[0], "ethtool", "-K", nd[1], "gro", "on"); err != nil {
					return err
				}
			}
			t.GRO = true
		}
	}
	return t.applyStack(ctx, opts)
}

// waitUp waits until every veth has operational state UP. The kernel
// attaches the queueing discipline and sets the operational state from its
// link-watch work, which runs after "link set up", up to a second later
// for non-urgent events; until then the device silently drops what it is
// given to send. A lost first neighbour solicitation costs a 1 s
// retransmission, a lost SYN too.
func (t *Topology) waitUp(ctx context.Context, up map[string][]string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, ns := range t.namespaces() {
		for {
			out, err := runCmd(ctx, nil, "ip", "-n", ns, "-o", "link", "show", "type", "veth")
			if err != nil {
				return err
			}
			n := 0
			for line := range strings.Lines(string(out)) {
				if strings.Contains(line, " state UP ") {
					n++
				}
			}
			if n == len(up[ns])-1 { // every veth (all but lo)
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("netlab: links of %s not up: %w: %s", ns, ctx.Err(), out)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil
}

// runCmd runs a short command to completion. Errors name the command and
// carry its stderr.
func runCmd(ctx context.Context, stdin *bytes.Buffer, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return stdout.Bytes(), fmt.Errorf("netlab: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// Close stops every process started through the topology (SIGTERM, then
// SIGKILL after the grace period), cancels commands made by Command, and
// deletes the namespaces. It is idempotent and safe to call concurrently;
// later calls return the first call's result. Dir is left in place.
func (t *Topology) Close() error {
	t.closeOnce.Do(func() { t.closeErr = t.close() })
	return t.closeErr
}

func (t *Topology) close() error {
	t.mu.Lock()
	t.closing = true
	procs := make([]*Proc, 0, len(t.procs))
	for p := range t.procs {
		procs = append(procs, p)
	}
	t.mu.Unlock()
	t.endLife()

	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() { _ = p.Stop() })
	}
	wg.Wait()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Commands made by Command got SIGTERM from the canceled life context;
	// give them a moment to leave so the namespaces really go away.
	deadline := time.Now().Add(t.grace)
	for _, ns := range t.namespaces() {
		for nsExists(ns) && time.Now().Before(deadline) {
			out, err := runCmd(ctx, nil, "ip", "netns", "pids", ns)
			if err != nil || len(bytes.TrimSpace(out)) == 0 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	var errs []error
	for i := len(t.namespaces()) - 1; i >= 0; i-- {
		ns := t.namespaces()[i]
		if !nsExists(ns) {
			continue
		}
		if _, err := runCmd(ctx, nil, "ip", "netns", "del", ns); err != nil && nsExists(ns) {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 && t.ownerPath != "" {
		if err := os.Remove(t.ownerPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("netlab: %w", err))
		}
	}
	unregister(t)
	return errors.Join(errs...)
}

// Closed reports whether Close has been called.
func (t *Topology) Closed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closing
}
