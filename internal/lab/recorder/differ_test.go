package recorder

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseDiffer(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   string
		want Differ // nil with err: an error
		str  string // String(); in when empty
		err  string // in the error
	}{
		{name: "empty", in: ""},
		{name: "none", in: "none", str: ""},
		{name: "status", in: "status:500:50", want: Differ{{Change: ChangeStatus, Status: 500, Every: 50, At: 49}}},
		{name: "body at", in: "body:100@24", want: Differ{{Change: ChangeBody, Every: 100, At: 24}}},
		{name: "at the default", in: "body:100@99", want: Differ{{Change: ChangeBody, Every: 100, At: 99}}, str: "body:100"},
		{name: "every request", in: "header:1", want: Differ{{Change: ChangeHeader, Every: 1, At: 0}}},
		{name: "slow", in: "slow:20:200ms", want: Differ{{Change: ChangeSlow, Every: 20, At: 19, Delay: 200 * time.Millisecond}}},
		{name: "pause at", in: "pause:7@0:1s", want: Differ{{Change: ChangePause, Every: 7, At: 0, Delay: time.Second}}},
		{name: "several with spaces", in: " status:503:10 , length:3@1,body:4",
			want: Differ{{Change: ChangeStatus, Status: 503, Every: 10, At: 9}, {Change: ChangeLength, Every: 3, At: 1}, {Change: ChangeBody, Every: 4, At: 3}},
			str:  "status:503:10,length:3@1,body:4"},
		{name: "unknown change", in: "drop:5", err: `unknown change "drop"`},
		{name: "status without code", in: "status:50", err: "want status:CODE:EVERY[@AT]"},
		{name: "status 200", in: "status:200:5", err: `status "200": want 201..599`},
		{name: "status 204", in: "status:204:5", err: "not 204, 205 or 304"},
		{name: "status 600", in: "status:600:5", err: `status "600"`},
		{name: "every 0", in: "body:0", err: `every "0": want a whole number of requests, at least 1`},
		{name: "every negative", in: "body:-3", err: `every "-3"`},
		{name: "every not a number", in: "header:x", err: `every "x"`},
		{name: "at too large", in: "body:10@10", err: `at "10": want 0..9`},
		{name: "at negative", in: "body:10@-1", err: `at "-1"`},
		{name: "slow without delay", in: "slow:10", err: "want slow:EVERY[@AT]:DELAY"},
		{name: "slow zero", in: "slow:10:0s", err: `delay "0s"`},
		{name: "slow too long", in: "slow:10:11s", err: "up to 10s"},
		{name: "body with a delay", in: "body:10:1s", err: "want body:EVERY[@AT]"},
		{name: "empty item", in: "body:10,", err: `unknown change ""`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDiffer(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, ErrDiffer) {
					t.Fatalf("ParseDiffer(%q) = %v, %v; want an ErrDiffer with %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseDiffer(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseDiffer(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			str := tt.str
			if str == "" && tt.want != nil {
				str = tt.in
			}
			if s := got.String(); s != str {
				t.Errorf("String() = %q, want %q", s, str)
			}
			again, err := ParseDiffer(got.String())
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Errorf("round trip of %q: %+v, %v", got.String(), again, err)
			}
		})
	}
}

func TestRulePicks(t *testing.T) {
	for _, tt := range []struct {
		spec  string
		n     int
		picks []int // of 0..n-1
	}{
		{"status:500:50", 200, []int{49, 99, 149, 199}},
		{"body:100@24", 300, []int{24, 124, 224}},
		{"header:1", 3, []int{0, 1, 2}},
		{"length:7@6", 6, nil},
		{"length:7@0", 15, []int{0, 7, 14}},
	} {
		d, err := ParseDiffer(tt.spec)
		if err != nil {
			t.Fatal(err)
		}
		r := d[0]
		var got []int
		for s := range tt.n {
			if r.Picks(s) {
				got = append(got, s)
			}
		}
		if !slices.Equal(got, tt.picks) {
			t.Errorf("%s picks %v of %d, want %v", tt.spec, got, tt.n, tt.picks)
		}
		if c := r.Count(tt.n); c != len(tt.picks) {
			t.Errorf("%s: Count(%d) = %d, want %d", tt.spec, tt.n, c, len(tt.picks))
		}
	}
	if (Rule{Change: ChangeBody, Every: 3, At: 2}).Picks(-1) {
		t.Error("a negative sequence number was picked")
	}
}

func TestDifferFor(t *testing.T) {
	d, err := ParseDiffer("status:500:4,status:503:6,body:2,slow:3:10ms,pause:3:5ms,length:12@11,header:12@11")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		seq   int
		size  int64
		want  Answer
		first string
	}{
		{seq: 0, size: 32},
		{seq: 1, size: 32, want: Answer{Body: true, Changed: []string{"body"}}, first: "body"},
		{seq: 1, size: 0, want: Answer{}}, // no body byte to change
		{seq: 2, size: 32, want: Answer{Delay: 10 * time.Millisecond, Pause: 5 * time.Millisecond, Changed: []string{"slow", "pause"}}},
		{seq: 2, size: 1, want: Answer{Delay: 10 * time.Millisecond, Changed: []string{"slow"}}}, // no half to pause after
		{seq: 3, size: 32, want: Answer{Status: 500, Body: true, Changed: []string{"status", "body"}}, first: "status"},
		{seq: 11, size: 32, want: Answer{Status: 500, Header: true, Longer: true, Body: true, Delay: 10 * time.Millisecond, Pause: 5 * time.Millisecond,
			Changed: []string{"status", "header", "length", "body", "slow", "pause"}}, first: "status"},
		{seq: 23, size: 32, want: Answer{Status: 500, Header: true, Longer: true, Body: true, Delay: 10 * time.Millisecond, Pause: 5 * time.Millisecond,
			Changed: []string{"status", "header", "length", "body", "slow", "pause"}}, first: "status"}, // 500 and 503 both: the first rule's
		{seq: 5, size: 32, want: Answer{Status: 503, Body: true, Delay: 10 * time.Millisecond, Pause: 5 * time.Millisecond,
			Changed: []string{"status", "body", "slow", "pause"}}, first: "status"},
	} {
		got := d.For(tt.seq, tt.size)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("For(%d, %d) = %+v, want %+v", tt.seq, tt.size, got, tt.want)
		}
		if f := FirstKind(got.Changed); f != tt.first {
			t.Errorf("For(%d, %d): first kind %q, want %q", tt.seq, tt.size, f, tt.first)
		}
	}
}

func TestSeq(t *testing.T) {
	for _, tt := range []struct {
		id  string
		seq int
		ok  bool
	}{
		{"3fa2c1-0", 0, true},
		{"3fa2c1-49", 49, true},
		{"p-2-17", 17, true}, // the second load client's prefix
		{"", 0, false},
		{"17", 0, false},
		{"abc-", 0, false},
		{"abc-x1", 0, false},
		{"abc--3", 3, true}, // prefix "abc-"
	} {
		seq, ok := Seq(tt.id)
		if seq != tt.seq || ok != tt.ok {
			t.Errorf("Seq(%q) = %d, %v; want %d, %v", tt.id, seq, ok, tt.seq, tt.ok)
		}
	}
}

func TestDescribe(t *testing.T) {
	d, err := ParseDiffer("status:500:50,body:100@24,header:1,slow:21:200ms,pause:2:1s,length:3@1")
	if err != nil {
		t.Fatal(err)
	}
	want := "status 500 for every 50th request; one body byte changed for every 100th request from the 25th on; " +
		"Content-Type text/html; charset=utf-8 for every request; 200ms late for every 21st request; " +
		"a pause of 1s in the body for every 2nd request; one body byte more for every 3rd request from the 2nd on"
	if got := d.Describe(); got != want {
		t.Errorf("Describe() =\n%s\nwant\n%s", got, want)
	}
	if got := d.Args(); !slices.Equal(got, []string{"--differ", d.String()}) {
		t.Errorf("Args() = %q", got)
	}
	if got := Differ(nil).Args(); got != nil {
		t.Errorf("no rules: Args() = %q", got)
	}
}

// rawGet sends a GET for id with query over a new connection and returns
// the whole answer as sent on the wire (the server closes the connection:
// Connection: close).
func rawGet(t *testing.T, addr, id, query string) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /lab/%s%s HTTP/1.1\r\nHost: x\r\n%s: %s\r\nConnection: close\r\n\r\n", id, query, IDHeader, id)
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestServeDiffer checks the answers of a recorder told to differ against
// an identical one, byte for byte on the wire, with Content-Length and
// chunked bodies, and what it records.
func TestServeDiffer(t *testing.T) {
	d, err := ParseDiffer("status:500:10@1,header:10@2,length:10@3,body:10@4,slow:10@5:150ms,pause:10@6:150ms")
	if err != nil {
		t.Fatal(err)
	}
	same, _, _ := newServer(t, Options{})
	differ, _, path := newServer(t, Options{Differ: d})
	addr := func(u string) string { return strings.TrimPrefix(u, "http://") }
	date := func(b []byte) []byte { // the Date header changes by the second
		i := bytes.Index(b, []byte("\r\nDate: "))
		if i < 0 {
			t.Fatalf("no Date in %q", b)
		}
		j := bytes.Index(b[i+2:], []byte("\r\n"))
		return append(append([]byte{}, b[:i]...), b[i+2+j:]...)
	}
	for _, query := range []string{"?resp=5000", "?resp=5000&chunked=1"} {
		for seq := range 8 {
			id := fmt.Sprintf("t-%d", seq)
			start := time.Now()
			want := date(rawGet(t, addr(same.URL), id, query))
			got := date(rawGet(t, addr(differ.URL), id, query))
			took := time.Since(start)
			wresp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(want)), nil)
			if err != nil {
				t.Fatal(err)
			}
			wbody, _ := io.ReadAll(wresp.Body)
			gresp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(got)), nil)
			if err != nil {
				t.Fatal(err)
			}
			gbody, _ := io.ReadAll(gresp.Body)
			chunked := strings.Contains(query, "chunked")
			if c := slices.Contains(wresp.TransferEncoding, "chunked"); c != chunked || len(wbody) != 5000 {
				t.Errorf("%s%s: chunked %v, body %d bytes", id, query, c, len(wbody))
			}
			var why string
			switch seq {
			case 1:
				if gresp.StatusCode != 500 || !bytes.Equal(gbody, wbody) {
					why = "want status 500, the same body"
				}
			case 2:
				if gresp.Header.Get("Content-Type") != ChangedContentType || !bytes.Equal(gbody, wbody) {
					why = "want another Content-Type, the same body"
				}
			case 3:
				if !bytes.Equal(gbody[:5000], wbody) || len(gbody) != 5001 {
					why = "want one byte more"
				}
			case 4:
				n := 0
				for i := range wbody {
					if i < len(gbody) && wbody[i] != gbody[i] {
						n++
						if i != 2500 {
							why = fmt.Sprintf("byte %d changed, want byte 2500", i)
						}
					}
				}
				if n != 1 || len(gbody) != 5000 {
					why += fmt.Sprintf(" %d bytes changed, want 1", n)
				}
			case 5, 6:
				if !bytes.Equal(got, want) || took < 150*time.Millisecond {
					why = fmt.Sprintf("want the same bytes, late (took %v)", took)
				}
			default:
				if !bytes.Equal(got, want) {
					why = "want the same bytes"
				}
			}
			if why != "" {
				t.Errorf("%s%s: %s:\ngot  %q\nwant %q", id, query, why, got[:min(len(got), 300)], want[:min(len(want), 300)])
			}
		}
	}
	entries, err := ReadLog(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int][]string{1: {"status"}, 2: {"header"}, 3: {"length"}, 4: {"body"}, 5: {"slow"}, 6: {"pause"}}
	for _, e := range entries {
		seq, _ := Seq(e.ID)
		if !slices.Equal(e.Changed, want[seq]) {
			t.Errorf("%s: recorded changes %v, want %v", e.ID, e.Changed, want[seq])
		}
		if (seq == 1) != (e.Status == 500) || (seq == 5) != (e.Delay > 0) || (seq == 6) != (e.Pause > 0) {
			t.Errorf("%s: recorded status %d, delay %v, pause %v", e.ID, e.Status, e.Delay, e.Pause)
		}
		if wantLen := int64(5000 + map[bool]int{true: 1}[seq == 3]); e.RespLen != wantLen || e.Chunked != strings.Contains(e.Path, "chunked") {
			t.Errorf("%s: recorded answer of %d bytes, chunked %v", e.Path, e.RespLen, e.Chunked)
		}
	}
}
