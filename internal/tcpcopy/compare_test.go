package tcpcopy

import (
	"bufio"
	"encoding/json"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tcpcopy-go/tcpcopy/pkg/compare"
	"github.com/tcpcopy-go/tcpcopy/pkg/tcpstate"
)

func TestPrintable(t *testing.T) {
	tests := []struct{ in, want string }{
		{"HTTP/1.1 200 OK\r\n", `HTTP/1.1 200 OK\r\n`},
		{"caf\xc3\xa9", "café"},
		{"\x00\x01\xff", `\x00\x01\xff`},
		{`a\b`, `a\\b`},
		{"tab\there", `tab\x09here`},
	}
	for _, tt := range tests {
		if got := printable([]byte(tt.in)); got != tt.want {
			t.Errorf("printable(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestDiffLog writes differences to the log: one JSON line each, with the
// fields docs/compare.md lists, rotated past the size bound with three old
// files kept; the page keeps the newest.
func TestDiffLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "diff.jsonl")
	s := newDiffSink()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); s.run(path, 4096, stop, slog.New(slog.DiscardHandler)) }()
	k := tcpstate.Key{Client: netip.MustParseAddrPort("192.0.2.10:40000"), Target: netip.MustParseAddrPort("198.51.100.2:8080")}
	r := &compare.Result{Verdict: compare.Differs, Kind: compare.KindStatus, Index: 2, Request: []byte("GET /x HTTP/1.1"), Offset: -1, HTTP: true,
		Online: compare.Side{Status: 200, Length: 100, Body: 60, Hash: 0x0102030405060708, Time: 1500000, Bytes: []byte("HTTP/1.1 200 OK\r\n")},
		Target: compare.Side{Status: 500, Length: 90, Body: 50, Hash: 9, Bytes: []byte("HTTP/1.1 500 Internal Server Error\r\n")}}
	for range 60 {
		s.add(makeDiff(r, k, 1_700_000_000e9))
	}
	close(stop)
	<-done
	if s.written.Load() != 60 || s.dropped.Load() != 0 {
		t.Errorf("written %d, dropped %d", s.written.Load(), s.dropped.Load())
	}
	lines := 0
	for _, name := range []string{"diff.jsonl", "diff.jsonl.1", "diff.jsonl.2", "diff.jsonl.3"} {
		f, err := os.Open(filepath.Join(filepath.Dir(path), name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		st, _ := f.Stat()
		if st.Size() > 4096 {
			t.Errorf("%s: %d bytes, above the bound", name, st.Size())
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			lines++
			var d map[string]any
			if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
				t.Fatalf("%s: %v: %s", name, err, sc.Text())
			}
			on := d["online"].(map[string]any)
			if d["verdict"] != "differs" || d["kind"] != "status" || d["request"] != "GET /x HTTP/1.1" || d["client"] != "192.0.2.10:40000" ||
				on["status"] != 200.0 || on["hash"] != "0102030405060708" || on["time_ms"] != 1.5 || !strings.HasPrefix(on["bytes"].(string), `HTTP/1.1 200 OK\r\n`) ||
				d["target_response"].(map[string]any)["status"] != 500.0 {
				t.Fatalf("line %s", sc.Text())
			}
		}
		f.Close()
	}
	if _, err := os.Stat(path + ".4"); err == nil {
		t.Errorf("a fourth old file was kept")
	}
	if lines == 0 || lines >= 60 {
		t.Errorf("%d lines kept of 60 (the oldest rotate out)", lines)
	}
	if got := s.Latest(); len(got) != keepLatest || got[0].Index != 2 {
		t.Errorf("latest: %d", len(got))
	}
}

func TestCaptureTime(t *testing.T) {
	const now = int64(5e9)
	for _, c := range []struct {
		name     string
		last, ts int64
		want     int64
	}{
		{"newest", 100e9, 100e9, now},
		{"earlier", 100e9, 100e9 - 3e6, now - 3e6},
		{"bounded", 100e9, 90e9, now - 1e9},
		{"no stamp", 0, 0, now},
		{"after the newest", 100e9, 100e9 + 1, now},
	} {
		if got := captureTime(now, c.last, c.ts); got != c.want {
			t.Errorf("%s: captureTime = %d, want %d", c.name, got, c.want)
		}
	}
}

// TestMySQLDiff: a MySQL difference carries the command and both answers'
// summaries.
func TestMySQLDiff(t *testing.T) {
	k := tcpstate.Key{Client: netip.MustParseAddrPort("192.0.2.10:40000"), Target: netip.MustParseAddrPort("198.51.100.2:3306")}
	r := &compare.Result{Verdict: compare.Differs, Kind: compare.KindMySQLResult, Index: 4, Request: []byte("COM_QUERY SELECT * FROM gone"),
		Offset: -1, MySQL: true,
		Online: compare.Side{Length: 60, MySQL: compare.MySQLAnswer{Type: compare.MySQLResultSet, Columns: 2, Rows: 3, Results: 1, Whole: true}},
		Target: compare.Side{Length: 40, MySQL: compare.MySQLAnswer{Type: compare.MySQLError, ErrCode: 1146, SQLState: [5]byte{'4', '2', 'S', '0', '2'},
			Rows: 0, Results: 1, Whole: true}}}
	b, err := json.Marshal(makeDiff(r, k, 1_700_000_000e9))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Kind    string `json:"kind"`
		Request string `json:"request"`
		Online  struct {
			MySQL *DiffMySQL `json:"mysql"`
		} `json:"online"`
		Target struct {
			MySQL *DiffMySQL `json:"mysql"`
		} `json:"target_response"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	on, tg := d.Online.MySQL, d.Target.MySQL
	if d.Kind != "mysql_result" || d.Request != "COM_QUERY SELECT * FROM gone" || on == nil || tg == nil ||
		on.Answer != "result_set" || on.Summary != "result set: 2 columns, 3 rows" || on.Rows != 3 ||
		tg.Answer != "error" || tg.Error != 1146 || tg.SQLState != "42S02" || tg.Summary != "ERR 1146 (42S02)" {
		t.Errorf("%s", b)
	}
	r.Verdict, r.Kind, r.Target = compare.Missing, compare.KindNone, compare.Side{}
	if d := makeDiff(r, k, 0); d.TargetR.MySQL != nil || d.Online.MySQL == nil {
		t.Errorf("missing: %+v", d)
	}
}
