// Package cliutil holds what both daemons' command lines share: getopt-style
// argument normalisation, so that the C TCPCopy spellings users type keep
// working on top of urfave/cli, and small value parsers with clear errors.
package cliutil

import (
	"fmt"
	"strconv"
	"strings"
	"time"
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
