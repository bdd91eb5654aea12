package labrun

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Sessions are tcpcopy's session counts: how many copied connections it
// opened and how each one ended (pkg/tcpstate Outcome and Reason).
type Sessions struct {
	// Source says where the counts come from: "metrics", tcpcopy's
	// --metrics-addr endpoint read just before it was stopped, or "log",
	// its final "tcpcopy stopped" summary line (used when no metrics were
	// read).
	Source     string `json:"source"`
	Opened     uint64 `json:"opened"`
	Open       uint64 `json:"open"` // still open when read (metrics only); they end as tcpcopy_stopped
	Reproduced uint64 `json:"reproduced"`
	Partial    uint64 `json:"partial"`
	Failed     uint64 `json:"failed"`
	// Ends are the closed sessions by outcome and reason, most frequent
	// first within an outcome (reproduced, partial, failed).
	Ends []SessionEnd `json:"ends,omitempty"`

	// tcpcopy's own account of its copy, from the same source.
	Copy CopyStats `json:"copy"`
}

// CopyStats is what tcpcopy says it copied (docs/metrics.md, "fidelity"):
// the share of the captured request bytes of copied connections that the
// target acknowledged, the bytes and requests no session carried, and its
// reconnects after the target closed connections early.
type CopyStats struct {
	// Known: tcpcopy reported a fidelity (a metrics scrape, or a final
	// log line with fidelity=).
	Known bool `json:"known"`
	// Fidelity is tcpcopy_fidelity_ratio, 0..1: AckedBytes /
	// (CapturedBytes + UncopiedBytes). Summed over instances, it is
	// recomputed from their byte counts.
	Fidelity         float64 `json:"fidelity"`
	CapturedBytes    uint64  `json:"captured_bytes"`
	AckedBytes       uint64  `json:"acked_bytes"`
	UncopiedBytes    uint64  `json:"uncopied_bytes"`
	UncopiedRequests uint64  `json:"uncopied_requests"`
	Reconnects       uint64  `json:"reconnects"`
	// Uncopied breaks UncopiedBytes and UncopiedRequests down by reason
	// (tcpcopy_uncopied_bytes_total{reason}), most bytes first; metrics
	// only.
	Uncopied []Uncopied `json:"uncopied,omitempty"`
}

// Uncopied counts what no session carried, for one reason.
type Uncopied struct {
	Reason   string `json:"reason"`
	Bytes    uint64 `json:"bytes"`
	Requests uint64 `json:"requests"`
}

func (c *CopyStats) addUncopied(reason string, bytes, requests uint64) {
	for i := range c.Uncopied {
		if c.Uncopied[i].Reason == reason {
			c.Uncopied[i].Bytes += bytes
			c.Uncopied[i].Requests += requests
			return
		}
	}
	c.Uncopied = append(c.Uncopied, Uncopied{Reason: reason, Bytes: bytes, Requests: requests})
}

func (c *CopyStats) sort() {
	slices.SortFunc(c.Uncopied, func(a, b Uncopied) int {
		if x := cmp.Compare(b.Bytes, a.Bytes); x != 0 {
			return x
		}
		return strings.Compare(a.Reason, b.Reason)
	})
}

// SessionEnd counts the sessions closed with one outcome and reason.
type SessionEnd struct {
	Outcome string `json:"outcome"` // reproduced, partial or failed
	Reason  string `json:"reason"`  // none, no_synack, target_rst, ...
	Count   uint64 `json:"count"`
}

// NotReproduced is the number of sessions that ended partial or failed.
func (s *Sessions) NotReproduced() uint64 { return s.Partial + s.Failed }

var outcomeOrder = map[string]int{"reproduced": 0, "partial": 1, "failed": 2}

func (s *Sessions) add(outcome, reason string, n uint64) {
	switch outcome {
	case "reproduced":
		s.Reproduced += n
	case "partial":
		s.Partial += n
	case "failed":
		s.Failed += n
	}
	for i := range s.Ends {
		if s.Ends[i].Outcome == outcome && s.Ends[i].Reason == reason {
			s.Ends[i].Count += n
			return
		}
	}
	s.Ends = append(s.Ends, SessionEnd{Outcome: outcome, Reason: reason, Count: n})
}

func (s *Sessions) sort() {
	slices.SortFunc(s.Ends, func(a, b SessionEnd) int {
		if c := cmp.Compare(outcomeOrder[a.Outcome], outcomeOrder[b.Outcome]); c != 0 {
			return c
		}
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return strings.Compare(a.Reason, b.Reason)
	})
}

// sumSessions adds up the sessions of several tcpcopy instances; nil when
// none has any.
func sumSessions(all []*Sessions) *Sessions {
	var out *Sessions
	n := 0
	for _, s := range all {
		if s == nil {
			continue
		}
		if out == nil {
			out = &Sessions{Source: s.Source}
		} else if out.Source != s.Source {
			out.Source = "mixed"
		}
		out.Opened += s.Opened
		out.Open += s.Open
		for _, e := range s.Ends {
			out.add(e.Outcome, e.Reason, e.Count)
		}
		c, o := s.Copy, &out.Copy
		if n++; n == 1 {
			o.Known, o.Fidelity = c.Known, c.Fidelity
		} else {
			o.Known = o.Known && c.Known
			o.Fidelity = min(o.Fidelity, c.Fidelity) // replaced below when the bytes are known
		}
		o.CapturedBytes += c.CapturedBytes
		o.AckedBytes += c.AckedBytes
		o.UncopiedBytes += c.UncopiedBytes
		o.UncopiedRequests += c.UncopiedRequests
		o.Reconnects += c.Reconnects
		for _, u := range c.Uncopied {
			o.addUncopied(u.Reason, u.Bytes, u.Requests)
		}
	}
	if out != nil {
		out.sort()
		out.Copy.sort()
		if c := &out.Copy; n > 1 && c.Known && c.CapturedBytes+c.UncopiedBytes > 0 {
			c.Fidelity = float64(c.AckedBytes) / float64(c.CapturedBytes+c.UncopiedBytes)
		}
	}
	return out
}

// sample is one line of the Prometheus text exposition format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

var errExposition = errors.New("not in the Prometheus text format")

// parseExposition parses the Prometheus text exposition format (version
// 0.0.4): comment lines are skipped, each other line is
// name{label="value",...} value [timestamp].
func parseExposition(text string) ([]sample, error) {
	var out []sample
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		var s sample
		rest := line
		i := strings.IndexAny(rest, "{ ")
		if i <= 0 {
			return nil, fmt.Errorf("%w: %q", errExposition, line)
		}
		s.name, rest = rest[:i], rest[i:]
		if rest[0] == '{' {
			s.labels = map[string]string{}
			rest = rest[1:]
			for {
				rest = strings.TrimLeft(rest, " ,")
				if strings.HasPrefix(rest, "}") {
					rest = rest[1:]
					break
				}
				eq := strings.IndexByte(rest, '=')
				if eq <= 0 || len(rest) < eq+2 || rest[eq+1] != '"' {
					return nil, fmt.Errorf("%w: %q", errExposition, line)
				}
				key := strings.TrimSpace(rest[:eq])
				q, err := strconv.QuotedPrefix(rest[eq+1:])
				if err != nil {
					return nil, fmt.Errorf("%w: %q", errExposition, line)
				}
				v, err := strconv.Unquote(q)
				if err != nil {
					return nil, fmt.Errorf("%w: %q", errExposition, line)
				}
				s.labels[key] = v
				rest = rest[eq+1+len(q):]
			}
		}
		f := strings.Fields(rest)
		if len(f) < 1 {
			return nil, fmt.Errorf("%w: %q", errExposition, line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("%w: %q", errExposition, line)
		}
		s.value = v
		out = append(out, s)
	}
	return out, nil
}

// Metric names read from tcpcopy (internal/tcpcopy/metrics.go).
const (
	metricClosed           = "tcpcopy_sessions_closed_total" // {outcome, reason}
	metricOpened           = "tcpcopy_sessions_opened_total"
	metricActive           = "tcpcopy_sessions_active"
	metricFidelity         = "tcpcopy_fidelity_ratio"
	metricCaptured         = "tcpcopy_captured_bytes_total"
	metricAcked            = "tcpcopy_acked_bytes_total"
	metricReconnects       = "tcpcopy_reconnects_total"
	metricUncopiedBytes    = "tcpcopy_uncopied_bytes_total"    // {reason}
	metricUncopiedRequests = "tcpcopy_uncopied_requests_total" // {reason}
)

// sessionsFromMetrics extracts the session counts, and every unlabelled
// tcpcopy_* value, from a scrape of tcpcopy's metrics endpoint.
func sessionsFromMetrics(text string) (*Sessions, map[string]float64, error) {
	samples, err := parseExposition(text)
	if err != nil {
		return nil, nil, err
	}
	s := &Sessions{Source: "metrics"}
	values := map[string]float64{}
	found := false
	for _, m := range samples {
		switch {
		case m.name == metricClosed:
			s.add(m.labels["outcome"], m.labels["reason"], uint64(m.value))
		case m.name == metricOpened:
			s.Opened, found = uint64(m.value), true
		case m.name == metricActive:
			s.Open = uint64(m.value)
		case m.name == metricFidelity:
			s.Copy.Fidelity, s.Copy.Known = m.value, true
		case m.name == metricCaptured:
			s.Copy.CapturedBytes = uint64(m.value)
		case m.name == metricAcked:
			s.Copy.AckedBytes = uint64(m.value)
		case m.name == metricReconnects:
			s.Copy.Reconnects = uint64(m.value)
		case m.name == metricUncopiedBytes:
			s.Copy.UncopiedBytes += uint64(m.value)
			s.Copy.addUncopied(m.labels["reason"], uint64(m.value), 0)
		case m.name == metricUncopiedRequests:
			s.Copy.UncopiedRequests += uint64(m.value)
			s.Copy.addUncopied(m.labels["reason"], 0, uint64(m.value))
		}
		if len(m.labels) == 0 && strings.HasPrefix(m.name, "tcpcopy_") {
			values[m.name] = m.value
		}
	}
	if !found {
		return nil, values, fmt.Errorf("no %s in the metrics", metricOpened)
	}
	s.sort()
	s.Copy.sort()
	return s, values, nil
}

// summaryMessage is the message of tcpcopy's final log line
// (internal/tcpcopy observe.go logSummary).
const summaryMessage = "tcpcopy stopped"

// sessionsFromLog reads the last "tcpcopy stopped" line of a tcpcopy log in
// log/slog's text format: sessions=N reproduced=N partial=N failed=N and
// <outcome>_<reason>=N for the sessions not reproduced.
func sessionsFromLog(path string) (*Sessions, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var last map[string]string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		kv := parseTextRecord(sc.Text())
		if kv["msg"] == summaryMessage {
			last = kv
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if last == nil {
		return nil, fmt.Errorf("no %q line in %s", summaryMessage, path)
	}
	num := func(k string) (uint64, bool) {
		v, err := strconv.ParseUint(last[k], 10, 64)
		return v, err == nil
	}
	s := &Sessions{Source: "log"}
	var ok bool
	if s.Opened, ok = num("sessions"); !ok {
		return nil, fmt.Errorf("%q line without sessions=", summaryMessage)
	}
	reproduced, _ := num("reproduced")
	var partial, failed uint64
	for k := range last {
		for _, o := range []string{"partial", "failed"} {
			if r, found := strings.CutPrefix(k, o+"_"); found {
				if n, ok := num(k); ok {
					s.add(o, r, n)
					if o == "partial" {
						partial += n
					} else {
						failed += n
					}
				}
			}
		}
	}
	// The totals are authoritative; reasons the line did not break down
	// (or that this parser did not recognise) show as "unknown".
	if n, ok := num("partial"); ok && n > partial {
		s.add("partial", "unknown", n-partial)
	}
	if n, ok := num("failed"); ok && n > failed {
		s.add("failed", "unknown", n-failed)
	}
	if reproduced > 0 {
		s.add("reproduced", "", reproduced) // the line has no breakdown
	}
	if f, err := strconv.ParseFloat(last["fidelity"], 64); err == nil {
		s.Copy.Fidelity, s.Copy.Known = f, true
	}
	s.Copy.CapturedBytes, _ = num("captured_bytes")
	s.Copy.AckedBytes, _ = num("acked_bytes")
	s.Copy.UncopiedBytes, _ = num("uncopied_bytes")
	s.Copy.UncopiedRequests, _ = num("uncopied_requests")
	s.sort()
	return s, nil
}

// parseTextRecord splits a log/slog text-handler line into its key=value
// pairs; quoted values are unquoted.
func parseTextRecord(line string) map[string]string {
	kv := map[string]string{}
	rest := line
	for {
		rest = strings.TrimLeft(rest, " ")
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 {
			return kv
		}
		key := rest[:eq]
		if strings.ContainsAny(key, " \"") {
			return kv
		}
		rest = rest[eq+1:]
		var val string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return kv
			}
			val, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			sp := strings.IndexByte(rest, ' ')
			if sp < 0 {
				sp = len(rest)
			}
			val, rest = rest[:sp], rest[sp:]
		}
		kv[key] = val
	}
}
