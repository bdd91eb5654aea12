package recorder

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Change is one way a Differ changes an answer.
type Change uint8

// Changes, in the order tcpcopy's comparison looks for differences
// (pkg/compare: status, header, length, body): the first change a request
// got is the kind of difference it should be reported with. ChangeSlow
// and ChangePause change no byte: the answer is only late, or stalls.
const (
	ChangeStatus Change = iota + 1 // another status code
	ChangeHeader                   // Content-Type "text/html; charset=utf-8" instead of "text/plain"
	ChangeLength                   // one byte more in the body
	ChangeBody                     // the body's middle byte changed (a body of at least one byte)
	ChangeSlow                     // the answer starts after a delay
	ChangePause                    // the answer stops for a while after half its body (a body of at least two bytes)
	numChanges
)

var changeNames = [numChanges]string{"", "status", "header", "length", "body", "slow", "pause"}

func (c Change) String() string {
	if c > 0 && c < numChanges {
		return changeNames[c]
	}
	return "Change(" + strconv.Itoa(int(c)) + ")"
}

// ChangedContentType is the Content-Type of an answer changed by
// ChangeHeader; the recorder answers "text/plain" otherwise.
const ChangedContentType = "text/html; charset=utf-8"

// MaxDelay bounds the delay of a ChangeSlow or ChangePause rule: the load's requests time
// out after 5 s by default, and tcpcopy waits about a second for an answer
// before it sends the next request of a connection.
const MaxDelay = 10 * time.Second

// Rule changes the answers to some requests: those whose sequence number
// s (the number after the last "-" of the X-Lab-Id, load's plan order)
// has s % Every == At. With At = Every-1, the default, that is the Every-th
// request, the 2·Every-th and so on.
type Rule struct {
	Change Change
	Every  int
	At     int
	Status int           // ChangeStatus: the status answered
	Delay  time.Duration // ChangeSlow, ChangePause: how late, how long
}

// Picks reports whether r applies to the request with sequence number seq.
func (r Rule) Picks(seq int) bool { return seq >= 0 && r.Every > 0 && seq%r.Every == r.At }

// Count returns how many of the requests with sequence numbers 0..n-1 r
// picks.
func (r Rule) Count(n int) int {
	if r.Every <= 0 || n <= r.At {
		return 0
	}
	return (n-1-r.At)/r.Every + 1
}

// String formats r as ParseDiffer reads it: "status:500:50",
// "body:100@10", "slow:20:200ms".
func (r Rule) String() string {
	every := strconv.Itoa(r.Every)
	if r.At != r.Every-1 {
		every += "@" + strconv.Itoa(r.At)
	}
	switch r.Change {
	case ChangeStatus:
		return "status:" + strconv.Itoa(r.Status) + ":" + every
	case ChangeSlow, ChangePause:
		return r.Change.String() + ":" + every + ":" + r.Delay.String()
	}
	return r.Change.String() + ":" + every
}

// Describe says what r does in words: "status 500 for every 50th request".
func (r Rule) Describe() string {
	var what string
	switch r.Change {
	case ChangeStatus:
		what = "status " + strconv.Itoa(r.Status)
	case ChangeHeader:
		what = "Content-Type " + ChangedContentType
	case ChangeLength:
		what = "one body byte more"
	case ChangeBody:
		what = "one body byte changed"
	case ChangeSlow:
		what = r.Delay.String() + " late"
	case ChangePause:
		what = "a pause of " + r.Delay.String() + " in the body"
	}
	switch {
	case r.Every == 1:
		return what + " for every request"
	case r.At == r.Every-1:
		return what + " for every " + ordinal(r.Every) + " request"
	}
	return fmt.Sprintf("%s for every %s request from the %s on", what, ordinal(r.Every), ordinal(r.At+1))
}

func ordinal(n int) string {
	suffix := "th"
	switch {
	case n%100 >= 11 && n%100 <= 13:
	case n%10 == 1:
		suffix = "st"
	case n%10 == 2:
		suffix = "nd"
	case n%10 == 3:
		suffix = "rd"
	}
	return strconv.Itoa(n) + suffix
}

// Differ makes a recorder answer differently from an identical server for
// a deterministic share of the requests: the lab's target, so that
// tcpcopy's response comparison has differences to find, and tests can
// count exactly which. The zero value changes nothing. A request picked by
// several rules gets all their changes (one status: the first rule's).
type Differ []Rule

// ErrDiffer wraps every error of ParseDiffer.
var ErrDiffer = errors.New("bad differ spec")

// ParseDiffer parses a comma-separated list of rules:
//
//	status:CODE:EVERY[@AT]   answer CODE (201..599, not 204, 205 or 304)
//	header:EVERY[@AT]        answer Content-Type text/html; charset=utf-8
//	length:EVERY[@AT]        answer one body byte more
//	body:EVERY[@AT]          change the middle byte of the body
//	slow:EVERY[@AT]:DELAY    answer DELAY late (a Go duration, up to 10s)
//	pause:EVERY[@AT]:DELAY   stop for DELAY after half the body
//
// A rule picks the requests whose sequence number s has s % EVERY == AT;
// AT is 0..EVERY-1, EVERY-1 by default (the EVERY-th request, the
// 2·EVERY-th, ...). "" and "none" give no rules.
func ParseDiffer(s string) (Differ, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "none" {
		return nil, nil
	}
	var d Differ
	for item := range strings.SplitSeq(s, ",") {
		r, err := parseRule(strings.TrimSpace(item))
		if err != nil {
			return nil, err
		}
		d = append(d, r)
	}
	return d, nil
}

func parseRule(item string) (Rule, error) {
	f := strings.Split(item, ":")
	bad := func(format string, args ...any) (Rule, error) {
		return Rule{}, fmt.Errorf("%w: rule %q: %s", ErrDiffer, item, fmt.Sprintf(format, args...))
	}
	var r Rule
	for c := ChangeStatus; c < numChanges; c++ {
		if f[0] == c.String() {
			r.Change = c
		}
	}
	want := 2
	switch r.Change {
	case 0:
		return bad("unknown change %q (want status, header, length, body, slow or pause)", f[0])
	case ChangeStatus, ChangeSlow, ChangePause:
		want = 3
	}
	if len(f) != want {
		return bad("want %s", map[Change]string{
			ChangeStatus: "status:CODE:EVERY[@AT]", ChangeHeader: "header:EVERY[@AT]", ChangeLength: "length:EVERY[@AT]",
			ChangeBody: "body:EVERY[@AT]", ChangeSlow: "slow:EVERY[@AT]:DELAY", ChangePause: "pause:EVERY[@AT]:DELAY"}[r.Change])
	}
	every := f[1]
	if r.Change == ChangeStatus {
		code, err := strconv.Atoi(f[1])
		if err != nil || code < 201 || code > 599 || code == 204 || code == 205 || code == 304 {
			return bad("status %q: want 201..599, not 204, 205 or 304 (answers without a body)", f[1])
		}
		r.Status, every = code, f[2]
	}
	if r.Change == ChangeSlow || r.Change == ChangePause {
		d, err := time.ParseDuration(f[2])
		if err != nil || d <= 0 || d > MaxDelay {
			return bad("delay %q: want a duration above 0 and up to %s", f[2], MaxDelay)
		}
		r.Delay = d
	}
	n, at, hasAt := strings.Cut(every, "@")
	var err error
	if r.Every, err = strconv.Atoi(n); err != nil || r.Every < 1 {
		return bad("every %q: want a whole number of requests, at least 1", n)
	}
	r.At = r.Every - 1
	if hasAt {
		if r.At, err = strconv.Atoi(at); err != nil || r.At < 0 || r.At >= r.Every {
			return bad("at %q: want 0..%d", at, r.Every-1)
		}
	}
	return r, nil
}

// String formats d as ParseDiffer reads it; "" for no rules.
func (d Differ) String() string {
	parts := make([]string, len(d))
	for i, r := range d {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}

// Describe says what d does in words, rule by rule.
func (d Differ) Describe() string {
	parts := make([]string, len(d))
	for i, r := range d {
		parts[i] = r.Describe()
	}
	return strings.Join(parts, "; ")
}

// Args are the serve subcommand's arguments for d: "--differ SPEC", none
// for no rules.
func (d Differ) Args() []string {
	if len(d) == 0 {
		return nil
	}
	return []string{"--differ", d.String()}
}

// Answer is what a Differ does to one answer.
type Answer struct {
	Status  int           // 0: unchanged
	Header  bool          // ChangeHeader
	Longer  bool          // ChangeLength
	Body    bool          // ChangeBody
	Delay   time.Duration // ChangeSlow
	Pause   time.Duration // ChangePause
	Changed []string      // the changes made, in Change order ("status", "body", "slow")
}

// For returns what d does to the answer to request seq with a body of size
// bytes (ChangeBody needs one byte).
func (d Differ) For(seq int, size int64) Answer {
	var a Answer
	var has [numChanges]bool
	for _, r := range d {
		if !r.Picks(seq) {
			continue
		}
		switch r.Change {
		case ChangeStatus:
			if a.Status == 0 {
				a.Status = r.Status
			}
		case ChangeHeader:
			a.Header = true
		case ChangeLength:
			a.Longer = true
		case ChangeBody:
			if size == 0 {
				continue
			}
			a.Body = true
		case ChangeSlow:
			a.Delay = max(a.Delay, r.Delay)
		case ChangePause:
			if size < 2 {
				continue
			}
			a.Pause = max(a.Pause, r.Delay)
		}
		has[r.Change] = true
	}
	for c := ChangeStatus; c < numChanges; c++ {
		if has[c] {
			a.Changed = append(a.Changed, c.String())
		}
	}
	return a
}

// Seq returns the sequence number in a load request id "<prefix>-<seq>".
func Seq(id string) (int, bool) {
	i := strings.LastIndexByte(id, '-')
	n, err := strconv.Atoi(id[i+1:])
	if err != nil || n < 0 || i < 0 {
		return 0, false
	}
	return n, true
}

// FirstKind is the kind of difference tcpcopy should report for an answer
// with these changes (Entry.Changed): the first that changes bytes; "" for
// none (no change, or only timing).
func FirstKind(changed []string) string {
	for _, c := range changed {
		if !Timing(c) {
			return c
		}
	}
	return ""
}

// Timing reports whether the change named c changes only the timing of an
// answer (slow, pause), not its bytes.
func Timing(c string) bool { return c == ChangeSlow.String() || c == ChangePause.String() }
