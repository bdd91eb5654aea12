package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
	"time"
)

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		f     Format
		valid bool
		str   string
	}{
		{f6Plain, true, "v6 plain 64B"},
		{f6Combined, true, "v6 combined 64B"},
		{f6CombPay, true, "v6 combined 192B"},
		{Format{Version: 6, PrefixLen: -5}, true, "v6 plain 64B"}, // ignored for v6
		{f7, true, "v7 prefix 128"},
		{Format{Version: 7, PrefixLen: MaxPrefixLen + 1}, false, "v7 prefix 16385"},
		{Format{Version: 7, PrefixLen: -1}, false, "v7 prefix -1"},
		{Format{}, false, "invalid version 0"},
		{Format{Version: 8}, false, "invalid version 8"},
	} {
		if err := tc.f.Validate(); (err == nil) != tc.valid {
			t.Errorf("%+v: Validate = %v", tc.f, err)
		}
		if s := tc.f.String(); s != tc.str {
			t.Errorf("%+v: String = %q, want %q", tc.f, s, tc.str)
		}
	}
}

func TestPanics(t *testing.T) {
	for name, fn := range map[string]func(){
		"NewRecordReader":  func() { NewRecordReader(bytes.NewReader(nil), Format{}) },
		"NewBatcher":       func() { NewBatcher(Format{Version: 7, PrefixLen: 1 << 20}, 0) },
		"AppendHello":      func() { AppendHello(nil, Format{Version: 5}) },
		"SetVersion":       func() { NewRouteReader(bytes.NewReader(nil)).SetVersion(8) },
		"inbuf fill > len": func() { (&inbuf{buf: make([]byte, 4)}).fill(5) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			fn()
		}()
	}
}

func TestStrings(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{RouteAdd.String(), "add"},
		{RouteDel.String(), "del"},
		{RouteOp(9).String(), "op(9)"},
		{MsgRoute.String(), "route"},
		{MsgConfig.String(), "config"},
		{MsgKind(0).String(), "kind(0)"},
		{ServerNeedMore.String(), "need-more"},
		{ServerHello.String(), "hello"},
		{ServerRecords.String(), "records"},
		{ServerInvalid.String(), "invalid"},
		{ServerKind(7).String(), "ServerKind(7)"},
	} {
		if tc.got != tc.want {
			t.Errorf("String = %q, want %q", tc.got, tc.want)
		}
	}
	if NewBatcher(f7, 0).Format() != f7 || NewRecordReader(nil, f7).Format() != f7 {
		t.Error("Format accessors")
	}
	var r Record
	if !r.Time().IsZero() || len(r.IP()) != 0 || len(r.TCP()) != 0 {
		t.Error("zero Record accessors")
	}
	r.Captured = ts1
	if !r.Time().Equal(time.Unix(0, ts1)) {
		t.Error("Record.Time")
	}
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

type badCountReader struct{}

func (badCountReader) Read(p []byte) (int, error) { return len(p) + 1, nil }

func TestReaderErrors(t *testing.T) {
	errBoom := errors.New("boom")
	for _, tc := range []struct {
		name string
		r    io.Reader
		want error
	}{
		{"no progress", zeroReader{}, io.ErrNoProgress},
		{"bad count", badCountReader{}, errBadRead},
		{"reader error", iotest.ErrReader(errBoom), errBoom},
		{"error after data", io.MultiReader(bytes.NewReader(fixture(t, "v6-record-synack")), iotest.ErrReader(errBoom)), errBoom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rr := NewRecordReader(tc.r, f6Plain)
			for rr.Next() {
			}
			if !errors.Is(rr.Err(), tc.want) {
				t.Errorf("RecordReader Err = %v, want %v", rr.Err(), tc.want)
			}
			ro := NewRouteReader(tc.r)
			for ro.Next() {
			}
			if ro.Err() == nil {
				t.Error("RouteReader Err = nil")
			}
			if _, err := ro.ReadOffer(); err == nil {
				t.Error("ReadOffer after error = nil")
			}
		})
	}
	// An error returned together with the last bytes is reported after them.
	rr := NewRecordReader(iotest.TimeoutReader(bytes.NewReader(cat(fixture(t, "v6-record-synack"), fixture(t, "v6-record-synack")))), f6Plain)
	n := 0
	for rr.Next() {
		n++
	}
	if n != 2 || !errors.Is(rr.Err(), iotest.ErrTimeout) {
		t.Errorf("TimeoutReader: %d records, Err %v", n, rr.Err())
	}
	// ReadHello after the end of the stream.
	rr = NewRecordReader(bytes.NewReader(nil), f6Plain)
	rr.Next()
	if _, err := rr.ReadHello(); err != io.EOF {
		t.Errorf("ReadHello after EOF = %v", err)
	}
}

func TestCheckHeader7(t *testing.T) {
	v4 := cat(synAckPkt(t))
	v6 := ipv6SynAckPkt(t)
	for _, tc := range []struct {
		name string
		h    []byte
		ok   bool
	}{
		{"ipv4", v4, true},
		{"ipv4 options", ipOptPkt(t), true},
		{"ipv6", v6, true},
		{"ipv4 extra byte", cat(v4, []byte{0}), false},
		{"ipv4 short", v4[:59], false},
		{"ipv4 udp", func() []byte { p := cat(v4); p[9] = 17; return p }(), false},
		{"ipv4 ihl 4", func() []byte { p := cat(v4); p[0] = 0x44; return p }(), false},
		{"ipv4 ihl beyond", func() []byte { p := cat(v4); p[0] = 0x4f; return p }(), false},
		{"ipv6 ext header", ipv6ExtPkt(t)[:40+24+40], false},
		{"ipv6 doff 4", func() []byte { p := cat(v6); p[52] = 0x40; return p }(), false},
		{"version 5", func() []byte { p := cat(v4); p[0] = 0x55; return p }(), false},
		{"tiny", v4[:39], false},
	} {
		if _, ok := checkHeader7(tc.h, false); ok != tc.ok {
			t.Errorf("%s: ok = %v, want %v", tc.name, ok, tc.ok)
		}
	}
}
