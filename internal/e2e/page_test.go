package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/recorder"
	"github.com/tcpcopy-go/tcpcopy/internal/nsdo"
)

// pageScreenshotEnv names a file (an absolute path: the test runs in its
// package's directory) that TestPage also writes its screenshot to;
// docs/images/compare-page.png is made so. The load then runs 40 s, so
// that the plots have some history.
const pageScreenshotEnv = "TCPCOPY_PAGE_SCREENSHOT"

// pageRecorderPort is where the lab's target recorder goes in TestPage:
// the target port proper (labrun.TargetPort) is taken by pageChanges.
const pageRecorderPort = 8081

// xssRequest is a request line no page may turn into markup.
const xssRequest = "GET /lab/page-xss<b>bold</b><img/src=x/onerror=alert(1)> HTTP/1.1"

// TestPage runs a real copy whose target answers some requests
// differently, opens tcpcopy's live page (served on --metrics-addr inside
// the online namespace) in headless Chromium running in that namespace,
// and checks that the differences the test caused are on it: their
// request lines, the 200 → 500 status pair, the kinds, the verdict
// counts, a response time plot, and a hostile request line shown as text.
// The screenshot goes to the test's temporary directory (and to
// $TCPCOPY_PAGE_SCREENSHOT when set).
func TestPage(t *testing.T) {
	needRoot(t)
	chromium := needChromium(t)
	ipBin, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("needs iproute2's ip: ", err)
	}
	shotFile := os.Getenv(pageScreenshotEnv)
	loadFor := 6 * time.Second
	if shotFile != "" {
		loadFor = 40 * time.Second
	}

	changes := newPageChanges()
	var srv *http.Server
	var res pageResult
	cfg := labrun.Config{
		TargetPorts: []uint16{pageRecorderPort},
		Load: load.Options{
			Rate: 15, Duration: loadFor, MaxRequests: int(15 * loadFor / time.Second),
			Mode: load.Mixed, RequestsPerConn: 4, BodySizes: []int{0, 100, 3000}, Concurrency: 3,
			IDPrefix: "page",
		},
		// The target port is served from this process, inside the target
		// namespace: the lab's recorder answers, pageChanges changes
		// some answers.
		Setup: func(ctx context.Context, lab *labrun.Lab) error {
			var ln net.Listener
			err := nsdo.Do(lab.Topo.Target.Name, func() (err error) {
				ln, err = net.Listen("tcp", ":"+strconv.Itoa(labrun.TargetPort))
				return err
			})
			if err != nil {
				return err
			}
			srv = &http.Server{Handler: changes, ReadHeaderTimeout: 5 * time.Second}
			go func() { _ = srv.Serve(ln) }()
			return nil
		},
		During: func(ctx context.Context, lab *labrun.Lab) error {
			start := time.Now()
			if err := pageSendRaw(lab.Topo.Client.Name, netip.AddrPortFrom(lab.Topo.Online.ClientV4, labrun.OnlinePort).String(), xssRequest); err != nil {
				return fmt.Errorf("hostile request: %w", err)
			}
			var err error
			res, err = browsePage(ctx, t, pageBrowser{chromium: chromium, ip: ipBin, ns: lab.Topo.Online.Name},
				"http://"+labrun.DefaultTcpcopyMetrics+"/", changes, start.Add(loadFor-time.Second))
			return err
		},
	}
	defer func() {
		if srv != nil {
			srv.Close()
		}
	}()
	rep, _, _ := run(t, cfg)
	srv.Close()

	png := filepath.Join(t.TempDir(), "page.png")
	if err := os.WriteFile(png, res.shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", png, len(res.shot))
	if shotFile != "" {
		if err := os.WriteFile(shotFile, res.shot, 0o644); err != nil {
			t.Error(err)
		}
	}
	if rep.Tcpcopy.Exit != "" || rep.Intercept.Exit != "" {
		t.Errorf("a daemon died: tcpcopy %q, intercept %q", rep.Tcpcopy.Exit, rep.Intercept.Exit)
	}
	checkPage(t, res.first, res.probe, res.status, changes)
	if len(res.jsErrors) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(res.jsErrors, "\n"))
	}
	if len(res.shot) < 10000 || string(res.shot[1:4]) != "PNG" {
		t.Errorf("screenshot: %d bytes, not a plausible PNG", len(res.shot))
	}
}

// checkPage checks what the page showed, first when the differences
// appeared and at the end (p, just before the API's status st), against
// the changes the target made.
func checkPage(t *testing.T, first, p pageProbe, st apiStatus, changes *pageChanges) {
	t.Helper()
	if !slices.Contains(first.Requests, xssRequest) {
		t.Errorf("the hostile request line is not shown as text: %q", first.Requests)
	}
	if first.Markup+p.Markup != 0 {
		t.Errorf("%d elements were made from the traffic's bytes", first.Markup+p.Markup)
	}
	told := changes.told()
	t.Logf("the target changed %d answers; the page shows %d differences (%s), verdicts %v, kinds %v, status changes %q",
		len(told), len(p.Requests), p.DiffsCount, st.Compare.Verdicts, st.Compare.Kinds, p.StatusChanges)

	// The page's numbers are the API's (read just after the page).
	if n, err := strconv.ParseUint(strings.ReplaceAll(p.Differs, ",", ""), 10, 64); err != nil || n == 0 || n > st.Compare.Verdicts["differs"] {
		t.Errorf("page shows %q responses differing, the API %d", p.Differs, st.Compare.Verdicts["differs"])
	}
	if st.Compare.State != "on" {
		t.Errorf("compare state %q, want on", st.Compare.State)
	}
	if !slices.ContainsFunc(p.StatusChanges, func(s string) bool { return strings.HasPrefix(s, "200 → 500") }) {
		t.Errorf("status changes %q lack 200 → 500", p.StatusChanges)
	}
	if p.Fidelity == "" || p.Fidelity == "–" || p.LinksUp == "" || p.LinksUp == "0" {
		t.Errorf("fidelity %q, links up %q: the copy cards are not filled", p.Fidelity, p.LinksUp)
	}
	if p.TimeLines == 0 {
		t.Errorf("no response time line drawn")
	}

	// Every difference shown was caused by the test, and changes of
	// both kinds are shown, with the request line as sent.
	kinds := map[string]int{}
	for _, p := range []pageProbe{first, p} {
		for i, line := range p.Requests {
			how, ok := told[line]
			if !ok {
				t.Errorf("difference %q (%s) was not caused by the test", line, p.Badges[i])
				continue
			}
			if want := "differs: " + how; !strings.HasPrefix(p.Badges[i], want) {
				t.Errorf("difference %q shown as %q, want %q", line, p.Badges[i], want)
			}
			kinds[how]++
		}
	}
	for _, how := range []string{"status", "body"} {
		if kinds[how] == 0 {
			t.Errorf("no %s difference shown among %q", how, p.Requests)
		}
	}
	if p.Sides < 2*len(p.Requests) {
		t.Errorf("%d byte panes for %d differences, want two each", p.Sides, len(p.Requests))
	}
}

// needChromium returns Debian's chromium, installing it with
// scripts/deps.sh if it is missing; it skips the test if that fails.
func needChromium(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "../../scripts/deps.sh").CombinedOutput()
	if p, lerr := exec.LookPath("chromium"); lerr == nil {
		return p
	}
	t.Skipf("needs Debian's chromium, which is missing and could not be installed (scripts/deps.sh: %v): %s", err, out)
	return ""
}

// pageChanges answers as the lab's recorder does, except for some
// requests: every fifth from the second (page-1, page-6, ...) gets 500,
// every fifth from the fourth (page-3, page-8, ...) a body with one byte
// changed, and any request whose path has "<" 500.
type pageChanges struct {
	rec *recorder.Recorder

	mu      sync.Mutex
	changed map[string]string // request line → "status" or "body"
}

func newPageChanges() *pageChanges {
	return &pageChanges{rec: recorder.New(io.Discard, recorder.Options{}), changed: map[string]string{}}
}

// pageChange says how the answer to a request for path changes: "", "status"
// or "body".
func pageChange(path string) string {
	if strings.Contains(path, "<") {
		return "status"
	}
	i := strings.LastIndexByte(path, '-')
	seq, err := strconv.Atoi(path[i+1:])
	if i < 0 || err != nil {
		return ""
	}
	switch seq % 5 {
	case 1:
		return "status"
	case 3:
		return "body"
	}
	return ""
}

func (c *pageChanges) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rr := httptest.NewRecorder()
	c.rec.ServeHTTP(rr, r) // reads the body, as the online server does
	how := pageChange(r.URL.Path)
	if how != "" {
		c.mu.Lock()
		c.changed[r.Method+" "+r.RequestURI+" "+r.Proto] = how
		c.mu.Unlock()
	}
	if how == "status" {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, "page test: internal error\n")
		return
	}
	body := rr.Body.Bytes()
	if how == "body" && len(body) > 8 {
		body[8] ^= 0x20 // "tcpcopy-lab" becomes "tcpcopy-Lab"
	}
	for k, v := range rr.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rr.Code)
	w.Write(body)
}

// told returns the changed answers so far, by request line.
func (c *pageChanges) told() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]string, len(c.changed))
	for k, v := range c.changed {
		out[k] = v
	}
	return out
}

// pageSendRaw sends one request with the request line line from namespace ns
// to addr and reads the answer.
func pageSendRaw(ns, addr, line string) error {
	var c net.Conn
	err := nsdo.Do(ns, func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	})
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	host, _, _ := net.SplitHostPort(addr)
	if _, err := fmt.Fprintf(c, "%s\r\nHost: %s\r\n%s: page-xss\r\nConnection: close\r\n\r\n", line, host, recorder.IDHeader); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("online answered %s", resp.Status)
	}
	return err
}

// pageBrowser is how to start Chromium inside a namespace.
type pageBrowser struct {
	chromium, ip, ns string
}

// pageProbe is what the page shows, read from its document.
type pageProbe struct {
	Updated       string   `json:"updated"` // data-updated: a render finished
	Fidelity      string   `json:"fidelity"`
	LinksUp       string   `json:"linksUp"`
	Differs       string   `json:"differs"`
	StatusChanges []string `json:"statusChanges"`
	DiffsCount    string   `json:"diffsCount"`
	Requests      []string `json:"requests"`
	Badges        []string `json:"badges"`
	Sides         int      `json:"sides"`
	Markup        int      `json:"markup"` // elements inside the traffic's text
	TimeLines     int      `json:"timeLines"`
}

// probeJS reads a pageProbe from the document.
const probeJS = `(() => {
  const q = (s) => [...document.querySelectorAll(s)];
  const text = (id) => (document.getElementById(id) || {}).textContent || '';
  return {
    updated: document.body.dataset.updated || '',
    fidelity: text('fidelity'),
    linksUp: text('links-up'),
    differs: (q('#verdicts .tile.differs .n')[0] || {}).textContent || '',
    statusChanges: q('#status-changes li').map((e) => e.textContent),
    diffsCount: text('diffs-count'),
    requests: q('#diffs .request').map((e) => e.textContent),
    badges: q('#diffs .badge').map((e) => e.textContent),
    sides: q('#diffs .side pre').length,
    markup: q('#diffs .request *, #diffs pre img, #diffs pre b, #diffs pre script').length,
    timeLines: q('#chart-times path.line').length,
  };
})()`

// apiStatus is the part of /api/status the test reads.
type apiStatus struct {
	Compare struct {
		State    string            `json:"state"`
		Verdicts map[string]uint64 `json:"verdicts"`
		Kinds    map[string]uint64 `json:"kinds"`
	} `json:"compare"`
	Differences []struct {
		Request string `json:"request"`
	} `json:"differences"`
}

// pageResult is what browsePage saw.
type pageResult struct {
	first    pageProbe // when the differences had appeared
	probe    pageProbe // at the end
	status   apiStatus
	shot     []byte
	jsErrors []string
}

// browsePage opens url in a headless Chromium started in b's namespace
// (through "ip netns exec", talking to chromedp over a pipe), waits until
// the page shows the hostile request and a 200 → 500 change (until 20 s
// after shotAt at most), then, after shotAt, reads the page and the API
// again and takes a screenshot of the window. Chromium is gone when it
// returns.
func browsePage(ctx context.Context, t *testing.T, b pageBrowser, url string, changes *pageChanges, shotAt time.Time) (pageResult, error) {
	var res pageResult
	out, err := os.Create(filepath.Join(t.TempDir(), "chromium.log"))
	if err != nil {
		return res, err
	}
	defer out.Close()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(b.chromium),
		chromedp.NoSandbox, // root
		chromedp.DisableGPU,
		chromedp.Flag("disable-component-update", true), // no network here
		chromedp.WindowSize(1366, 1280),                 // the cards, the plots and the first differences
		chromedp.CombinedOutput(out),
		chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
			// ip netns exec execs Chromium in place: same pid, same pipes.
			cmd.Args = append([]string{"ip", "netns", "exec", b.ns, cmd.Path}, cmd.Args[1:]...)
			cmd.Path = b.ip
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		}),
	)
	actx, stopAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, stopBrowser := chromedp.NewContext(actx)
	var proc *os.Process
	defer func() {
		stopBrowser() // closes Chromium
		// Chromium is ours: kill its process group by pid if it is still
		// there (not reaped: the group id is still ours).
		if proc != nil && proc.Signal(syscall.Signal(0)) == nil {
			_ = syscall.Kill(-proc.Pid, syscall.SIGKILL)
		}
		stopAlloc() // waits for Chromium to exit, kills what is left of it, removes its profile
	}()

	var mu sync.Mutex
	record := func(s string) {
		mu.Lock()
		res.jsErrors = append(res.jsErrors, s)
		mu.Unlock()
	}
	if err := chromedp.Listen(bctx, func(ev any) {
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			record("exception: " + e.ExceptionDetails.Text + " " + e.ExceptionDetails.URL)
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				record("console.error")
			}
		case *log.EventEntryAdded:
			// A refused load (CSP) or a failed request; the page's
			// favicon and API must all be found.
			if e.Entry.Level == log.EntryLevelError {
				record(string(e.Entry.Source) + ": " + e.Entry.Text + " " + e.Entry.URL)
			}
		}
	}); err != nil {
		return res, fmt.Errorf("starting chromium: %w (%s)", err, pageLogTail(out.Name()))
	}
	proc = chromedp.FromContext(bctx).Browser.Process()
	if err := chromedp.Do(bctx, chromedp.Navigate(url)); err != nil {
		return res, fmt.Errorf("opening %s: %w", url, err)
	}

	probe := func() (pageProbe, error) { return chromedp.Run(bctx, chromedp.Evaluate[pageProbe](probeJS)) }
	ready := func(p pageProbe) bool {
		return p.Updated != "" && slices.Contains(p.Requests, xssRequest) &&
			slices.ContainsFunc(p.StatusChanges, func(s string) bool { return strings.HasPrefix(s, "200 → 500") }) &&
			p.TimeLines > 0
	}
	wait, cancel := context.WithDeadline(ctx, shotAt.Add(20*time.Second))
	defer cancel()
	for {
		p, err := probe()
		if err != nil {
			return res, fmt.Errorf("reading the page: %w", err)
		}
		res.first = p
		if ready(p) {
			break
		}
		select {
		case <-wait.Done():
			return res, fmt.Errorf("the page never showed the differences (%d changed by the target): last saw %+v", len(changes.told()), p)
		case <-time.After(300 * time.Millisecond):
		}
	}
	// More history for the plots, while the load runs.
	select {
	case <-time.After(time.Until(shotAt)):
	case <-ctx.Done():
	}
	// Read the page after its next render, then the API, so that the
	// page's counts are never newer than the API's.
	prev := res.first.Updated
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if p, err := probe(); err == nil && p.Updated != prev {
			break
		}
	}
	st, err := chromedp.Run(bctx, chromedp.Evaluate[apiStatus](`fetch('/api/status').then((r) => r.json())`, chromedp.EvalAwaitPromise))
	if err != nil {
		return res, fmt.Errorf("reading /api/status: %w", err)
	}
	res.status = st
	if res.probe, err = probe(); err != nil {
		return res, err
	}
	if res.shot, err = chromedp.Run(bctx, chromedp.CaptureScreenshot()); err != nil {
		return res, fmt.Errorf("screenshot: %w", err)
	}
	return res, nil
}

// pageLogTail returns the end of file name, for an error message.
func pageLogTail(name string) string {
	b, err := os.ReadFile(name)
	if err != nil {
		return err.Error()
	}
	if len(b) > 1000 {
		b = b[len(b)-1000:]
	}
	return string(b)
}
