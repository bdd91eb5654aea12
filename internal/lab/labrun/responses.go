package labrun

// responses.go reads tcpcopy's response comparison (pkg/compare): its
// verdicts from the metrics or the final log line, what the target was
// told to change (Config.TargetDiffer, read back from the target's
// request log) and the diff log (Config.DiffLog), and checks that the
// verdicts are what the target was told.

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/recorder"
)

// Kinds of difference in the order tcpcopy looks for them (pkg/compare).
var diffKinds = []string{"status", "header", "length", "body"}

// Responses are tcpcopy's verdicts on the target's responses, each
// compared with the online server's answer to the same request.
type Responses struct {
	// Source says where they come from: "metrics", tcpcopy's metrics read
	// just before it was stopped, or "log", its final "tcpcopy stopped"
	// line (when no metrics were read).
	Source      string `json:"source"`
	Same        uint64 `json:"same"`
	Differs     uint64 `json:"differs"`
	Missing     uint64 `json:"missing"` // the online server answered, the target did not
	NotCompared uint64 `json:"not_compared"`
	// Kinds counts the responses that differ by what differs first:
	// status, header, length, body.
	Kinds map[string]uint64 `json:"kinds,omitempty"`
	// NotComparedWhy counts the responses not compared by reason.
	NotComparedWhy map[string]uint64 `json:"not_compared_why,omitempty"`
	// StatusPairs counts the compared HTTP responses by the online
	// server's and the target's status: every pair from the metrics, the
	// pairs that differ from the log line.
	StatusPairs []StatusPair `json:"status_pairs,omitempty"`
	// AtStop are the verdicts tcpcopy reached when it stopped, after the
	// metrics were read (its final log line has more): the responses of
	// sessions still open.
	AtStop uint64 `json:"at_stop,omitempty"`
	// DiffLogWritten and DiffLogDropped are the lines tcpcopy wrote to
	// its diff log and those it dropped because the log fell behind
	// (metrics only).
	DiffLogWritten uint64 `json:"diff_log_written,omitempty"`
	DiffLogDropped uint64 `json:"diff_log_dropped,omitempty"`

	// AsTold: every answer the target was told to change (Report.Told)
	// differs with the kind of its first change, and every other response
	// is the same; with no TargetDiffer, every response is the same.
	AsTold bool `json:"as_told"`
	// NotAsTold says how the verdicts depart from that.
	NotAsTold []string `json:"not_as_told,omitempty"`
}

// StatusPair counts the compared HTTP responses with an online status and
// a target status.
type StatusPair struct {
	Online int    `json:"online"`
	Target int    `json:"target"`
	Count  uint64 `json:"count"`
}

// Total is the number of verdicts.
func (r *Responses) Total() uint64 { return r.Same + r.Differs + r.Missing + r.NotCompared }

// Changed returns the status pairs whose statuses differ.
func (r *Responses) Changed() []StatusPair {
	var out []StatusPair
	for _, p := range r.StatusPairs {
		if p.Online != p.Target {
			out = append(out, p)
		}
	}
	return out
}

func (r *Responses) addPair(online, target int, n uint64) {
	for i := range r.StatusPairs {
		if r.StatusPairs[i].Online == online && r.StatusPairs[i].Target == target {
			r.StatusPairs[i].Count += n
			return
		}
	}
	r.StatusPairs = append(r.StatusPairs, StatusPair{online, target, n})
}

func (r *Responses) sort() {
	slices.SortFunc(r.StatusPairs, func(a, b StatusPair) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Online, b.Online); c != 0 {
			return c
		}
		return cmp.Compare(a.Target, b.Target)
	})
}

func addCount(m *map[string]uint64, k string, n uint64) {
	if n == 0 {
		return
	}
	if *m == nil {
		*m = map[string]uint64{}
	}
	(*m)[k] += n
}

// Metric names of the comparison (internal/tcpcopy/metrics.go).
const (
	metricVerdicts    = "tcpcopy_responses_compared_total"     // {verdict}
	metricKinds       = "tcpcopy_response_differences_total"   // {kind}
	metricNotCompared = "tcpcopy_responses_not_compared_total" // {reason}
	metricStatusPairs = "tcpcopy_response_status_pairs_total"  // {online, target}
	metricDiffWritten = "tcpcopy_diff_log_written_total"
	metricDiffDropped = "tcpcopy_diff_log_dropped_total"
)

// Verdicts (pkg/compare), as the metrics' labels and the log line's keys
// name them.
const (
	verdictSame    = "same"
	verdictDiffers = "differs"
	verdictMissing = "missing"
	verdictNotCmp  = "not_compared"
)

// responsesFromMetrics extracts the verdicts from a scrape of tcpcopy's
// metrics endpoint; nil when it has none (the comparison is off).
func responsesFromMetrics(text string) (*Responses, error) {
	samples, err := parseExposition(text)
	if err != nil {
		return nil, err
	}
	r := &Responses{Source: "metrics"}
	found := false
	for _, m := range samples {
		n := uint64(m.value)
		switch m.name {
		case metricVerdicts:
			found = true
			switch m.labels["verdict"] {
			case verdictSame:
				r.Same += n
			case verdictDiffers:
				r.Differs += n
			case verdictMissing:
				r.Missing += n
			case verdictNotCmp:
				r.NotCompared += n
			}
		case metricKinds:
			addCount(&r.Kinds, m.labels["kind"], n)
		case metricNotCompared:
			addCount(&r.NotComparedWhy, m.labels["reason"], n)
		case metricStatusPairs:
			on, err1 := strconv.Atoi(m.labels["online"])
			tg, err2 := strconv.Atoi(m.labels["target"])
			if err1 == nil && err2 == nil && n > 0 {
				r.addPair(on, tg, n)
			}
		case metricDiffWritten:
			r.DiffLogWritten = n
		case metricDiffDropped:
			r.DiffLogDropped = n
		}
	}
	if !found {
		return nil, nil
	}
	r.sort()
	return r, nil
}

// ResponsesFromLog reads the verdicts from the last "tcpcopy stopped" line
// of a tcpcopy log, in log/slog's text or JSON format: same=, differs=,
// missing=, not_compared=, differences="status=3 body=1",
// status_changes="200->500=40" and not_compared_why=. It returns nil, and
// no error, when the line has no verdicts (the comparison was off), and
// an error when the file has no such line.
func ResponsesFromLog(path string) (*Responses, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var last map[string]string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		kv := logRecord(sc.Bytes())
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
	return responsesFromRecord(last)
}

// logRecord splits a log line in log/slog's JSON or text format into its
// attributes, values as text (numbers as written).
func logRecord(line []byte) map[string]string {
	if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("{")) {
		return parseTextRecord(string(line))
	}
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	var m map[string]any
	if d.Decode(&m) != nil {
		return nil
	}
	kv := make(map[string]string, len(m))
	for k, v := range m {
		kv[k] = fmt.Sprint(v)
	}
	return kv
}

// responsesFromRecord reads the verdicts of a "tcpcopy stopped" line's
// attributes; nil when it has none.
func responsesFromRecord(kv map[string]string) (*Responses, error) {
	if _, ok := kv[verdictSame]; !ok {
		return nil, nil
	}
	r := &Responses{Source: "log"}
	for _, v := range []struct {
		key string
		dst *uint64
	}{{verdictSame, &r.Same}, {verdictDiffers, &r.Differs}, {verdictMissing, &r.Missing}, {verdictNotCmp, &r.NotCompared}} {
		n, err := strconv.ParseUint(kv[v.key], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q line: %s=%q: %w", summaryMessage, v.key, kv[v.key], err)
		}
		*v.dst = n
	}
	for k, n := range countList(kv["differences"]) {
		addCount(&r.Kinds, k, n)
	}
	for k, n := range countList(kv["not_compared_why"]) {
		addCount(&r.NotComparedWhy, k, n)
	}
	for k, n := range countList(kv["status_changes"]) {
		on, tg, ok := strings.Cut(k, "->")
		o, err1 := strconv.Atoi(on)
		t, err2 := strconv.Atoi(tg)
		if ok && err1 == nil && err2 == nil {
			r.addPair(o, t, n)
		}
	}
	r.sort()
	return r, nil
}

// countList parses "a=3 b=1" ("none": nothing).
func countList(s string) map[string]uint64 {
	out := map[string]uint64{}
	for _, f := range strings.Fields(s) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(v, 10, 64); err == nil {
			out[k] += n
		}
	}
	return out
}

// sumResponses adds up the verdicts of several tcpcopy instances; nil when
// none has any.
func sumResponses(all []*Responses) *Responses {
	var out *Responses
	for _, r := range all {
		if r == nil {
			continue
		}
		if out == nil {
			out = &Responses{Source: r.Source}
		} else if out.Source != r.Source {
			out.Source = "mixed"
		}
		out.Same += r.Same
		out.Differs += r.Differs
		out.Missing += r.Missing
		out.NotCompared += r.NotCompared
		out.AtStop += r.AtStop
		out.DiffLogWritten += r.DiffLogWritten
		out.DiffLogDropped += r.DiffLogDropped
		for k, n := range r.Kinds {
			addCount(&out.Kinds, k, n)
		}
		for k, n := range r.NotComparedWhy {
			addCount(&out.NotComparedWhy, k, n)
		}
		for _, p := range r.StatusPairs {
			out.addPair(p.Online, p.Target, p.Count)
		}
	}
	if out != nil {
		out.sort()
	}
	return out
}

// Told is what the target's recorder was told to change (Config.TargetDiffer)
// and what it changed, read back from its request log.
type Told struct {
	Differ string   `json:"differ"` // the rules, as recorder.ParseDiffer reads them
	Rules  []string `json:"rules"`  // the rules in words
	// Answers counts the answers with bytes changed; Kinds counts them by
	// the kind of difference tcpcopy should report, their first change
	// (recorder.FirstKind); Changes counts every change made (an answer
	// may have several).
	Answers int            `json:"answers"`
	Kinds   map[string]int `json:"kinds,omitempty"`
	Changes map[string]int `json:"changes,omitempty"`
	// StatusPairs are the status pairs the changed statuses make.
	StatusPairs []StatusPair `json:"status_pairs,omitempty"`
	// Slow counts the answers delayed, Paused those stopped in the middle
	// of the body: their bytes are the same (verdict same, unless another
	// rule changed them too).
	Slow   int `json:"slow"`
	Paused int `json:"paused"`

	kindOf map[string]string // request id -> expected kind
}

// ToldBy reads what the target did with the rules d from its request log
// target; online is the online server's log (for the status pairs).
func ToldBy(d recorder.Differ, online, target []recorder.Entry) *Told {
	t := &Told{Differ: d.String(), kindOf: map[string]string{}}
	for _, r := range d {
		t.Rules = append(t.Rules, r.Describe())
	}
	status := make(map[string]int, len(online))
	for _, e := range online {
		status[e.ID] = e.Status
	}
	for _, e := range target {
		if e.Delay > 0 {
			t.Slow++
		}
		if e.Pause > 0 {
			t.Paused++
		}
		for _, c := range e.Changed {
			if !recorder.Timing(c) {
				if t.Changes == nil {
					t.Changes = map[string]int{}
				}
				t.Changes[c]++
			}
		}
		k := recorder.FirstKind(e.Changed)
		if k == "" {
			continue
		}
		t.Answers++
		if t.Kinds == nil {
			t.Kinds = map[string]int{}
		}
		t.Kinds[k]++
		t.kindOf[e.ID] = k
		if k == "status" {
			on := status[e.ID]
			if on == 0 {
				on = 200
			}
			found := false
			for i := range t.StatusPairs {
				if t.StatusPairs[i].Online == on && t.StatusPairs[i].Target == e.Status {
					t.StatusPairs[i].Count++
					found = true
				}
			}
			if !found {
				t.StatusPairs = append(t.StatusPairs, StatusPair{on, e.Status, 1})
			}
		}
	}
	return t
}

// KindOf returns the kind of difference tcpcopy should report for request
// id ("" when the target answered it like online).
func (t *Told) KindOf(id string) string {
	if t == nil {
		return ""
	}
	return t.kindOf[id]
}

// CheckAsTold sets r.AsTold and r.NotAsTold: the verdicts against what
// the target was told (t, nil when it was told nothing).
func (r *Responses) CheckAsTold(t *Told) {
	var why []string
	want := map[string]int{}
	answers := 0
	if t != nil {
		want, answers = t.Kinds, t.Answers
	}
	for _, k := range diffKinds {
		if got := r.Kinds[k]; got != uint64(want[k]) {
			why = append(why, fmt.Sprintf("%s differs in %d responses, the target changed %d", k, got, want[k]))
		}
	}
	for k, n := range r.Kinds {
		if !slices.Contains(diffKinds, k) && n > 0 {
			why = append(why, fmt.Sprintf("%s differs in %d responses", k, n))
		}
	}
	if len(why) == 0 && r.Differs != uint64(answers) {
		why = append(why, fmt.Sprintf("%d responses differ, the target changed %d", r.Differs, answers))
	}
	if r.Missing > 0 {
		why = append(why, fmt.Sprintf("%d missing", r.Missing))
	}
	if r.NotCompared > 0 {
		why = append(why, fmt.Sprintf("%d not compared (%s)", r.NotCompared, countText(r.NotComparedWhy, nil)))
	}
	r.AsTold, r.NotAsTold = len(why) == 0, why
}

// DiffLog summarizes tcpcopy's diff log (Config.DiffLog): its lines, and
// how they match what the target was told to change.
type DiffLog struct {
	Files   []string `json:"files"` // read, the oldest rotated file first
	Lines   int      `json:"lines"`
	Differs int      `json:"differs"`
	Missing int      `json:"missing"`
	// Kinds counts the lines that differ by kind; Headers counts the
	// headers named by the "header" ones.
	Kinds   map[string]int `json:"kinds,omitempty"`
	Headers map[string]int `json:"headers,omitempty"`
	// AsTold counts the lines of requests the target was told to change,
	// with the kind of their first change; Unexpected the other lines
	// (another kind, an answer the target did not change, a missing one);
	// NotLogged the requests the target changed that have no line.
	AsTold     int `json:"as_told"`
	Unexpected int `json:"unexpected"`
	NotLogged  int `json:"not_logged"`
	// First are the first few unexpected lines, shortened: verdict, kind,
	// request id, offset.
	First []string `json:"first,omitempty"`
}

// maxDiffExamples caps DiffLog.First.
const maxDiffExamples = 5

// diffLine is the part of a diff log line (internal/tcpcopy Diff) the lab
// reads.
type diffLine struct {
	Verdict string `json:"verdict"`
	Kind    string `json:"kind"`
	Header  string `json:"header"`
	Request string `json:"request"`
	Offset  int    `json:"offset"`
	Online  struct {
		Status int `json:"status"`
	} `json:"online"`
	Target struct {
		Status int `json:"status"`
	} `json:"target_response"`
}

// ReadDiffLog reads the diff logs at paths (of one tcpcopy instance each),
// each with its rotated files (path.3, path.2, path.1, then path), and
// matches their lines with what the target was told (t; nil: nothing,
// every line is unexpected).
func ReadDiffLog(t *Told, paths ...string) (*DiffLog, error) {
	d := &DiffLog{}
	logged := map[string]bool{}
	var files []string
	for _, path := range paths {
		files = append(files, path+".3", path+".2", path+".1", path)
	}
	for _, p := range files {
		f, err := os.Open(p)
		if os.IsNotExist(err) && !slices.Contains(paths, p) {
			continue
		}
		if err != nil {
			return d, err
		}
		d.Files = append(d.Files, p)
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for n := 1; sc.Scan(); n++ {
			if len(bytes.TrimSpace(sc.Bytes())) == 0 {
				continue
			}
			var l diffLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				f.Close()
				return d, fmt.Errorf("%s: line %d: %w", p, n, err)
			}
			d.Lines++
			id := requestID(l.Request)
			switch l.Verdict {
			case verdictDiffers:
				d.Differs++
				if d.Kinds == nil {
					d.Kinds = map[string]int{}
				}
				d.Kinds[l.Kind]++
				if l.Kind == "header" {
					if d.Headers == nil {
						d.Headers = map[string]int{}
					}
					d.Headers[l.Header]++
				}
			case verdictMissing:
				d.Missing++
			}
			if want := t.KindOf(id); want != "" && l.Verdict == verdictDiffers && l.Kind == want && !logged[id] {
				d.AsTold++
				logged[id] = true
				continue
			}
			d.Unexpected++
			if len(d.First) < maxDiffExamples {
				d.First = append(d.First, fmt.Sprintf("%s %s id %s offset %d (told: %s)", l.Verdict, l.Kind, id, l.Offset, cmp.Or(t.KindOf(id), "nothing")))
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return d, err
		}
	}
	if t != nil {
		for id := range t.kindOf {
			if !logged[id] {
				d.NotLogged++
			}
		}
	}
	return d, nil
}

// requestID returns the X-Lab-Id in a request line "GET /lab/<id>?... HTTP/1.1".
func requestID(line string) string {
	_, rest, ok := strings.Cut(line, "/lab/")
	if !ok {
		return ""
	}
	if i := strings.IndexAny(rest, "? "); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// countText writes counts in the order of keys, then any others sorted:
// "status 20, body 10"; "none" for none.
func countText[N int | uint64](m map[string]N, keys []string) string {
	var parts []string
	for _, k := range keys {
		if n := m[k]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, n))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if n := m[k]; n > 0 && !slices.Contains(keys, k) {
			parts = append(parts, fmt.Sprintf("%s %d", k, n))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// pairsText writes status pairs: "200->500 20, 200->503 1".
func pairsText(ps []StatusPair) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = fmt.Sprintf("%d->%d %d", p.Online, p.Target, p.Count)
	}
	return strings.Join(parts, ", ")
}

// writeCompare writes the comparison's lines of the text report.
func (r *Report) writeCompare(b *strings.Builder) {
	rs, t := r.Responses, r.Told
	if rs == nil {
		if t != nil && r.Copying {
			fmt.Fprintf(b, "compare    unknown: no verdicts in tcpcopy's metrics or final log line (is --compare-bytes 0?)\n")
		}
	} else {
		src := "tcpcopy metrics before stop"
		if rs.Source == "log" {
			src = "tcpcopy's final log line"
		}
		if rs.AtStop > 0 {
			src += fmt.Sprintf("; %d more judged at stop", rs.AtStop)
		}
		differ := ""
		if rs.Differs > 0 {
			differ = " (" + countText(rs.Kinds, diffKinds) + ")"
		}
		notCmp := ""
		if rs.NotCompared > 0 {
			notCmp = " (" + countText(rs.NotComparedWhy, nil) + ")"
		}
		fmt.Fprintf(b, "compare    %d responses: %d same, %d differ%s, %d missing, %d not compared%s (%s)\n",
			rs.Total(), rs.Same, rs.Differs, differ, rs.Missing, rs.NotCompared, notCmp, src)
		if ch := rs.Changed(); len(ch) > 0 {
			var same []string
			for _, p := range rs.StatusPairs {
				if p.Online == p.Target {
					same = append(same, fmt.Sprintf("%d %d", p.Online, p.Count))
				}
			}
			line := "  status   " + pairsText(ch)
			if len(same) > 0 {
				line += "; unchanged " + strings.Join(same, ", ")
			}
			fmt.Fprintln(b, line)
		}
	}
	if t != nil {
		fmt.Fprintf(b, "  told     target %s: %s\n", t.Differ, strings.Join(t.Rules, "; "))
		line := fmt.Sprintf("  told     %d answers changed: %s; %d slow, %d paused", t.Answers, countText(t.Kinds, diffKinds), t.Slow, t.Paused)
		if rs != nil {
			if rs.AsTold {
				line += ": verdicts as told"
			} else {
				line += ": verdicts NOT as told: " + strings.Join(rs.NotAsTold, "; ")
			}
		}
		fmt.Fprintln(b, line)
	} else if rs != nil && !rs.AsTold {
		fmt.Fprintf(b, "  check    the target answered like online, yet: %s\n", strings.Join(rs.NotAsTold, "; "))
	}
	if d := r.DiffLog; d != nil {
		file := ""
		if len(d.Files) > 0 {
			file = d.Files[len(d.Files)-1]
			if len(d.Files) > 1 {
				file += fmt.Sprintf(" and %d more", len(d.Files)-1)
			}
		}
		headers := ""
		if len(d.Headers) > 0 {
			headers = " [" + countText(d.Headers, nil) + "]"
		}
		fmt.Fprintf(b, "diff log   %d lines in %s: %d differ (%s)%s, %d missing; %d as told, %d unexpected, %d changed answers not logged\n",
			d.Lines, file, d.Differs, countText(d.Kinds, diffKinds), headers, d.Missing, d.AsTold, d.Unexpected, d.NotLogged)
		for _, f := range d.First {
			fmt.Fprintf(b, "  unexpected %s\n", f)
		}
	}
}
