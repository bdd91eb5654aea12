package intercept

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/cliutil"
	"github.com/tcpcopy-go/tcpcopy/internal/secret"
	"github.com/tcpcopy-go/tcpcopy/pkg/capture"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

// Config is intercept's configuration, filled from the command line.
type Config struct {
	// Interfaces to capture on; empty means every interface that is up.
	Interfaces []string
	// Filter is the tcpdump expression selecting the target's responses.
	Filter string
	// Listen is the address tcpcopy links connect to (-b, -p).
	Listen netip.AddrPort
	// Combined selects combined framing for version-6 links (C default).
	Combined bool
	// MaxCombined is the most records per combined frame (-n), 1..16.
	MaxCombined int
	// RespPayload makes version-6 links carry 192-byte records with up to
	// 128 payload bytes (C --with-resp-payload).
	RespPayload bool
	// MaxPrefix is the most payload bytes a version-7 link may ask for.
	MaxPrefix int
	// CompareWindow is the longest response comparison window a version-7
	// link may ask for (--compare-window): intercept then captures whole
	// packets and hashes every response payload of such a link. 0 turns
	// the comparison off and captures headers (and MaxPrefix bytes) only.
	CompareWindow int
	// Allow lists the networks tcpcopy links may come from; empty allows
	// every address.
	Allow []netip.Prefix
	// Docker rewrites a response's destination address before routing
	// (-D dockered_ip-orig_ip).
	Docker map[netip.Addr]netip.Addr
	// Protect refuses links that arrive more than 3 s after the first one
	// of the current group (-c).
	Protect bool
	// HeldMax bounds the packets held for routes that have not come yet (-s).
	HeldMax int
	// RouteIdle is how long an unused route lives (-t).
	RouteIdle time.Duration
	// UDPRouteIdle is how long an unused UDP route lives
	// (--udp-route-idle): tcpcopy deletes the route of an idle flow
	// itself, this catches the routes whose delete was lost.
	UDPRouteIdle time.Duration
	// QueueBytes bounds the memory of one link's record buffers: those
	// waiting, those being written and their slack together. Past it
	// records for that link are dropped and counted.
	QueueBytes int
	// MaxLinks bounds simultaneous tcpcopy links. When they are all in use
	// a new connection may take the slot of a link that proved nothing (in
	// its handshake, or idle for LinkIdle) of an address holding more
	// links than its own (Server.slotFor).
	MaxLinks int
	// MaxRoutesPerLink bounds the routes one link holds; past it its route
	// adds are refused and counted. The whole table holds MaxRoutes.
	MaxRoutesPerLink int
	// HandshakeTimeout bounds the time from the connect to a complete
	// handshake, authentication included.
	HandshakeTimeout time.Duration
	// LinkIdle: a link that completed its handshake, did not authenticate
	// and has announced no route for this long gives its slot to a new
	// connection when MaxLinks are in use.
	LinkIdle time.Duration
	// Secret, when not nil, is the shared secret every link must prove
	// (version 7 only: version-6 links are refused). Never log it.
	Secret secret.Bytes
	// Ready, when set, is called once when intercept captures and listens
	// (the daemon's readiness for -d).
	Ready func()
	// StatsInterval is the period of the stats log line; 0 disables it.
	StatsInterval time.Duration
	// MetricsAddr is where /metrics is served; empty disables it.
	MetricsAddr string
	// CaptureTimeout is the longest time the kernel keeps captured
	// responses in a partly filled ring block (--capture-timeout, whole
	// milliseconds, 1 ms..1 s). Every handshake of a copied session waits
	// for its SYN-ACK to come through here: the default stays at 1 ms.
	CaptureTimeout time.Duration
}

// MaxRoutes is the size of the route table (all links together).
const MaxRoutes = 1 << 21

// Limits of the values Validate checks.
const (
	minQueueBytes       = 256 << 10 // a version-7 batch (64 KiB) and two buffers
	maxQueueBytes       = 1 << 30
	maxLinks            = 65536
	minHandshakeTimeout = 100 * time.Millisecond
	maxHandshakeTimeout = time.Minute
	minLinkIdle         = time.Second
	maxLinkIdle         = 24 * time.Hour
	minStatsInterval    = time.Second
)

// Default returns the configuration of a plain `intercept -F ...`.
func Default() Config {
	return Config{
		Listen:        netip.AddrPortFrom(netip.IPv4Unspecified(), wire.DefaultPort),
		Combined:      true,
		MaxCombined:   wire.MaxCombined,
		MaxPrefix:     256,
		CompareWindow: wire.MaxPrefixLen,
		HeldMax:       65536,
		RouteIdle:     15 * time.Minute,
		UDPRouteIdle:  time.Minute,
		QueueBytes:    8 << 20,
		MaxLinks:      256,

		MaxRoutesPerLink: 1 << 20,
		HandshakeTimeout: 5 * time.Second,
		LinkIdle:         time.Minute,
		StatsInterval:    30 * time.Second,
		CaptureTimeout:   capture.DefaultBlockTimeout,
	}
}

// Validate checks the values that the command line cannot check alone.
func (c *Config) Validate() error {
	if c.Filter == "" {
		return fmt.Errorf("a capture filter is required (-F), e.g. -F 'tcp and src port 8080'")
	}
	if c.MaxCombined < 1 || c.MaxCombined > wire.MaxCombined {
		return fmt.Errorf("option -n: %d is out of range 1..%d", c.MaxCombined, wire.MaxCombined)
	}
	if c.RespPayload && c.MaxCombined > wire.MaxCombinedPayload {
		return fmt.Errorf("option -n: %d is out of range 1..%d with --resp-payload (192-byte records, C MAX_COMBINED with payload)", c.MaxCombined, wire.MaxCombinedPayload)
	}
	if err := cliutil.MillisInRange("--capture-timeout", c.CaptureTimeout, time.Millisecond, time.Second); err != nil {
		return err
	}
	if c.CompareWindow < 0 || c.CompareWindow > wire.MaxPrefixLen {
		return fmt.Errorf("option --compare-window: %d is out of range 0..%d", c.CompareWindow, wire.MaxPrefixLen)
	}
	if c.StatsInterval != 0 && (c.StatsInterval < minStatsInterval || c.StatsInterval > 24*time.Hour) {
		return fmt.Errorf("option --stats-interval: %v is not 0 (off) or between %v and %v", c.StatsInterval, minStatsInterval, 24*time.Hour)
	}
	switch {
	case c.QueueBytes < minQueueBytes || c.QueueBytes > maxQueueBytes:
		return fmt.Errorf("option --queue-bytes: %d is out of range %d..%d", c.QueueBytes, minQueueBytes, maxQueueBytes)
	case c.MaxLinks < 1 || c.MaxLinks > maxLinks:
		return fmt.Errorf("option --max-links: %d is out of range 1..%d", c.MaxLinks, maxLinks)
	case c.MaxRoutesPerLink < 1 || c.MaxRoutesPerLink > MaxRoutes:
		return fmt.Errorf("option --max-routes-per-link: %d is out of range 1..%d", c.MaxRoutesPerLink, MaxRoutes)
	case c.HandshakeTimeout < minHandshakeTimeout || c.HandshakeTimeout > maxHandshakeTimeout:
		return fmt.Errorf("option --handshake-timeout: %v is out of range %v..%v", c.HandshakeTimeout, minHandshakeTimeout, maxHandshakeTimeout)
	case c.LinkIdle < minLinkIdle || c.LinkIdle > maxLinkIdle:
		return fmt.Errorf("option --link-idle: %v is out of range %v..%v", c.LinkIdle, minLinkIdle, maxLinkIdle)
	}
	for _, p := range c.Allow {
		if !p.IsValid() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			return fmt.Errorf("option --allow: %v is not a network (IPv4-mapped networks are written as IPv4)", p)
		}
	}
	return nil
}
