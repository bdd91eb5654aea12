package labrun

import (
	"fmt"
	"slices"
	"strings"
)

// ClientStack is a named kind of client: TCP stack settings of the client
// namespace, link MTUs, and how the load client sends. The lab's plain
// Linux client is the easy case for a copier (pitfalls.md, "Real clients
// and real networks"); each row of ClientStacks reproduces one way real
// clients differ from it.
type ClientStack struct {
	Name string // short, lowercase: the --client-stack value
	Doc  string // what it emulates and why it matters to a copier

	Sysctls   []string // Config.ClientSysctls
	MSS       int      // Config.ClientMSS; 0 leaves it
	ClientMTU int      // Config.ClientMTU; 0 leaves it
	TargetMTU int      // Config.TargetMTU; 0 leaves it
	DataOnAck bool     // Config.Load.DataOnAck
}

// Apply sets the stack on c: c.ClientStack becomes s.Name, the stack's
// sysctls are appended to c.ClientSysctls (applied in order, so the
// stack's win over earlier ones), and every other setting the stack makes
// (non-zero, true) replaces c's. Settings the stack does not make are
// left as they are, so apply explicit settings after Apply to override it.
func (s ClientStack) Apply(c *Config) {
	c.ClientStack = s.Name
	c.ClientSysctls = append(slices.Clip(c.ClientSysctls), s.Sysctls...)
	if s.MSS != 0 {
		c.ClientMSS = s.MSS
	}
	if s.ClientMTU != 0 {
		c.ClientMTU = s.ClientMTU
	}
	if s.TargetMTU != 0 {
		c.TargetMTU = s.TargetMTU
	}
	if s.DataOnAck {
		c.Load.DataOnAck = true
	}
}

// ClientStacks are the client kinds the lab reproduces; the first, linux,
// is the default and changes nothing. Tests and the bench run each of them
// and expect every request copied.
var ClientStacks = []ClientStack{
	{Name: "linux", Doc: "the lab's Linux client: timestamps, SACK and window scaling on, MSS 1460 " +
		"(1448 bytes of payload per full segment with the 12-byte timestamp option)"},
	{Name: "no-timestamps", Sysctls: []string{"net.ipv4.tcp_timestamps=0"},
		Doc: "no TCP timestamps, Windows' default: full segments carry 1460 bytes, so a copy that adds " +
			"a 12-byte timestamp option is 1512 bytes, above the MTU, and never arrives; " +
			"the copier cannot take RTT or PAWS from the client's segments"},
	{Name: "no-sack", Sysctls: []string{"net.ipv4.tcp_sack=0"},
		Doc: "no selective acknowledgements (old stacks, middleboxes that strip the option): " +
			"no SACK-permitted option in the SYN, so the target's connection with the copy has no SACK " +
			"either, and recovery from a lost copy relies on cumulative ACKs and retransmission timeouts"},
	{Name: "no-wscale", Sysctls: []string{"net.ipv4.tcp_window_scaling=0"},
		Doc: "no window scaling (old or embedded stacks): windows of at most 64 KiB, " +
			"taken literally; a copier that assumes a scale factor misreads every window"},
	{Name: "mss536", MSS: 536,
		Doc: "MSS 536, the IPv4 default MSS (RFC 1122) of old, embedded and some tunnelled clients: " +
			"every body spans many small segments, in both directions (IPv6 keeps 1440: 596 is below its minimum MTU)"},
	{Name: "mss1200", MSS: 1200,
		Doc: "MSS 1200, usual behind VPNs, PPPoE and mobile tunnels: segments smaller than the copy " +
			"path's, in both directions (IPv6 keeps 1440: 1260 is below its minimum MTU)"},
	{Name: "jumbo-client", ClientMTU: 9000,
		Doc: "a client on a 9000-byte jumbo-frame link while online to target stays at 1500: " +
			"the client's segments carry up to 8948 bytes and a copy must split them to the copy path's MTU"},
	{Name: "target-mtu1400", TargetMTU: 1400,
		Doc: "the target's interfaces at MTU 1400 while online sends at 1500, with no ICMP: " +
			"a copy of a full client segment is dropped silently; the copier must respect the MSS the target's SYN-ACK announces"},
	{Name: "ecn", Sysctls: []string{"net.ipv4.tcp_ecn=1"},
		Doc: "explicit congestion notification requested by the client (Linux by default only accepts it " +
			"when asked): the SYN carries ECE and CWR, data packets carry the ECT code point in the IP header, " +
			"and the target's SYN-ACK answers with ECE"},
	{Name: "data-on-ack", DataOnAck: true,
		Doc: "the request rides on the ACK that completes the handshake, with no pure ACK before it " +
			"(TCP_DEFER_ACCEPT on the client socket): the copier sees data where it may expect a bare ACK"},
}

// ClientStackByName returns the stack of ClientStacks named name.
func ClientStackByName(name string) (ClientStack, error) {
	for _, s := range ClientStacks {
		if s.Name == name {
			return s, nil
		}
	}
	var names []string
	for _, s := range ClientStacks {
		names = append(names, s.Name)
	}
	return ClientStack{}, fmt.Errorf("unknown client stack %q (known: %s)", name, strings.Join(names, ", "))
}

// LossLevel is a named pair of random loss rates, in percent of the TCP
// frames: on the copy path (online to target) and on the response path
// (target to assistant, where intercept captures).
type LossLevel struct {
	Name           string
	Copy, Response float64
}

// Apply sets the level's loss rates on c.
func (l LossLevel) Apply(c *Config) { c.LossCopy, c.LossResponse = l.Copy, l.Response }

// LossLevels are the loss rates the tests and the bench try, with short
// and keep-alive connections of the default client.
var LossLevels = []LossLevel{
	{Name: "loss-1-1", Copy: 1, Response: 1},
	{Name: "loss-2-2", Copy: 2, Response: 2},
	{Name: "loss-5-0", Copy: 5, Response: 0},
	{Name: "loss-0-5", Copy: 0, Response: 5},
}

// LossLevelByName returns the level of LossLevels named name.
func LossLevelByName(name string) (LossLevel, error) {
	for _, l := range LossLevels {
		if l.Name == name {
			return l, nil
		}
	}
	var names []string
	for _, l := range LossLevels {
		names = append(names, l.Name)
	}
	return LossLevel{}, fmt.Errorf("unknown loss level %q (known: %s)", name, strings.Join(names, ", "))
}
