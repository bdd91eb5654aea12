package intercept

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/cliutil"
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
	// QueueBytes bounds the bytes waiting for one slow link; past it
	// records for that link are dropped and counted.
	QueueBytes int
	// MaxLinks bounds simultaneous tcpcopy links.
	MaxLinks int
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

// Default returns the configuration of a plain `intercept -F ...`.
func Default() Config {
	return Config{
		Listen:         netip.AddrPortFrom(netip.IPv4Unspecified(), wire.DefaultPort),
		Combined:       true,
		MaxCombined:    wire.MaxCombined,
		MaxPrefix:      256,
		CompareWindow:  wire.MaxPrefixLen,
		HeldMax:        65536,
		RouteIdle:      15 * time.Minute,
		QueueBytes:     8 << 20,
		MaxLinks:       256,
		StatsInterval:  30 * time.Second,
		CaptureTimeout: capture.DefaultBlockTimeout,
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
		c.MaxCombined = wire.MaxCombinedPayload
	}
	if err := cliutil.MillisInRange("--capture-timeout", c.CaptureTimeout, time.Millisecond, time.Second); err != nil {
		return err
	}
	if c.CompareWindow < 0 || c.CompareWindow > wire.MaxPrefixLen {
		return fmt.Errorf("option --compare-window: %d is out of range 0..%d", c.CompareWindow, wire.MaxPrefixLen)
	}
	return nil
}
