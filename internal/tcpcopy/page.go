package tcpcopy

// page.go serves the live page of a copy on --metrics-addr, beside
// /metrics: "/" is an HTML page (with its script, style and icon under
// /page/, all embedded from page/: no CDN, no external font, it works
// offline), and "/api/status" is the JSON the page polls every second:
// fidelity, sessions, links, the comparison's verdicts, the latest
// differences, and the response time samples. docs/compare.md ("The
// page") describes it for users.
//
// The samples come from a ring kept here: once a second the engine's
// counters are read and the change since the previous second is kept as
// one sample (the p50 and p99 of the response times of that second,
// estimated from the histograms' deltas, the requests, the verdicts), the
// last pageSamples of them, so that a page opened late shows the last ten
// minutes. Memory is fixed: the ring is an array, a status answer holds at
// most pageSamples samples, keepLatest differences and pageTopPairs
// status pairs.
//
// The page is read-only (GET and HEAD only). Everything in it that comes
// from the traffic (request lines, response bytes, header names) is put
// in the document as text, never as HTML; every answer carries a
// Content-Security-Policy allowing this origin only, and nosniff.

import (
	"cmp"
	"context"
	"embed"
	"encoding/json"
	"log/slog"
	"math"
	"net/http"
	"path"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/daemon"
	imetrics "github.com/tcpcopy-go/tcpcopy/internal/metrics"
	"github.com/tcpcopy-go/tcpcopy/internal/version"
	"github.com/tcpcopy-go/tcpcopy/pkg/compare"
	"github.com/tcpcopy-go/tcpcopy/pkg/tcpstate"
)

//go:embed page
var pageFS embed.FS

const (
	// pageEvery is the period of the samples.
	pageEvery = time.Second
	// pageSamples is how many samples the ring keeps: ten minutes.
	pageSamples = 600
	// pageTopPairs is how many changed status pairs the status lists.
	pageTopPairs = 10
	// pageCSP allows this origin only: the page's own script, style,
	// icon and API. It is not to be framed.
	pageCSP = "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

// pageTypes are the content types of the embedded files, by extension
// (not from the system's MIME tables: the same on every host).
var pageTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
}

// page serves the live page. Its methods are safe for concurrent use.
type page struct {
	// snap reads the engine's counters; comparing reports whether a link
	// that compares responses is up; diffs returns the latest
	// differences, newest first (nil when the comparison is off).
	snap      func() snapshot
	comparing func() bool
	diffs     func() []*Diff
	info      pageInfo
	log       *slog.Logger
	mux       *http.ServeMux

	mu   sync.Mutex
	ring [pageSamples]pageSample
	n    int          // samples in ring
	next int          // index of the next sample in ring
	prev pageCounters // the counters at the previous sample
}

// pageInfo is what the page shows that does not change during a run.
type pageInfo struct {
	start        time.Time
	mappings     []string
	compareBytes int // 0: the comparison is off
}

// pageCounters are the counters a sample is the change of.
type pageCounters struct {
	requests       uint64
	target, online tcpstate.DurationHistogram
	verdicts       [compare.NumVerdicts]uint64
}

// newPage returns the page of e.
func newPage(e *engine, log *slog.Logger) *page {
	info := pageInfo{start: e.start}
	if e.cmp != nil {
		info.compareBytes = e.cmp.Bytes
	}
	for _, m := range e.cfg.Mappings {
		info.mappings = append(info.mappings, m.String())
	}
	diffs := func() []*Diff { return nil }
	if e.diffs != nil {
		diffs = e.diffs.Latest
	}
	return makePage(e.snapshot, e.links.Comparing, diffs, info, log)
}

// makePage returns a page that reads its numbers from snap, comparing
// and diffs.
func makePage(snap func() snapshot, comparing func() bool, diffs func() []*Diff, info pageInfo, log *slog.Logger) *page {
	p := &page{snap: snap, comparing: comparing, diffs: diffs, info: info, log: log, mux: http.NewServeMux()}
	p.mux.HandleFunc("GET /{$}", p.serveIndex)
	p.mux.HandleFunc("GET /page/{file}", p.serveAsset)
	p.mux.HandleFunc("GET /api/status", p.serveStatus)
	return p
}

// mount is the page's place on the metrics endpoint: every path but
// /metrics.
func (p *page) mount() imetrics.Mount { return imetrics.Mount{Pattern: "/", Handler: p} }

// ServeHTTP answers the page's paths, 404 for any other, 405 for methods
// other than GET and HEAD. Every answer carries the security headers.
func (p *page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	p.mux.ServeHTTP(w, r)
}

// serveIndex answers "/" with the page.
func (p *page) serveIndex(w http.ResponseWriter, r *http.Request) { p.serveFile(w, r, "index.html") }

// serveAsset answers /page/NAME with the embedded file NAME.
func (p *page) serveAsset(w http.ResponseWriter, r *http.Request) {
	p.serveFile(w, r, r.PathValue("file"))
}

// serveFile answers with the embedded file name, 404 if there is none.
func (p *page) serveFile(w http.ResponseWriter, r *http.Request, name string) {
	ctype, ok := pageTypes[path.Ext(name)]
	b, err := pageFS.ReadFile("page/" + name)
	if !ok || err != nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	_, _ = w.Write(b)
}

// serveStatus answers /api/status: the status now, with the samples
// taken after ?since= (unix milliseconds; all of them without it).
func (p *page) serveStatus(w http.ResponseWriter, r *http.Request) {
	var since int64
	if v := r.URL.Query().Get("since"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			http.Error(w, "since: not a number of milliseconds", http.StatusBadRequest)
			return
		}
		since = n
	}
	s := p.snap()
	st := p.status(&s, time.Now(), since)
	b, err := json.Marshal(st)
	if err != nil { // cannot happen: plain fields, finite numbers
		p.log.Error("page status", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}

// sample takes a sample every pageEvery until ctx ends. The workers
// publish their counters every 500 ms from about the time Run starts
// them: sampling a quarter of a second off that beat puts two
// publications in every sample, rather than one or three by jitter.
func (p *page) sample(ctx context.Context) {
	select {
	case <-time.After(pageEvery / 4):
	case <-ctx.Done():
		return
	}
	daemon.Every(ctx, pageEvery, p.tick)
}

// tick takes one sample.
func (p *page) tick(now time.Time) {
	s := p.snap()
	p.record(now, &s)
}

// record adds the sample that s, read at now, makes: the change since the
// previous one (since the start for the first).
func (p *page) record(now time.Time, s *snapshot) {
	cur := pageCounters{requests: s.st.Requests, target: s.st.Latency.Target, online: s.st.Latency.Online}
	if s.cmp.On {
		cur.verdicts = s.cmp.Stats.Verdicts
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	prev := &p.prev
	smp := pageSample{
		T:        now.UnixMilli(),
		Requests: sub(cur.requests, prev.requests),
		Target:   deltaTimes(&cur.target, &prev.target),
		Online:   deltaTimes(&cur.online, &prev.online),
	}
	if s.cmp.On {
		smp.Same = sub(cur.verdicts[compare.Same], prev.verdicts[compare.Same])
		smp.Differs = sub(cur.verdicts[compare.Differs], prev.verdicts[compare.Differs])
		smp.Missing = sub(cur.verdicts[compare.Missing], prev.verdicts[compare.Missing])
	}
	p.prev = cur
	p.ring[p.next] = smp
	p.next = (p.next + 1) % pageSamples
	p.n = min(p.n+1, pageSamples)
}

// sub is a-b for counters, 0 if a counter went back (it never does).
func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// deltaTimes describes the observations cur has that prev had not.
func deltaTimes(cur, prev *tcpstate.DurationHistogram) pageTimes {
	var d tcpstate.DurationHistogram
	for i := range d.Counts {
		d.Counts[i] = sub(cur.Counts[i], prev.Counts[i])
	}
	return histTimes(&d)
}

// histTimes describes h: its count and estimated quantiles.
func histTimes(h *tcpstate.DurationHistogram) pageTimes {
	n := h.Count()
	if n == 0 {
		return pageTimes{}
	}
	return pageTimes{N: n, P50: ms(h.Quantile(0.5)), P99: ms(h.Quantile(0.99))}
}

// ms is d in milliseconds, to the microsecond.
func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// samples returns the samples taken after since (unix ms), oldest first.
func (p *page) samples(since int64) []pageSample {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]pageSample, 0, p.n)
	for i := range p.n {
		smp := p.ring[(p.next-p.n+i+pageSamples)%pageSamples]
		if smp.T > since {
			out = append(out, smp)
		}
	}
	return out
}

// pageStatus is the answer of /api/status. docs/compare.md lists its
// fields; the page (page/page.js) reads them.
type pageStatus struct {
	Version  string   `json:"version"`
	Now      int64    `json:"now"`     // unix ms
	Started  int64    `json:"started"` // unix ms
	Mappings []string `json:"mappings"`

	Fidelity         float64 `json:"fidelity"`
	CapturedBytes    uint64  `json:"captured_bytes"`
	AckedBytes       uint64  `json:"acked_bytes"`
	UncopiedBytes    uint64  `json:"uncopied_bytes"`
	Requests         uint64  `json:"requests"`
	UncopiedRequests uint64  `json:"uncopied_requests"`

	Sessions      pageSessions `json:"sessions"`
	Links         pageLinks    `json:"links"`
	ResponseTimes struct {
		Target pageTimes `json:"target"`
		Online pageTimes `json:"online"`
	} `json:"response_times"`
	Compare     pageCompare  `json:"compare"`
	Samples     []pageSample `json:"samples"`
	Differences []*Diff      `json:"differences"`
}

// pageSessions counts the sessions.
type pageSessions struct {
	Opened     uint64 `json:"opened"`
	Active     int    `json:"active"`
	Reproduced uint64 `json:"reproduced"`
	Partial    uint64 `json:"partial"`
	Failed     uint64 `json:"failed"`
	// TopFailures are the reasons of the partial and failed sessions,
	// most frequent first, at most topReasons.
	TopFailures []pageCount `json:"top_failures"`
}

// pageCount is a count with its name.
type pageCount struct {
	Name  string `json:"name"`
	Count uint64 `json:"count"`
}

// pageLinks describes the intercept links.
type pageLinks struct {
	Up         int             `json:"up"`
	Intercepts []pageIntercept `json:"intercepts"`
}

// pageIntercept describes the links to one intercept.
type pageIntercept struct {
	Addr    string `json:"addr"`
	Up      int    `json:"up"`
	Version uint8  `json:"version"` // protocol of the latest link, 0 never linked
	Compare int    `json:"compare"` // bytes it compares, 0 none
}

// pageCompare is the response comparison.
type pageCompare struct {
	// State is "on", "off" (--compare-bytes 0) or "no_link" (on, but no
	// intercept link that compares is up: new sessions are not compared).
	State string `json:"state"`
	Bytes int    `json:"bytes"` // --compare-bytes
	// Verdicts and Kinds are keyed by the verdict and kind names of the
	// metrics (same, differs, missing, not_compared; status, header,
	// length, body); empty when the comparison is off.
	Verdicts    map[string]uint64 `json:"verdicts"`
	Kinds       map[string]uint64 `json:"kinds"`
	NotCompared []pageCount       `json:"not_compared"`
	// StatusChanges are the status pairs that differ, most first, at most
	// pageTopPairs.
	StatusChanges  []pageStatusPair `json:"status_changes"`
	DiffLogWritten uint64           `json:"diff_log_written"`
	DiffLogDropped uint64           `json:"diff_log_dropped"`
}

// pageStatusPair counts the compared responses of one status pair.
type pageStatusPair struct {
	Online int    `json:"online"`
	Target int    `json:"target"`
	Count  uint64 `json:"count"`
}

// pageSample is what changed in one second.
type pageSample struct {
	T        int64     `json:"t"`        // end of the second, unix ms
	Requests uint64    `json:"requests"` // requests sent to the target
	Target   pageTimes `json:"target"`
	Online   pageTimes `json:"online"`
	Same     uint64    `json:"same"`
	Differs  uint64    `json:"differs"`
	Missing  uint64    `json:"missing"`
}

// pageTimes are response times: how many, and their estimated median and
// 99th percentile in milliseconds (0 when N is 0).
type pageTimes struct {
	N   uint64  `json:"n"`
	P50 float64 `json:"p50_ms"`
	P99 float64 `json:"p99_ms"`
}

// status builds the answer of /api/status from s, read at now, with the
// samples after since.
func (p *page) status(s *snapshot, now time.Time, since int64) *pageStatus {
	st := &s.st
	ub, ur := st.Uncopied()
	out := &pageStatus{
		Version: version.String(), Now: now.UnixMilli(), Started: p.info.start.UnixMilli(),
		Mappings: p.info.mappings,
		Fidelity: st.Fidelity(), CapturedBytes: st.CapturedBytes, AckedBytes: st.AckedBytes,
		UncopiedBytes: ub, Requests: st.Requests, UncopiedRequests: ur,
		Sessions: pageSessions{
			Opened: st.Opened, Active: st.Active,
			Reproduced: st.ClosedBy(tcpstate.Reproduced), Partial: st.ClosedBy(tcpstate.Partial), Failed: st.ClosedBy(tcpstate.Failed),
			TopFailures: failureCounts(st, topReasons),
		},
		Links:   pageLinks{Up: s.links.Up, Intercepts: []pageIntercept{}},
		Compare: p.compareStatus(s),
		Samples: p.samples(since),
	}
	if out.Mappings == nil {
		out.Mappings = []string{}
	}
	for _, srv := range s.links.Servers {
		out.Links.Intercepts = append(out.Links.Intercepts, pageIntercept{
			Addr: srv.Addr.String(), Up: srv.Up, Version: srv.Format.Version, Compare: srv.Format.Compare,
		})
	}
	out.ResponseTimes.Target = histTimes(&st.Latency.Target)
	out.ResponseTimes.Online = histTimes(&st.Latency.Online)
	out.Differences = p.diffs()
	if out.Differences == nil {
		out.Differences = []*Diff{}
	}
	return out
}

// compareStatus describes the comparison in s.
func (p *page) compareStatus(s *snapshot) pageCompare {
	c := pageCompare{State: "off", Bytes: p.info.compareBytes,
		Verdicts: map[string]uint64{}, Kinds: map[string]uint64{},
		NotCompared: []pageCount{}, StatusChanges: []pageStatusPair{}}
	if !s.cmp.On {
		return c
	}
	c.State = "on"
	if !p.comparing() {
		c.State = "no_link"
	}
	cs := &s.cmp.Stats
	for v := range compare.NumVerdicts {
		c.Verdicts[compare.Verdict(v).String()] = cs.Verdicts[v]
	}
	for k := 1; k < compare.NumKinds; k++ {
		c.Kinds[compare.Kind(k).String()] = cs.Kinds[k]
	}
	for r := 1; r < compare.NumReasons; r++ {
		if n := cs.NotCompared[r]; n > 0 {
			c.NotCompared = append(c.NotCompared, pageCount{compare.Reason(r).String(), n})
		}
	}
	for k, n := range cs.Statuses {
		if k/1000 != k%1000 {
			c.StatusChanges = append(c.StatusChanges, pageStatusPair{Online: k / 1000, Target: k % 1000, Count: n})
		}
	}
	slices.SortFunc(c.StatusChanges, func(a, b pageStatusPair) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Online, b.Online), cmp.Compare(a.Target, b.Target))
	})
	c.StatusChanges = c.StatusChanges[:min(len(c.StatusChanges), pageTopPairs)]
	c.DiffLogWritten, c.DiffLogDropped = s.cmp.Written, s.cmp.Dropped
	return c
}

// failureCounts lists the reasons of the partial and failed sessions,
// most frequent first (then by name), at most n.
func failureCounts(st *tcpstate.Stats, n int) []pageCount {
	out := []pageCount{}
	for r := range tcpstate.NumReasons {
		if c := st.Closed[tcpstate.Partial][r] + st.Closed[tcpstate.Failed][r]; c > 0 {
			out = append(out, pageCount{tcpstate.Reason(r).String(), c})
		}
	}
	slices.SortFunc(out, func(a, b pageCount) int { return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Name, b.Name)) })
	return out[:min(len(out), n)]
}
