// Package cliutil holds what both daemons' command lines share: getopt-style
// argument normalisation, so that the C TCPCopy spellings users type keep
// working on top of urfave/cli, and small value parsers with clear errors.
package cliutil

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Normalize rewrites getopt-style short options into the separate form that
// urfave/cli parses. withValue lists the single-letter options that take a
// value, plain the ones that do not. It turns
//
//	-r20      into -r 20      (glued value)
//	-dO       into -d -O      (grouped flags)
//	-dx80-... into -d -x 80-... (a group ending in a value option)
//
// and leaves everything else alone: long options (--x), lone letters, "-",
// arguments after "--", and values of value options (so "-F 'tcp and -x'"
// stays intact). An argument that mixes unknown letters is left as it is, so
// the parser reports it.
func Normalize(args []string, withValue, plain string) []string {
	out := make([]string, 0, len(args)+4)
	takesValue := func(c byte) bool { return strings.IndexByte(withValue, c) >= 0 }
	isPlain := func(c byte) bool { return strings.IndexByte(plain, c) >= 0 }
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			out = append(out, args[i:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' || a[1] == '-' {
			out = append(out, a)
			continue
		}
		if len(a) == 2 {
			out = append(out, a)
			if takesValue(a[1]) && i+1 < len(args) {
				i++
				out = append(out, args[i])
			}
			continue
		}
		if strings.IndexByte(a, '=') == 2 {
			// -x=value: already unambiguous for the parser.
			out = append(out, a)
			continue
		}
		split, needsValue, ok := splitGroup(a[1:], takesValue, isPlain)
		if !ok {
			out = append(out, a)
			continue
		}
		out = append(out, split...)
		if needsValue && i+1 < len(args) {
			// The group ended in a value option without a glued value.
			i++
			out = append(out, args[i])
		}
	}
	return out
}

// splitGroup splits the letters of one short-option group. needsValue
// reports that the group ends in a value option whose value is the next
// argument.
func splitGroup(s string, takesValue, isPlain func(byte) bool) (out []string, needsValue, ok bool) {
	for j := 0; j < len(s); j++ {
		c := s[j]
		switch {
		case takesValue(c):
			out = append(out, "-"+string(c))
			if j+1 < len(s) {
				return append(out, s[j+1:]), false, true
			}
			return out, true, true
		case isPlain(c):
			out = append(out, "-"+string(c))
		default:
			return nil, false, false
		}
	}
	return out, false, true
}

// IntInRange parses a decimal integer and checks lo <= v <= hi, with an
// error that names the option, unlike C TCPCopy's atoi and bit-field
// truncation.
func IntInRange(opt, s string, lo, hi int) (int, error) {
	v, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("option %s: %q is not a number", opt, s)
	}
	if v < lo || v > hi {
		return 0, fmt.Errorf("option %s: %d is out of range %d..%d", opt, v, lo, hi)
	}
	return v, nil
}

// MillisInRange checks that d is a whole number of milliseconds with
// lo <= d <= hi, with an error that names the option.
func MillisInRange(opt string, d, lo, hi time.Duration) error {
	if d < lo || d > hi {
		return fmt.Errorf("option %s: %v is out of range %v..%v", opt, d, lo, hi)
	}
	if d%time.Millisecond != 0 {
		return fmt.Errorf("option %s: %v is not a whole number of milliseconds", opt, d)
	}
	return nil
}

// SplitList splits a comma-separated option value, dropping empty items
// and surrounding spaces.
func SplitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// maxMessage bounds a command-line error message: a value of 120 kB must
// not come back whole on the terminal or in a log.
const maxMessage = 512

// Shorten returns s, or, when it is longer than maxMessage bytes, its start
// and end with the middle replaced by a note of how many bytes were left
// out, so that both the option's name and the reason stay readable.
func Shorten(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	head, tail := maxMessage*2/3, maxMessage/4
	h, t := s[:head], s[len(s)-tail:]
	for len(h) > 0 && !utf8.ValidString(h) {
		h = h[:len(h)-1]
	}
	for len(t) > 0 && !utf8.ValidString(t) {
		t = t[1:]
	}
	return fmt.Sprintf("%s[... %d bytes left out ...]%s", h, len(s)-len(h)-len(t), t)
}

// CheckLogOptions refuses bad --log-format and --log-level values on the
// command line, before -d detaches: in the background the error would go
// to /dev/null.
func CheckLogOptions(format, level string) error {
	switch strings.ToLower(format) {
	case "", "text", "json":
	default:
		return fmt.Errorf("option --log-format: %q is not text or json", format)
	}
	switch strings.ToLower(level) {
	case "", "debug", "info", "warn", "warning", "error":
	default:
		return fmt.Errorf("option --log-level: %q is not debug, info, warn or error", level)
	}
	return nil
}

// CheckListenAddr checks a host:port to listen on (--metrics-addr): the
// host empty (every address), an IP address or "localhost", the port
// 1..65535. Whether the address can be bound is only known when it is.
func CheckListenAddr(opt, s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("option %s: %q is not host:port", opt, s)
	}
	if _, err := netip.ParseAddr(host); err != nil && host != "" && host != "localhost" {
		return fmt.Errorf("option %s: host %q is not an IP address", opt, host)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 || port != strconv.Itoa(p) {
		return fmt.Errorf("option %s: port %q is not 1..65535", opt, port)
	}
	return nil
}

// ParsePrefix reads a CIDR or a single address as a network. An
// IPv4-mapped IPv6 network (::ffff:a.b.c.d/n, n >= 96) is the IPv4 network
// it maps, since peers' addresses are compared unmapped.
func ParsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		a, aerr := netip.ParseAddr(s)
		if aerr != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR or address", s)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q: zones are not supported", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("%q covers more than IPv4-mapped addresses: write the IPv4 and IPv6 networks separately", s)
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}
