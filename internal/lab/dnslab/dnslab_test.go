package dnslab

import (
	"context"
	"encoding/hex"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// unhex decodes a fixture: hex digits, "|" comments, whitespace.
func unhex(s string) []byte {
	var h strings.Builder
	for line := range strings.Lines(s) {
		line, _, _ = strings.Cut(line, "|")
		h.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(h.String())
	if err != nil {
		panic(err)
	}
	return b
}

// A query for example.com TXT with EDNS, UDP size 1232, and 4 bytes of
// padding, as dig +padding would send it.
var ednsQuery = unhex(`
	1a 2b 01 00 00 01 00 00 00 00 00 01 | id 0x1a2b, RD, 1 question, 1 additional
	07 65 78 61 6d 70 6c 65 03 63 6f 6d 00 | example.com
	00 10 00 01 | TXT, IN
	00 00 29 04 d0 00 00 00 00 00 08 | OPT: UDP size 1232, RDLENGTH 8
	00 0c 00 04 00 00 00 00 | padding option, 4 bytes`)

func TestQueryCodec(t *testing.T) {
	q := Query{ID: 0x1a2b, Name: "example.com", EDNS: true, UDPSize: 1232, Padding: 4}
	if got := AppendQuery(nil, q); string(got) != string(ednsQuery) {
		t.Errorf("AppendQuery = % x\nwant % x", got, ednsQuery)
	}
	tests := []struct {
		name string
		q    Query
	}{
		{"plain", Query{ID: 7, Name: "q1-plain-a100.lab.example"}},
		{"edns", Query{ID: 8, Name: "q2-edns-a800.lab.example", EDNS: true, UDPSize: 1232}},
		{"padded", Query{ID: 9, Name: "x.example", EDNS: true, UDPSize: 4096, Padding: BigQueryPadding}},
	}
	for _, tt := range tests {
		got, err := ParseQuery(AppendQuery(nil, tt.q))
		if err != nil || got != tt.q {
			t.Errorf("%s: ParseQuery = %+v, %v; want %+v", tt.name, got, err, tt.q)
		}
	}
	for _, bad := range [][]byte{nil, ednsQuery[:11], ednsQuery[:20], ednsQuery[:len(ednsQuery)-1]} {
		if _, err := ParseQuery(bad); err == nil {
			t.Errorf("ParseQuery(% x) accepted", bad)
		}
	}
}

func TestResponses(t *testing.T) {
	tests := []struct {
		name    string
		q       Query
		tc      bool
		minSize int
	}{
		{"small", Query{ID: 1, Name: "q0-plain-a100.lab.example"}, false, 100},
		{"TC without EDNS", Query{ID: 2, Name: "q2-tc-a1000.lab.example"}, true, 0},
		{"EDNS answer", Query{ID: 3, Name: "q1-edns-a800.lab.example", EDNS: true, UDPSize: 1232}, false, 800},
		{"EDNS too small", Query{ID: 4, Name: "q1-edns-a3000.lab.example", EDNS: true, UDPSize: 1232}, true, 0},
		{"big EDNS answer", Query{ID: 5, Name: "q3-bigans-a3000.lab.example", EDNS: true, UDPSize: 4096}, false, 3000},
	}
	for _, tt := range tests {
		msg := AppendQuery(nil, tt.q)
		resp, tc := AppendResponse(nil, msg, tt.q)
		id, rtc, answers, err := ParseResponse(resp)
		switch {
		case err != nil || id != tt.q.ID || rtc != tt.tc || tc != tt.tc:
			t.Errorf("%s: id %d tc %v (%v), err %v", tt.name, id, rtc, tc, err)
		case tt.tc && answers != 0:
			t.Errorf("%s: truncated with %d answers", tt.name, answers)
		case len(resp) < tt.minSize:
			t.Errorf("%s: %d bytes, want at least %d", tt.name, len(resp), tt.minSize)
		}
		limit := 512
		if tt.q.EDNS {
			limit = int(tt.q.UDPSize)
		}
		if len(resp) > limit {
			t.Errorf("%s: %d bytes above the client's %d", tt.name, len(resp), limit)
		}
	}
}

func TestKinds(t *testing.T) {
	for i := range 2 * int(numKinds) {
		q := query(i, "v4.lab.example")
		k, ok := KindOf(q.Name)
		if !ok || k != Kind(i%int(numKinds)) {
			t.Errorf("KindOf(%q) = %v, %v", q.Name, k, ok)
		}
	}
	if _, ok := KindOf("example.com"); ok {
		t.Error("KindOf(example.com) is a kind")
	}
	if n := len(AppendQuery(nil, query(4, "lab.example"))); n < 2000 {
		t.Errorf("a BigQuery is %d bytes", n)
	}
}

// TestLoad runs a load against a server on loopback.
func TestLoad(t *testing.T) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	srv := Serve(c)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := Run(ctx, Options{Server: c.LocalAddr().(*net.UDPAddr).AddrPort(), Count: 50, Rate: 500, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 50 || res.Answered != 50 || res.Truncated != 10 || res.MaxQuery < 2000 || res.MaxAnswer < 3000 {
		t.Errorf("result %+v", res)
	}
	es := srv.Entries()
	if len(es) != 50 || srv.Malformed() != 0 {
		t.Fatalf("server recorded %d queries, %d malformed", len(es), srv.Malformed())
	}
	names := map[string]bool{}
	for _, e := range es {
		names[e.Query.Name] = true
		if k, _ := KindOf(e.Query.Name); k == BigQuery && e.Size < 2000 {
			t.Errorf("big query of %d bytes", e.Size)
		}
	}
	if len(names) != 50 {
		t.Errorf("%d distinct names", len(names))
	}
}

// TestServeOptions: DropEvery leaves every n-th query unanswered,
// AlterEvery clears RA in every n-th answer.
func TestServeOptions(t *testing.T) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	srv := ServeWith(ServeOptions{DropEvery: 3, AlterEvery: 2}, c)
	defer srv.Close()
	cl, err := net.DialUDP("udp", nil, c.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 6 {
		if _, err := cl.Write(AppendQuery(nil, Query{ID: uint16(i), Name: "q.example"})); err != nil {
			t.Fatal(err)
		}
	}
	// The third and sixth queries are dropped: four answers come.
	got := map[uint16]bool{}
	buf := make([]byte, 4096)
	cl.SetReadDeadline(time.Now().Add(10 * time.Second))
	for range 4 {
		n, err := cl.Read(buf)
		if err != nil {
			t.Fatalf("after %d answers: %v", len(got), err)
		}
		id, _, _, err := ParseResponse(buf[:n])
		// The second, fourth and sixth queries (IDs 1, 3, 5) are altered.
		if altered := id%2 == 1; err != nil || (buf[3]&flagRA == 0) != altered {
			t.Errorf("answer %d: err %v flags %#x, want RA cleared %v", id, err, buf[2:4], altered)
		}
		got[id] = true
	}
	if !got[0] || !got[1] || !got[3] || !got[4] {
		t.Errorf("answered %v, want 0, 1, 3, 4", got)
	}
	for deadline := time.Now().Add(10 * time.Second); srv.Count() < 6 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond) // the sixth query, which gets no answer
	}
	var dropped []uint16
	for _, e := range srv.Entries() {
		if e.Dropped {
			dropped = append(dropped, e.Query.ID)
		}
		if e.Altered != (e.Query.ID%2 == 1) {
			t.Errorf("query %d: altered %v", e.Query.ID, e.Altered)
		}
	}
	if len(dropped) != 2 || dropped[0] != 2 || dropped[1] != 5 {
		t.Errorf("dropped %v, want [2 5]", dropped)
	}
}
