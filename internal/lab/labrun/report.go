package labrun

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/leakwatch"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/recorder"
)

// ProcReport describes a program of the lab in a Report: tcpcopy,
// intercept, or the lab's own load client and recorders (summed over their
// instances).
type ProcReport struct {
	Bin        string        `json:"bin"`
	Args       []string      `json:"args"`
	CPUSeconds float64       `json:"cpu_seconds"` // user + system
	User       time.Duration `json:"user"`
	System     time.Duration `json:"system"`
	PeakRSS    int64         `json:"peak_rss"`           // bytes, highest of all instances
	Exit       string        `json:"exit,omitempty"`     // non-empty when it failed or died before being stopped
	Stderr     string        `json:"stderr"`             // path of its (last instance's) stderr file
	Restarts   int           `json:"restarts,omitempty"` // instances started after the first (Lab.StartIntercept, ...)

	// tcpcopy only.
	MetricsAddr string             `json:"metrics_addr,omitempty"` // inside the online namespace
	Sessions    *Sessions          `json:"sessions,omitempty"`
	Metrics     map[string]float64 `json:"metrics,omitempty"` // unlabelled tcpcopy_* values read before stopping
	Responses   *Responses         `json:"responses,omitempty"`
	DiffLog     string             `json:"diff_log,omitempty"` // its --diff-log file
}

// Lost explains the online requests that did not reach the target intact.
type Lost struct {
	Requests    int `json:"requests"`    // missing or with a different body
	Connections int `json:"connections"` // distinct client connections they were sent on
	// NotReproduced is the number of sessions tcpcopy ended partial or
	// failed, or left open at stop. Every connection that lost a request
	// should be one of them (Explained); when not, tcpcopy lost requests on
	// sessions it counted as reproduced.
	NotReproduced uint64 `json:"not_reproduced"`
	Explained     bool   `json:"explained"`
}

// Network is the client stack and the links a run used (Config), with the
// frames the loss rules dropped.
type Network struct {
	ClientStack    string   `json:"client_stack"` // a ClientStacks name, "linux" or "custom"
	ClientSysctls  []string `json:"client_sysctls,omitempty"`
	ClientMSS      int      `json:"client_mss,omitempty"`  // IPv4; 0: unchanged
	ClientMSS6     int      `json:"client_mss6,omitempty"` // IPv6; 0: unchanged
	ClientMTU      int      `json:"client_mtu,omitempty"`  // 0: 1500
	TargetMTU      int      `json:"target_mtu,omitempty"`  // 0: 1500
	DataOnAck      bool     `json:"data_on_ack,omitempty"`
	ExpectContinue bool     `json:"expect_continue,omitempty"`
	LossCopy       float64  `json:"loss_copy"`     // percent of TCP frames, online to target
	LossResponse   float64  `json:"loss_response"` // percent of TCP frames, target to assistant
	// DroppedCopy and DroppedResponse are the TCP frames the loss rules
	// dropped, read after tcpcopy stopped.
	DroppedCopy     uint64 `json:"dropped_copy"`
	DroppedResponse uint64 `json:"dropped_response"`
}

// stackText describes the client stack's settings.
func (n Network) stackText() string {
	var parts []string
	parts = append(parts, n.ClientSysctls...)
	if n.ClientMSS != 0 {
		if n.ClientMSS6 != 0 {
			parts = append(parts, fmt.Sprintf("MSS %d", n.ClientMSS))
		} else {
			parts = append(parts, fmt.Sprintf("MSS %d (IPv4 only: MSS+60 is below the IPv6 minimum MTU)", n.ClientMSS))
		}
	}
	if n.ClientMTU != 0 {
		parts = append(parts, fmt.Sprintf("client link MTU %d", n.ClientMTU))
	}
	if n.TargetMTU != 0 {
		parts = append(parts, fmt.Sprintf("target MTU %d (online sends at 1500)", n.TargetMTU))
	}
	if n.DataOnAck {
		parts = append(parts, "requests on the handshake's ACK")
	}
	if n.ExpectContinue {
		parts = append(parts, "Expect: 100-continue")
	}
	if len(parts) == 0 {
		return "the lab's Linux defaults"
	}
	return strings.Join(parts, ", ")
}

// lossText describes the loss and what it dropped.
func (n Network) lossText() string {
	if n.LossCopy == 0 && n.LossResponse == 0 {
		return "none"
	}
	path := func(pct float64, dropped uint64) string {
		if pct == 0 {
			return "0%"
		}
		return fmt.Sprintf("%g%% (%d TCP frames dropped)", pct, dropped)
	}
	return "copy " + path(n.LossCopy, n.DroppedCopy) + ", response " + path(n.LossResponse, n.DroppedResponse)
}

// ServerReport names the target server of a run (Config.TargetServer) and
// what makes it close or refuse connections.
type ServerReport struct {
	Name     string `json:"name"`     // a TargetServers name
	Software string `json:"software"` // "nginx 1.22.1 in front of the target recorder", ...
	Limits   string `json:"limits"`   // TargetServer.Limits
	Doc      string `json:"doc"`      // TargetServer.Doc
	// Proc is nginx's CPU time and memory, when it ran.
	Proc *ProcReport `json:"proc,omitempty"`
}

// text is the report's "server" line, after the label.
func (s ServerReport) text() string {
	name := s.Name
	if name == "" {
		name = TargetServers[0].Name
	}
	if s.Software == "" {
		return name
	}
	return name + ": " + s.Software + "; " + s.Limits
}

// Report is the outcome of a run.
type Report struct {
	ID      string        `json:"id"`  // topology id
	Dir     string        `json:"dir"` // logs
	Start   time.Time     `json:"start"`
	Elapsed time.Duration `json:"elapsed"` // set when the run completed
	URL     string        `json:"url"`     // of the first load client
	Copying bool          `json:"copying"`
	GRO     bool          `json:"gro"`     // GRO was on on the receiving veths
	Sources int           `json:"sources"` // client addresses the load came from
	Network Network       `json:"network"` // client stack, MTUs, loss
	Server  ServerReport  `json:"target_server"`
	// TLS is the TLS terminator on online (Config.TLSTerminator), Hop
	// what the application behind it and the target saw of the copied
	// hop; nil without one.
	TLS       *TLSReport          `json:"tls,omitempty"`
	Hop       *Hop                `json:"hop,omitempty"`
	Pcap      *PcapReport         `json:"pcap,omitempty"`
	Load      load.Stats          `json:"load"` // every load client together
	Compare   recorder.Comparison `json:"compare"`
	Tcpcopy   *ProcReport         `json:"tcpcopy,omitempty"` // the first tcpcopy
	Intercept *ProcReport         `json:"intercept,omitempty"`
	// Tcpcopies are all tcpcopy instances, Tcpcopy first.
	Tcpcopies []*ProcReport `json:"tcpcopies,omitempty"`
	// Sessions sums the session counts of the tcpcopy instances; nil when
	// none could be read.
	Sessions *Sessions `json:"sessions,omitempty"`
	// Responses sums tcpcopy's verdicts on the target's responses; nil
	// when the comparison was off or they could not be read.
	Responses *Responses `json:"responses,omitempty"`
	// Told is what the target was told to change (Config.TargetDiffer)
	// and changed; nil when it answered like the online server.
	Told *Told `json:"told,omitempty"`
	// DiffLog summarizes tcpcopy's diff logs (Config.DiffLog).
	DiffLog *DiffLog `json:"diff_log,omitempty"`
	// Lost is set when requests were missing or different at the target.
	Lost *Lost `json:"lost,omitempty"`
	// Leaks is what the watcher in the client namespace saw
	// (Config.LeakCheck): Packets must be 0.
	Leaks *leakwatch.Result `json:"leaks,omitempty"`
	// LoadClient and Recorders are the lab's own programs, for judging how
	// much of the machine the measured programs had.
	LoadClient *ProcReport `json:"load_client,omitempty"`
	Recorders  *ProcReport `json:"recorders,omitempty"`
	Problems   []string    `json:"problems,omitempty"` // non-fatal trouble worth a look
}

// WriteText writes r as a short human-readable report (docs/lab.md, "Reading
// the report").
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	gro := "off"
	if r.GRO {
		gro = "on"
	}
	fmt.Fprintf(&b, "lab %s: %s, GRO %s, %d client addresses, logs in %s\n", r.ID, r.Elapsed.Round(time.Millisecond), gro, max(r.Sources, 1), r.Dir)
	stack := r.Network.ClientStack
	if stack == "" {
		stack = "linux"
	}
	fmt.Fprintf(&b, "client     stack %s: %s\n", stack, r.Network.stackText())
	fmt.Fprintf(&b, "server     %s\n", r.Server.text())
	if r.TLS != nil {
		fmt.Fprintf(&b, "tls        %s\n", r.TLS.text())
	}
	fmt.Fprintf(&b, "loss       %s\n", r.Network.lossText())
	if p := r.Pcap; p != nil {
		extra := ""
		if p.DroppedByInterface > 0 {
			extra = fmt.Sprintf(", %d dropped by interface", p.DroppedByInterface)
		}
		fmt.Fprintf(&b, "pcap       %s: %d packets captured, %d dropped by kernel%s\n", p.File, p.Captured, p.DroppedByKernel, extra)
	}
	l := r.Load
	rate := 0.0
	if l.Elapsed > 0 {
		rate = float64(l.Requests) / l.Elapsed.Seconds()
	}
	h2 := ""
	if l.HTTP2 > 0 {
		h2 = fmt.Sprintf(", %d over HTTP/2", l.HTTP2)
	}
	fmt.Fprintf(&b, "load       %d requests to %s in %s (%.1f/s): %d ok, %d failed, %d on keep-alive connections, %d connections%s\n",
		l.Requests, r.URL, l.Elapsed.Round(time.Millisecond), rate, l.OK, l.Failed, l.KeepAlive, l.Connections, h2)
	fmt.Fprintf(&b, "latency    p50 %s  p99 %s  max %s\n", l.P50.Round(time.Microsecond), l.P99.Round(time.Microsecond), l.Max.Round(time.Microsecond))
	if l.FirstErr != "" {
		fmt.Fprintf(&b, "first error %s\n", l.FirstErr)
	}
	c := r.Compare
	fmt.Fprintf(&b, "online     %d requests recorded\n", c.Online)
	fmt.Fprintf(&b, "target     %d requests recorded: %d matched, %d with a different body, %d missing, %d duplicates, %d unexpected\n",
		c.Target, c.Matched, c.Mismatched, c.Missing, c.Duplicates, c.Unexpected)
	note := ""
	if !r.Copying {
		note = " (no tcpcopy: copying disabled)"
	}
	if s := r.Sessions; s != nil && s.Copy.Known && r.Copying {
		note += fmt.Sprintf("; tcpcopy reports %.2f%% (request bytes acknowledged by the target / captured + uncopied)", 100*s.Copy.Fidelity)
	}
	fmt.Fprintf(&b, "fidelity   %.1f%%%s\n", c.Fidelity, note)
	if c.Matched > 0 {
		fmt.Fprintf(&b, "copy       latency online→target p50 %s  p99 %s  max %s\n",
			c.LatencyP50.Round(time.Microsecond), c.LatencyP99.Round(time.Microsecond), c.LatencyMax.Round(time.Microsecond))
	}
	if r.Hop != nil {
		fmt.Fprintf(&b, "hop        %s\n", r.Hop.text())
	}
	if len(c.MissingIDs) > 0 && r.Copying {
		fmt.Fprintf(&b, "missing    %s\n", strings.Join(c.MissingIDs, " "))
	}
	if len(c.MismatchedIDs) > 0 {
		fmt.Fprintf(&b, "different  %s\n", strings.Join(c.MismatchedIDs, " "))
	}
	if s := r.Sessions; s != nil {
		src := "tcpcopy metrics before stop"
		if s.Source == "log" {
			src = "tcpcopy's final log line"
		}
		fmt.Fprintf(&b, "sessions   %d opened: %d reproduced, %d partial, %d failed, %d open at stop (%s)\n",
			s.Opened, s.Reproduced, s.Partial, s.Failed, s.Open, src)
		for _, o := range []string{"partial", "failed"} {
			var parts []string
			for _, e := range s.Ends {
				if e.Outcome == o {
					parts = append(parts, fmt.Sprintf("%s %d", e.Reason, e.Count))
				}
			}
			if len(parts) > 0 {
				fmt.Fprintf(&b, "  %-8s %s\n", o, strings.Join(parts, ", "))
			}
		}
		if n := s.Copy.Reconnects; n > 0 {
			fmt.Fprintf(&b, "  reconnects %d: the target closed connections with requests pending, tcpcopy opened new ones\n", n)
		}
		if cs := s.Copy; cs.UncopiedBytes > 0 || cs.UncopiedRequests > 0 {
			var parts []string
			for _, u := range cs.Uncopied {
				parts = append(parts, fmt.Sprintf("%s %d requests %d bytes", u.Reason, u.Requests, u.Bytes))
			}
			why := ""
			if len(parts) > 0 {
				why = ": " + strings.Join(parts, ", ")
			}
			fmt.Fprintf(&b, "uncopied   %d requests (%d bytes) no session carried, their session had ended%s\n", cs.UncopiedRequests, cs.UncopiedBytes, why)
		}
	} else if r.Copying {
		fmt.Fprintf(&b, "sessions   unknown (neither tcpcopy's metrics nor its final log line could be read)\n")
	}
	if lo := r.Lost; lo != nil {
		verdict := "each is on a session tcpcopy did not reproduce (reasons above)"
		if !lo.Explained {
			verdict = "more connections than sessions tcpcopy counted as not reproduced: requests were lost without a reason, see the logs"
		}
		fmt.Fprintf(&b, "lost       %d requests on %d client connections, %d sessions not reproduced: %s\n",
			lo.Requests, lo.Connections, lo.NotReproduced, verdict)
	}
	r.writeCompare(&b)
	if lk := r.Leaks; lk != nil {
		fmt.Fprintf(&b, "leaks      %d packets from the target reached the client namespace\n", lk.Packets)
		for _, p := range lk.First {
			fmt.Fprintf(&b, "  leaked   %s\n", p)
		}
	}
	type named struct {
		name string
		r    *ProcReport
	}
	var procs []named
	for i, p := range r.Tcpcopies {
		name := "tcpcopy"
		if len(r.Tcpcopies) > 1 {
			name = fmt.Sprintf("tcpcopy#%d", i+1)
		}
		procs = append(procs, named{name, p})
	}
	if len(r.Tcpcopies) == 0 && r.Tcpcopy != nil {
		procs = append(procs, named{"tcpcopy", r.Tcpcopy})
	}
	procs = append(procs, named{"intercept", r.Intercept}, named{"loadgen", r.LoadClient}, named{"recorders", r.Recorders}, named{"nginx", r.Server.Proc})
	if r.TLS != nil {
		procs = append(procs, named{"tls nginx", r.TLS.Proc})
	}
	for _, p := range procs {
		if p.r == nil {
			continue
		}
		extra := ""
		if p.r.Restarts > 0 {
			extra = fmt.Sprintf(", restarted %d times", p.r.Restarts)
		}
		fmt.Fprintf(&b, "%-10s cpu %.2f s (user %.2f, sys %.2f), peak rss %.1f MiB%s\n", p.name, p.r.CPUSeconds,
			p.r.User.Seconds(), p.r.System.Seconds(), float64(p.r.PeakRSS)/(1<<20), extra)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "problem    %s\n", p)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes r as indented JSON to path.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
