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
	}
	if out != nil {
		out.sort()
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
	metricClosed = "tcpcopy_sessions_closed_total" // {outcome, reason}
	metricOpened = "tcpcopy_sessions_opened_total"
	metricActive = "tcpcopy_sessions_active"
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
		}
		if len(m.labels) == 0 && strings.HasPrefix(m.name, "tcpcopy_") {
			values[m.name] = m.value
		}
	}
	if !found {
		return nil, values, fmt.Errorf("no %s in the metrics", metricOpened)
	}
	s.sort()
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
