package tcpcopy

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/cliutil"
	"github.com/tcpcopy-go/tcpcopy/internal/secret"
	"github.com/tcpcopy-go/tcpcopy/pkg/compare"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

// Limits of the option values, checked by Validate. Where C TCPCopy stored
// a value in a bit-field and truncated it silently (tcpcopy.h), we reject
// what does not fit instead.
const (
	maxIntercepts  = 64          // -s; C MAX_REAL_SERVERS is 32
	maxConns       = 16          // -C; C clamps to 1..11 (MAX_CONN_NUM)
	maxClientPool  = 4096        // -c, after a.b.c.x expansion (C M_IP_NUM)
	maxCopies      = 1023        // -n; C 10-bit field
	maxPortShift   = 31          // -f; C adds f<<11 to a 16-bit port: 32 and up wrap
	maxInterfaces  = 32          // -i; C limit
	maxFilterLen   = 4096        // -F; C limit
	minMemoryMB    = 64          // -m
	maxMemoryMB    = 1 << 20     // -m (1 TiB)
	minMTU         = 576         // -M; RFC 791 minimum datagram every host accepts
	minMTU6        = 1280        // -M with an IPv6 mapping (RFC 8200 section 5)
	maxMTU         = 65535       // -M; C overflowed its bitmap from 2048 on
	minMSS         = 88          // -D; Linux TCP_MIN_MSS
	maxMSS         = 65495       // -D; 65535 - 40
	maxRTTms       = 60000       // -R
	minStatsEvery  = time.Second // --stats-interval, unless 0
	maxStatsEvery  = 24 * time.Hour
	maxTimeoutSec  = 604800 // -t, -k: one week
	minAccel       = 0.01   // -a
	maxAccel       = 1000   // -a
	maxIdleSkipMS  = 86400000
	maxRepeat      = 1000000                // -T
	maxBufferMB    = 4096                   // -B
	minSnapLen     = 128                    // -S
	maxSnapLen     = 262144                 // -S; libpcap MAXIMUM_SNAPLEN
	maxWorkers     = 256                    // --workers
	maxAckDelay    = 500 * time.Millisecond // --ack-delay (RFC 9293's limit)
	minStall       = time.Second            // --stall-timeout
	maxStall       = time.Hour
	maxCaptureWait = time.Second // --capture-timeout
	defaultMTU     = 1500        // C DEFAULT_MTU
	defaultMSS     = 1460        // C DEFAULT_MSS
	defaultTimeout = 600 * time.Second
	keepaliveExtra = 120 * time.Second // C: -k defaults to -t + 120 s
)

// ipv4Broadcast is the limited broadcast address, never a host.
var ipv4Broadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// Protocol is the transport a mapping copies.
type Protocol uint8

// Protocols of a mapping. TCP is the zero value: C TCPCopy's command
// lines, which name no protocol, copy TCP.
const (
	ProtoTCP Protocol = iota
	ProtoUDP          // C TCPCopy's --udp build, as a prefix of the mapping: udp:53-...
)

// String returns "tcp" or "udp".
func (p Protocol) String() string {
	if p == ProtoUDP {
		return "udp"
	}
	return "tcp"
}

// Mapping is one -x item: copy the traffic sent to Online to Target.
//
// C TCPCopy writes it [srcIP:]srcPort-targetIP:targetPort, and with -o
// (C --pcap-send) [srcIP:]srcPort@srcMAC-targetIP:targetPort@nextHopMAC.
// We also accept IPv6, written [addr]:port, and a protocol prefix, tcp:
// (the default) or udp: (C TCPCopy needed its --udp build, which copied
// UDP only). Both sides of a mapping are of one address family: packets
// are rewritten, not translated.
type Mapping struct {
	// Proto is the transport copied: TCP (sessions, through intercept)
	// or UDP (datagram by datagram, no intercept; udp.go).
	Proto Protocol
	// Online is the address the clients talk to. An invalid (zero) Addr
	// means any local address on Online.Port() (C "set global port"),
	// of the family of Target.
	Online netip.AddrPort
	// Target is where the copies go.
	Target netip.AddrPort
	// OnlineMAC is the source MAC of the frames sent with -o, TargetMAC
	// their destination (the target or the next hop to it). Both are set
	// exactly when the configuration has an output device.
	OnlineMAC, TargetMAC net.HardwareAddr
}

// Is6 reports whether the mapping copies IPv6 traffic.
func (m Mapping) Is6() bool { return m.Target.Addr().Is6() }

// String returns the mapping in the -x syntax; ParseMapping reads it back
// to an equal Mapping.
func (m Mapping) String() string {
	var b strings.Builder
	if m.Proto == ProtoUDP {
		b.WriteString("udp:")
	}
	if m.Online.Addr().IsValid() {
		b.WriteString(m.Online.String())
	} else {
		b.WriteString(strconv.Itoa(int(m.Online.Port())))
	}
	if m.OnlineMAC != nil {
		b.WriteString("@" + m.OnlineMAC.String())
	}
	b.WriteString("-" + m.Target.String())
	if m.TargetMAC != nil {
		b.WriteString("@" + m.TargetMAC.String())
	}
	return b.String()
}

// check reports what is wrong with a mapping, whichever way it was built.
func (m Mapping) check() error {
	t := m.Target.Addr()
	switch {
	case !t.IsValid():
		return errors.New("no target address")
	case m.Target.Port() == 0 || m.Online.Port() == 0:
		return errors.New("port 0 is not a port")
	case t.Zone() != "" || m.Online.Addr().Zone() != "":
		return errors.New("IPv6 zones are not supported")
	case t.Is4In6() || m.Online.Addr().Is4In6():
		return errors.New("write IPv4 addresses as a.b.c.d, not ::ffff:a.b.c.d")
	case t.IsUnspecified() || t.IsMulticast() || t == ipv4Broadcast:
		return fmt.Errorf("target %s is not a host address", t)
	case t.IsLoopback():
		// C has a "target_localhost" mode for 127.0.0.1; we don't: the
		// target's answers to a loopback client never leave the host, so
		// intercept only sees them with hand-made iptables rules, and a
		// copy from a non-loopback client to a loopback target is a martian.
		return fmt.Errorf("target %s is a loopback address: copies must go to another address (C target_localhost mode is not supported)", t)
	}
	if o := m.Online.Addr(); o.IsValid() {
		switch {
		case o.Is4() != t.Is4():
			return errors.New("online and target addresses must be of one family (both IPv4 or both IPv6)")
		case o.IsUnspecified() || o.IsMulticast():
			return fmt.Errorf("online address %s is not a host address (write just the port for any address)", o)
		case m.Online == m.Target:
			return errors.New("online and target are the same address: the copies would be copied again")
		}
	}
	if (m.OnlineMAC == nil) != (m.TargetMAC == nil) {
		return errors.New("give both MAC addresses or none")
	}
	for _, mac := range []net.HardwareAddr{m.OnlineMAC, m.TargetMAC} {
		if mac != nil && len(mac) != 6 {
			return fmt.Errorf("%s is not an Ethernet address", mac)
		}
	}
	return nil
}

// ParseMapping parses one -x item. withMAC says an output device (-o) is
// set: then both "@mac" parts are required, otherwise they are an error.
func ParseMapping(s string, withMAC bool) (Mapping, error) {
	s = strings.TrimSpace(s)
	m, err := parseMapping(s, withMAC)
	if err != nil {
		return Mapping{}, fmt.Errorf("option -x: %q: %w", s, err)
	}
	return m, nil
}

func parseMapping(s string, withMAC bool) (Mapping, error) {
	var m Mapping
	if rest, ok := cutPrefixFold(s, "udp:"); ok {
		m.Proto, s = ProtoUDP, rest
	} else if rest, ok := cutPrefixFold(s, "tcp:"); ok {
		s = rest
	}
	if p, _, ok := strings.Cut(s, ":"); ok && looksLikeProtocol(p) {
		if strings.EqualFold(p, "tcp") || strings.EqualFold(p, "udp") {
			return m, errors.New("the protocol is named twice")
		}
		return m, fmt.Errorf("protocol %q is not tcp or udp", p)
	}
	online, target, ok := strings.Cut(s, "-")
	if !ok || strings.Contains(target, "-") {
		return m, errors.New("want [srcIP:]srcPort-targetIP:targetPort")
	}
	online, onlineMAC, hasOnlineMAC := strings.Cut(online, "@")
	target, targetMAC, hasTargetMAC := strings.Cut(target, "@")
	switch {
	case !withMAC && (hasOnlineMAC || hasTargetMAC):
		return m, errors.New("the @mac forms need an output device (-o)")
	case withMAC && !(hasOnlineMAC && hasTargetMAC):
		return m, errors.New("with -o write [srcIP:]srcPort@srcMAC-targetIP:targetPort@nextHopMAC")
	}
	var err error
	if withMAC {
		if m.OnlineMAC, err = parseMAC(onlineMAC); err != nil {
			return m, err
		}
		if m.TargetMAC, err = parseMAC(targetMAC); err != nil {
			return m, err
		}
	}
	if decimalDigits(online) {
		port, err := parsePort(online)
		if err != nil {
			return m, err
		}
		m.Online = netip.AddrPortFrom(netip.Addr{}, port)
	} else {
		if m.Online, err = parseAddrPort(online, "online"); err != nil {
			return m, err
		}
		if m.Online.Addr().IsUnspecified() {
			// C reads 0.0.0.0 as "no address": any address on the port.
			m.Online = netip.AddrPortFrom(netip.Addr{}, m.Online.Port())
		}
	}
	if m.Target, err = parseAddrPort(target, "target"); err != nil {
		return m, err
	}
	return m, m.check()
}

// looksLikeProtocol reports whether s is a word that cannot start an
// address: letters only, one of them not a hexadecimal digit.
func looksLikeProtocol(s string) bool {
	nonHex := false
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20
		if c < 'a' || c > 'z' {
			return false
		}
		nonHex = nonHex || c > 'f'
	}
	return nonHex
}

// cutPrefixFold is strings.CutPrefix ignoring ASCII case.
func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// ParseMappings parses the comma-separated -x list. A mapping whose online
// side (address or port-only, per family and protocol) is listed twice is
// an error: C would silently use the first one.
func ParseMappings(s string, withMAC bool) ([]Mapping, error) {
	var out []Mapping
	for _, item := range cliutil.SplitList(s) {
		m, err := ParseMapping(item, withMAC)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	if err := checkDuplicateMappings(out); err != nil {
		return nil, err
	}
	return out, nil
}

func checkDuplicateMappings(ms []Mapping) error {
	type key struct {
		online netip.AddrPort
		is6    bool
		proto  Protocol
	}
	seen := make(map[key]bool, len(ms))
	for _, m := range ms {
		k := key{m.Online, m.Is6(), m.Proto}
		if seen[k] {
			return fmt.Errorf("option -x: online side of %q is listed twice", m.String())
		}
		seen[k] = true
	}
	return nil
}

// ParseIntercepts parses -s ip[:port][,...]: the intercepts to connect to.
// An entry without a port gets defPort (-p). IPv6 is written [addr]:port,
// or as a bare address without a port. Duplicates are an error.
func ParseIntercepts(s string, defPort uint16) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	seen := make(map[netip.AddrPort]bool)
	for _, item := range cliutil.SplitList(s) {
		ap, err := parseIntercept(item, defPort)
		if err != nil {
			return nil, fmt.Errorf("option -s: %q: %w", item, err)
		}
		if seen[ap] {
			return nil, fmt.Errorf("option -s: %s is listed twice", ap)
		}
		seen[ap] = true
		out = append(out, ap)
		if len(out) > maxIntercepts {
			return nil, fmt.Errorf("option -s: more than %d intercepts", maxIntercepts)
		}
	}
	return out, nil
}

func parseIntercept(s string, defPort uint16) (netip.AddrPort, error) {
	var ap netip.AddrPort
	bare := s
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		bare = s[1 : len(s)-1]
	}
	if a, err := netip.ParseAddr(bare); err == nil && !strings.ContainsAny(bare, "[]") {
		ap = netip.AddrPortFrom(a, defPort) // no port: ip, bare IPv6 or [ipv6]
	} else if ap, err = parseAddrPort(s, "intercept"); err != nil {
		return ap, err
	}
	a := ap.Addr().Unmap()
	if z := a.Zone(); z != "" && (len(z) > 15 || strings.ContainsAny(z, ":/[] ")) {
		return ap, fmt.Errorf("zone %q is not an interface name", z)
	}
	if a.IsUnspecified() || a.IsMulticast() || a == ipv4Broadcast {
		return ap, fmt.Errorf("%s is not a host address", a)
	}
	if ap.Port() == 0 {
		return ap, errors.New("port 0 is not a port")
	}
	return netip.AddrPortFrom(a, ap.Port()), nil
}

// ParseClientPool parses -c ip[,...]: the addresses copies use as their
// source instead of the client's. As in C TCPCopy, an IPv4 entry a.b.c.x
// stands for a.b.c.1 to a.b.c.254, "*" is refused, and addresses equal to
// one of targets are skipped. Duplicates are dropped, the order is kept,
// and more than 4096 addresses (C M_IP_NUM) is an error. IPv6 addresses
// are accepted one by one.
func ParseClientPool(s string, targets []netip.Addr) ([]netip.Addr, error) {
	items := cliutil.SplitList(s)
	var out []netip.Addr
	seen := make(map[netip.Addr]bool)
	add := func(a netip.Addr) error {
		if seen[a] {
			return nil
		}
		seen[a] = true
		for _, t := range targets {
			if t == a {
				return nil
			}
		}
		if len(out) == maxClientPool {
			return fmt.Errorf("option -c: more than %d addresses", maxClientPool)
		}
		out = append(out, a)
		return nil
	}
	for _, item := range items {
		if item == "*" {
			return nil, errors.New(`option -c: "*" is not supported: list addresses, or a.b.c.x for a.b.c.1-254`)
		}
		if base, ok := cutX(item); ok {
			if err := checkClientAddr(base.Next()); err != nil {
				return nil, fmt.Errorf("option -c: %q: %w", item, err)
			}
			for i := 1; i <= 254; i++ {
				b := base.As4()
				b[3] = byte(i)
				if err := add(netip.AddrFrom4(b)); err != nil {
					return nil, err
				}
			}
			continue
		}
		a, err := netip.ParseAddr(item)
		if err != nil {
			return nil, fmt.Errorf("option -c: %q is not an IP address or a.b.c.x", item)
		}
		a = a.Unmap()
		if err := checkClientAddr(a); err != nil {
			return nil, fmt.Errorf("option -c: %q: %w", item, err)
		}
		if err := add(a); err != nil {
			return nil, err
		}
	}
	if len(items) > 0 && len(out) == 0 {
		return nil, errors.New("option -c: every address is a target address")
	}
	return out, nil
}

// cutX recognises a.b.c.x and returns a.b.c.0.
func cutX(s string) (netip.Addr, bool) {
	prefix, ok := strings.CutSuffix(strings.ToLower(s), ".x")
	if !ok || strings.Count(prefix, ".") != 2 {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(prefix + ".0")
	if err != nil || !a.Is4() {
		return netip.Addr{}, false
	}
	return a, true
}

// checkClientAddr refuses addresses that cannot be a packet's source on
// the way to the target.
func checkClientAddr(a netip.Addr) error {
	switch {
	case a.Zone() != "":
		return errors.New("IPv6 zones are not supported")
	case a.IsUnspecified() || a.IsMulticast() || a == ipv4Broadcast || (a.Is4() && a.As4()[0] == 0):
		return errors.New("not a host address")
	case a.IsLoopback():
		return errors.New("a loopback address cannot be the source of a copy sent to another host")
	}
	return nil
}

// ParseInput reads the -i value. C TCPCopy had two builds: -i named
// capture devices in the pcap build and a pcap file in the offline build.
// We decide by the value: it names a file to replay when it contains a
// "/", names an existing file, or ends in .pcap, .pcapng, .cap or .gz
// (such a file must exist); otherwise it is a comma-separated list of
// interfaces, where "any" (alone) means every interface, as no -i does.
func ParseInput(s string) (ifaces []string, file string, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, "", nil
	}
	if !strings.Contains(s, ",") && looksLikeFile(s) {
		st, err := os.Stat(s)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, "", fmt.Errorf("option -i: offline file %q does not exist", s)
		case err != nil:
			return nil, "", fmt.Errorf("option -i: %w", err)
		case !st.Mode().IsRegular():
			return nil, "", fmt.Errorf("option -i: %q is not a regular file", s)
		}
		return nil, s, nil
	}
	for _, name := range cliutil.SplitList(s) {
		if looksLikeFile(name) {
			return nil, "", fmt.Errorf("option -i: %q: give one offline file, not mixed with interfaces", name)
		}
		if len(name) > 15 || strings.ContainsAny(name, " \t:") || name == "." || name == ".." {
			return nil, "", fmt.Errorf("option -i: %q is not an interface name", name)
		}
		for _, seen := range ifaces {
			if seen == name {
				return nil, "", fmt.Errorf("option -i: interface %q is listed twice", name)
			}
		}
		ifaces = append(ifaces, name)
	}
	for _, name := range ifaces {
		if name == "any" {
			if len(ifaces) > 1 {
				return nil, "", errors.New(`option -i: "any" means every interface; list no others with it`)
			}
			return nil, "", nil
		}
	}
	if len(ifaces) > maxInterfaces {
		return nil, "", fmt.Errorf("option -i: more than %d interfaces", maxInterfaces)
	}
	return ifaces, "", nil
}

// looksLikeFile applies the -i rule; interface names never contain "/".
func looksLikeFile(s string) bool {
	if strings.Contains(s, "/") {
		return true
	}
	if st, err := os.Stat(s); err == nil && !st.IsDir() {
		return true
	}
	low := strings.ToLower(s)
	for _, ext := range []string{".pcap", ".pcapng", ".cap", ".gz"} {
		if strings.HasSuffix(low, ext) {
			return true
		}
	}
	return false
}

// Config is tcpcopy's configuration, filled from the command line. The
// letter after each field is its C TCPCopy option.
type Config struct {
	// Mappings say what to copy where (-x, required). Order is kept:
	// where a mapping with an online address and a port-only one both
	// match a packet, C uses the first listed.
	Mappings []Mapping
	// Intercepts are the intercepts to connect to (-s, at most 64;
	// required with a TCP mapping; with UDP mappings they route the
	// target's answers, optional).
	Intercepts []netip.AddrPort
	// InterceptPort is the port of -s entries written without one (-p).
	InterceptPort uint16
	// ConnsPerIntercept is the number of connections to each intercept
	// (-C), 1..16. One (C TCPCopy: 2): a connection carries everything,
	// and each one more costs both ends a wake-up per batch of records.
	ConnsPerIntercept int
	// ClientPool, when not empty, replaces the client addresses of the
	// copies (-c), sticky per client address; at most 4096, none equal to
	// a target address. Each mapping's family has at least one address.
	ClientPool []netip.Addr
	// LocalhostAs replaces a loopback client address (127.0.0.0/8, ::1)
	// in copies (-H); zero: not set.
	LocalhostAs netip.Addr
	// Copies is how many times each session is replayed (-n), 1..1023;
	// copies after the first get other source ports, allocated so that
	// no two sessions share an endpoint (multiply.go).
	Copies int
	// PortShift shifts every copy's source port by PortShift<<11 (-f),
	// 0..31, so several tcpcopy instances do not collide. The shift is an
	// addition on the port number, modulo 2^16 (C forgot the byte swap).
	PortShift int
	// Percent of sessions copied (-r), 1..100. Validate turns C's 0
	// ("all") into 100.
	Percent int
	// Gradual ramps the copied share from 1 % to 100 % by 1 % a second
	// from the first captured packet (-g); Percent must be 100.
	Gradual bool
	// MemoryMB is the memory budget (-m): above it new sessions are not
	// copied (C exits instead).
	MemoryMB int
	// MTU is the largest packet sent to the target (-M), 576..65535
	// (1280.. with IPv6 mappings); longer captured packets are
	// re-segmented.
	MTU int
	// MSS is the MSS option of the SYNs tcpcopy makes up (-D),
	// 88..MTU-40. IPv6 sessions should use at most MTU-60.
	MSS int
	// FixedRTT replaces the measured RTT when not zero (-R, ms).
	FixedRTT time.Duration
	// SessionTimeout drops a session whose target has not answered for
	// this long while packets wait (-t, s).
	SessionTimeout time.Duration
	// KeepaliveTimeout drops a session idle for this long with nothing
	// pending (-k, s); C default SessionTimeout + 120 s.
	KeepaliveTimeout time.Duration
	// OnlyFullSessions copies only sessions whose SYN was captured (-O).
	OnlyFullSessions bool
	// NoWait sends requests without waiting for the target's response
	// (-W).
	NoWait bool
	// Lonely keeps tcpcopy running while no intercept is connected, and
	// reconnects (-L).
	Lonely bool
	// Interfaces to capture on (-i); empty means every interface. Empty
	// when OfflineFile is set.
	Interfaces []string
	// OfflineFile is a pcap or pcapng file to replay instead of live
	// capture (-i FILE, see ParseInput).
	OfflineFile string
	// Accel is the offline replay speed factor (-a), 0.01..1000.
	Accel float64
	// IdleSkip skips gaps between relevant packets of the offline file
	// longer than this (-I, ms); 0: off.
	IdleSkip time.Duration
	// Repeat is how many times the offline file is replayed (-T).
	Repeat int
	// Filter replaces the capture filter generated from Mappings (-F),
	// at most 4096 bytes.
	Filter string
	// BufferMB is the capture ring size of each live capture (-B).
	BufferMB int
	// SnapLen is the capture snap length, link-layer header included
	// (-S), 128..262144.
	SnapLen int
	// OutputIf sends copies as Ethernet frames on this device, bypassing
	// routing (-o, C --pcap-send); every mapping then has both MACs.
	OutputIf string
	// MetricsAddr is where /metrics is served; empty disables it.
	MetricsAddr string
	// StatsInterval is the period of the stats log line; 0 disables it.
	StatsInterval time.Duration
	// WireVersion is the intercept protocol version: 0 offers version 7
	// and falls back to 6 with a C intercept; 6 or 7 forces one.
	WireVersion int
	// Combined expects combined frames on version-6 links (C default;
	// false for a C intercept built with --disable-combined).
	Combined bool
	// RespPayload expects 192-byte version-6 records (C intercept built
	// with --with-resp-payload).
	RespPayload bool
	// Workers is the number of session workers, 1..256, and of the cores
	// tcpcopy runs on.
	Workers int
	// AckDelay delays the acknowledgements of the target's answers so that
	// the client's next packet carries them (--ack-delay, 0..500 ms; 0
	// acknowledges at once).
	AckDelay time.Duration
	// CompareBytes turns the response comparison on (compare.md): the
	// first CompareBytes bytes of each response are kept verbatim on both
	// sides (--compare-bytes, 0..16384; 0 off).
	CompareBytes int
	// CompareIgnore are headers not compared, besides the defaults
	// (--compare-ignore-header).
	CompareIgnore []string
	// CompareMasks are regular expressions whose matches in bodies are
	// not compared (--compare-mask); Validate compiles them into
	// compareMasks.
	CompareMasks []string
	compareMasks []*regexp.Regexp
	// DiffLog is the JSON Lines file of the responses that differ or are
	// missing (--diff-log); empty: none.
	DiffLog string
	// DiffLogMB bounds the diff log: past it the file is rotated (kept as
	// FILE.1 .. FILE.3) (--diff-log-size, 1..4096).
	DiffLogMB int
	// StallTimeout ends a session that made no progress this long while the
	// target kept answering (--stall-timeout, 1 s..1 h), outcome reason
	// stalled.
	StallTimeout time.Duration
	// CaptureTimeout is the longest time the kernel keeps captured packets
	// in a partly filled ring block before it hands them over
	// (--capture-timeout, whole milliseconds, 1 ms..1 s): the capture's
	// wake-ups against the copies' delay.
	CaptureTimeout time.Duration
	// Secret, when not nil, is the secret shared with intercept
	// (--secret-file): every link authenticates with version 7 and never
	// falls back to version 6. Never log it.
	Secret secret.Bytes
	// Ready, when set, is called once when tcpcopy captures (or has opened
	// its offline file) and serves its metrics: the daemon's readiness for
	// -d.
	Ready func()
	// MySQL is the MySQL module (--protocol mysql, docs/mysql.md).
	MySQL MySQLConfig
}

// DefaultAckDelay is the default of --ack-delay: short enough for any
// client's pace, as Linux's 40 ms minimum is for real clients.
const DefaultAckDelay = 20 * time.Millisecond

// DefaultCompareBytes is the default of --compare-bytes: room for a status
// line and the headers of most HTTP responses.
const DefaultCompareBytes = compare.DefaultBytes

// DefaultStallTimeout is the default of --stall-timeout: longer than any
// run of retransmissions that still gets through on a lossy path (a
// segment lost six times in a row), far shorter than -t.
const DefaultStallTimeout = 30 * time.Second

// DefaultCaptureTimeout is the default of --capture-timeout. Under load the
// capture wakes tcpcopy once per timeout: 2 ms cost 10-20 % less CPU than
// 1 ms in the lab's goal runs (docs/performance.md), for about 0.6 ms more
// copy latency at the median.
const DefaultCaptureTimeout = 2 * time.Millisecond

// Default returns the configuration of C TCPCopy without options (the
// required -x and -s left empty).
func Default() Config {
	return Config{
		InterceptPort:     wire.DefaultPort,
		ConnsPerIntercept: 1,
		Copies:            1,
		Percent:           100,
		MemoryMB:          2048,
		MTU:               defaultMTU,
		MSS:               defaultMSS,
		SessionTimeout:    defaultTimeout,
		KeepaliveTimeout:  defaultTimeout + keepaliveExtra,
		Accel:             1,
		Repeat:            1,
		BufferMB:          16,
		SnapLen:           maxSnapLen,
		StatsInterval:     30 * time.Second,
		AckDelay:          DefaultAckDelay,
		StallTimeout:      DefaultStallTimeout,
		CompareBytes:      DefaultCompareBytes,
		DiffLogMB:         64,
		CaptureTimeout:    DefaultCaptureTimeout,
		Combined:          true,
		Workers:           1,
	}
}

// HasProto reports whether a mapping copies p.
func (c *Config) HasProto(p Protocol) bool {
	for _, m := range c.Mappings {
		if m.Proto == p {
			return true
		}
	}
	return false
}

// Validate checks the configuration as a whole and returns the first
// problem as one line naming the option. It turns Percent 0 into 100.
func (c *Config) Validate() error {
	if c.Percent == 0 {
		c.Percent = 100
	}
	if err := c.validateMappings(); err != nil {
		return err
	}
	if err := c.validateIntercepts(); err != nil {
		return err
	}
	if err := c.validateRanges(); err != nil {
		return err
	}
	if err := c.validateInput(); err != nil {
		return err
	}
	return c.validateWire()
}

func (c *Config) validateMappings() error {
	if len(c.Mappings) == 0 {
		return errors.New("option -x is required, e.g. -x 80-203.0.113.20:8080")
	}
	has := [2]bool{} // families used: [0] IPv4, [1] IPv6
	for _, m := range c.Mappings {
		if err := m.check(); err != nil {
			return fmt.Errorf("option -x: %q: %w", m.String(), err)
		}
		switch {
		case c.OutputIf != "" && m.OnlineMAC == nil:
			return fmt.Errorf("option -x: %q: with -o write [srcIP:]srcPort@srcMAC-targetIP:targetPort@nextHopMAC", m.String())
		case c.OutputIf == "" && m.OnlineMAC != nil:
			return fmt.Errorf("option -x: %q: the @mac forms need an output device (-o)", m.String())
		case !m.Online.Addr().IsValid() && m.Online.Port() == m.Target.Port() && c.Filter == "":
			return fmt.Errorf("option -x: %q: copies to port %d would match the capture again; give the online address (ip:%d-...) or a filter (-F)",
				m.String(), m.Target.Port(), m.Online.Port())
		}
		has[familyIndex(m.Is6())] = true
	}
	if err := checkDuplicateMappings(c.Mappings); err != nil {
		return err
	}
	if has[1] && c.MTU < minMTU6 {
		return fmt.Errorf("option -M: %d is below %d, the IPv6 minimum MTU", c.MTU, minMTU6)
	}
	if len(c.ClientPool) > maxClientPool {
		return fmt.Errorf("option -c: more than %d addresses", maxClientPool)
	}
	if len(c.ClientPool) > 0 {
		pool := [2]bool{}
		for _, a := range c.ClientPool {
			if err := checkClientAddr(a); err != nil {
				return fmt.Errorf("option -c: %s: %w", a, err)
			}
			pool[familyIndex(a.Is6())] = true
		}
		for i, name := range []string{"IPv4", "IPv6"} {
			if has[i] && !pool[i] {
				return fmt.Errorf("option -c: no %s address for the %s mappings", name, name)
			}
		}
	}
	if a := c.LocalhostAs; a.IsValid() {
		if err := checkClientAddr(a); err != nil {
			return fmt.Errorf("option -H: %s: %w", a, err)
		}
	}
	// A loopback online address (the plaintext hop behind a TLS
	// terminator on the same host) has loopback clients: copies from them
	// cannot leave the host, so they need another address (-c or -H). C
	// accepted such a mapping without either.
	for _, m := range c.Mappings {
		o := m.Online.Addr()
		if o.IsLoopback() && len(c.ClientPool) == 0 && !(c.LocalhostAs.IsValid() && c.LocalhostAs.Is4() == o.Is4()) {
			return fmt.Errorf("option -x: %q: the clients of a loopback address are loopback addresses, which the target cannot answer; "+
				"give the copies an address the target routes to the assistant: -c or -H", m.String())
		}
	}
	return nil
}

func (c *Config) validateIntercepts() error {
	switch {
	case c.InterceptPort == 0:
		return errors.New("option -p: port 0 is not a port")
	case len(c.Intercepts) == 0 && c.HasProto(ProtoTCP):
		return errors.New("option -s is required: the intercept address, e.g. -s 203.0.113.30")
	case len(c.Intercepts) > maxIntercepts:
		return fmt.Errorf("option -s: more than %d intercepts", maxIntercepts)
	}
	for _, ap := range c.Intercepts {
		if !ap.IsValid() || ap.Port() == 0 || ap.Addr().IsUnspecified() || ap.Addr().IsMulticast() {
			return fmt.Errorf("option -s: %s is not an intercept address", ap)
		}
	}
	return optRange("-C", c.ConnsPerIntercept, 1, maxConns)
}

func (c *Config) validateRanges() error {
	checks := []struct {
		opt       string
		v, lo, hi int
	}{
		{"-n", c.Copies, 1, maxCopies},
		{"-f", c.PortShift, 0, maxPortShift},
		{"-r", c.Percent, 0, 100},
		{"-m", c.MemoryMB, minMemoryMB, maxMemoryMB},
		{"-M", c.MTU, minMTU, maxMTU},
		{"-D", c.MSS, minMSS, min(maxMSS, c.MTU-40)},
		{"-R", optMillis(c.FixedRTT), 0, maxRTTms},
		{"-t", optSeconds(c.SessionTimeout), 1, maxTimeoutSec},
		{"-k", optSeconds(c.KeepaliveTimeout), 1, maxTimeoutSec},
		{"-B", c.BufferMB, 1, maxBufferMB},
		{"-S", c.SnapLen, minSnapLen, maxSnapLen},
		{"--workers", c.Workers, 1, maxWorkers},
	}
	for _, k := range checks {
		if err := optRange(k.opt, k.v, k.lo, k.hi); err != nil {
			if k.opt == "-D" && k.v >= minMSS && k.v <= maxMSS {
				return fmt.Errorf("option -D: %d is above the MTU (-M %d) less 40", k.v, c.MTU)
			}
			return err
		}
	}
	if c.Gradual && c.Percent != 100 {
		return errors.New("option -g: ramps the share of copied sessions up to 100%; do not combine it with -r")
	}
	if c.StatsInterval != 0 && (c.StatsInterval < minStatsEvery || c.StatsInterval > maxStatsEvery) {
		return fmt.Errorf("option --stats-interval: %v is not 0 (off) or between %v and %v", c.StatsInterval, minStatsEvery, maxStatsEvery)
	}
	if c.AckDelay < 0 || c.AckDelay > maxAckDelay {
		return fmt.Errorf("option --ack-delay: %v is not between 0 and %v", c.AckDelay, maxAckDelay)
	}
	if c.StallTimeout < minStall || c.StallTimeout > maxStall {
		return fmt.Errorf("option --stall-timeout: %v is not between %v and %v", c.StallTimeout, minStall, maxStall)
	}
	if err := c.validateMySQL(); err != nil {
		return err
	}
	if err := c.validateCompare(); err != nil {
		return err
	}
	if err := cliutil.MillisInRange("--capture-timeout", c.CaptureTimeout, time.Millisecond, maxCaptureWait); err != nil {
		return err
	}
	if c.MetricsAddr != "" {
		if err := cliutil.CheckListenAddr("--metrics-addr", c.MetricsAddr); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) validateInput() error {
	if len(c.Filter) > maxFilterLen {
		return fmt.Errorf("option -F: longer than %d bytes", maxFilterLen)
	}
	if len(c.Interfaces) > maxInterfaces {
		return fmt.Errorf("option -i: more than %d interfaces", maxInterfaces)
	}
	if c.OfflineFile == "" {
		switch {
		case c.Accel != 1:
			return errors.New("option -a: only with an offline file (-i FILE)")
		case c.IdleSkip != 0:
			return errors.New("option -I: only with an offline file (-i FILE)")
		case c.Repeat != 1:
			return errors.New("option -T: only with an offline file (-i FILE)")
		}
		return nil
	}
	if len(c.Interfaces) > 0 {
		return errors.New("option -i: give interfaces or an offline file, not both")
	}
	if !(c.Accel >= minAccel && c.Accel <= maxAccel) { // also catches NaN
		return fmt.Errorf("option -a: %g is out of range %g..%g", c.Accel, minAccel, float64(maxAccel))
	}
	if err := optRange("-I", optMillis(c.IdleSkip), 0, maxIdleSkipMS); err != nil {
		return err
	}
	return optRange("-T", c.Repeat, 1, maxRepeat)
}

func (c *Config) validateWire() error {
	switch c.WireVersion {
	case 0:
	case wire.Version6:
		for _, m := range c.Mappings {
			if m.Is6() && m.Proto == ProtoTCP {
				return fmt.Errorf("option --wire-version: version 6 carries IPv4 only, and %q is IPv6", m.String())
			}
		}
	case wire.Version7:
		if !c.Combined || c.RespPayload {
			return errors.New("option --wire-version: --no-combined and --resp-payload apply to version 6 only")
		}
	default:
		return fmt.Errorf("option --wire-version: %d is not auto, 6 or 7", c.WireVersion)
	}
	if c.Secret != nil && c.WireVersion == wire.Version6 {
		return errors.New("option --secret-file: authentication needs protocol version 7, and --wire-version is 6")
	}
	return nil
}

// optRange returns cliutil.IntInRange's error for v outside lo..hi.
func optRange(opt string, v, lo, hi int) error {
	if v < lo || v > hi {
		return fmt.Errorf("option %s: %d is out of range %d..%d", opt, v, lo, hi)
	}
	return nil
}

// optSeconds and optMillis express a duration in the unit of its option,
// rounding a positive fraction up so that it is not mistaken for zero; a
// negative duration stays negative (-1 ms is -1, not 0).
func optSeconds(d time.Duration) int { return ceilDiv(d, time.Second) }
func optMillis(d time.Duration) int  { return ceilDiv(d, time.Millisecond) }

func ceilDiv(d, unit time.Duration) int {
	q := d / unit
	if d%unit > 0 {
		q++
	}
	return int(q)
}

// familyIndex is 0 for IPv4, 1 for IPv6.
func familyIndex(is6 bool) int {
	if is6 {
		return 1
	}
	return 0
}

// decimalDigits reports whether s is a non-empty run of ASCII digits.
func decimalDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// parsePort parses a decimal port 1..65535.
func parsePort(s string) (uint16, error) {
	if !decimalDigits(s) {
		return 0, fmt.Errorf("%q is not a port", s)
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("port %s is out of range 1..65535", s)
	}
	if v < 1 || v > 65535 {
		return 0, fmt.Errorf("port %d is out of range 1..65535", v)
	}
	return uint16(v), nil
}

// parseAddrPort parses ip:port or [ipv6]:port; what names the side in
// errors.
func parseAddrPort(s, what string) (netip.AddrPort, error) {
	if strings.Count(s, ":") > 1 && !strings.HasPrefix(s, "[") {
		return netip.AddrPort{}, fmt.Errorf("%s %q: write IPv6 as [addr]:port", what, s)
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if _, aerr := netip.ParseAddr(strings.Trim(s, "[]")); aerr == nil {
			return netip.AddrPort{}, fmt.Errorf("%s %q needs a port (ip:port, [ipv6]:port)", what, s)
		}
		return netip.AddrPort{}, fmt.Errorf("%s %q is not ip:port (IPv6: [addr]:port)", what, s)
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%s address %q is not an IP address", what, host)
	}
	p, err := parsePort(port)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(a, p), nil
}

// parseMAC accepts the 17-character aa:bb:cc:dd:ee:ff form, as C does.
func parseMAC(s string) (net.HardwareAddr, error) {
	mac, err := net.ParseMAC(s)
	if err != nil || len(s) != 17 || len(mac) != 6 || strings.Contains(s, "-") {
		return nil, fmt.Errorf("MAC %q is not aa:bb:cc:dd:ee:ff", s)
	}
	return mac, nil
}

// validateCompare checks the response comparison's options and compiles
// the masks.
func (c *Config) validateCompare() error {
	if err := optRange("--compare-bytes", c.CompareBytes, 0, compare.MaxBytes); err != nil {
		return err
	}
	for _, h := range c.CompareIgnore {
		if h == "" || strings.ContainsAny(h, " \t:\r\n") || len(h) > 64 {
			return fmt.Errorf("option --compare-ignore-header: %q is not a header name", h)
		}
	}
	c.compareMasks = nil
	for _, m := range c.CompareMasks {
		re, err := regexp.Compile(m)
		if err != nil {
			return fmt.Errorf("option --compare-mask: %q: %w", m, err)
		}
		c.compareMasks = append(c.compareMasks, re)
	}
	if c.DiffLog != "" && c.CompareBytes == 0 {
		return errors.New("option --diff-log: the comparison is off (--compare-bytes 0)")
	}
	return optRange("--diff-log-size", c.DiffLogMB, 1, 4096)
}

// compareConfig returns the comparison rules, or nil when the comparison
// is off.
func (c *Config) compareConfig() *compare.Config {
	if c.CompareBytes == 0 {
		return nil
	}
	cc := &compare.Config{
		Bytes:         c.CompareBytes,
		IgnoreHeaders: append(append([]string(nil), compare.DefaultIgnoreHeaders...), c.CompareIgnore...),
		Masks:         c.compareMasks,
	}
	cc.Init()
	return cc
}
