package compare

import (
	"bytes"
	"regexp"
	"testing"

	"github.com/tcpcopy-go/tcpcopy/pkg/streamhash"
)

// dnsAnswer is a DNS answer to "a.example A" (RFC 1035 §4.1): ID 0x1234,
// flags QR RD RA, one question, one answer 192.0.2.1, TTL 300.
var dnsAnswer = []byte{
	0x12, 0x34, // ID
	0x81, 0x80, // QR, opcode 0, RD; RA, rcode 0
	0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, // QD 1, AN 1, NS 0, AR 0
	0x01, 'a', 0x07, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0x00, // a.example.
	0x00, 0x01, 0x00, 0x01, // type A, class IN
	0xc0, 0x0c, // name: pointer to the question's
	0x00, 0x01, 0x00, 0x01, // type A, class IN
	0x00, 0x00, 0x01, 0x2c, // TTL 300
	0x00, 0x04, 192, 0, 2, 1, // RDLENGTH 4, 192.0.2.1
}

// altered returns a copy of b with byte i xored with x.
func altered(b []byte, i int, x byte) []byte {
	c := bytes.Clone(b)
	c[i] ^= x
	return c
}

// dgram is b as an answer that came at at, visible up to keep bytes,
// hashed unless noHash.
func dgram(b []byte, keep int, noHash bool, at int64) *Datagram {
	if b == nil {
		return &Datagram{}
	}
	return &Datagram{Seen: true, Len: len(b), Hash: streamhash.Sum(b), Hashed: !noHash, Bytes: b[:min(keep, len(b))], At: at}
}

func TestJudgeDatagrams(t *testing.T) {
	ttl := altered(dnsAnswer, 36, 0x01) // TTL 301
	noRA := altered(dnsAnswer, 3, 0x80) // the RA flag cleared (dnslab's Alter)
	longer := append(bytes.Clone(dnsAnswer), 0)
	tests := []struct {
		name         string
		on, tg       []byte
		keep         int // visible bytes (Config.Bytes)
		tgNoHash     bool
		onNoHash     bool
		masks        []string
		wantVerdict  Verdict
		wantKind     Kind
		wantReason   Reason
		wantOffset   int
		wantNoResult bool
	}{
		{name: "same", on: dnsAnswer, tg: dnsAnswer, keep: 2048, wantVerdict: Same, wantOffset: -1},
		{name: "same beyond the visible bytes", on: dnsAnswer, tg: dnsAnswer, keep: 8, wantVerdict: Same, wantOffset: -1},
		{name: "flag differs", on: dnsAnswer, tg: noRA, keep: 2048, wantVerdict: Differs, wantKind: KindBody, wantOffset: 3},
		{name: "ttl differs beyond the visible bytes", on: dnsAnswer, tg: ttl, keep: 16, wantVerdict: Differs, wantKind: KindBody, wantOffset: -1},
		{name: "ttl differs within the visible bytes", on: dnsAnswer, tg: ttl, keep: 2048, wantVerdict: Differs, wantKind: KindBody, wantOffset: 36},
		{name: "length", on: dnsAnswer, tg: longer, keep: 2048, wantVerdict: Differs, wantKind: KindLength, wantOffset: -1},
		{name: "ttl masked", on: dnsAnswer, tg: ttl, keep: 2048, masks: []string{`\x00\x00\x01[\x2c\x2d]`}, wantVerdict: Same, wantOffset: -1},
		{name: "mask beyond the visible bytes", on: dnsAnswer, tg: ttl, keep: 16, masks: []string{`\x00\x00\x01[\x2c\x2d]`}, wantVerdict: Differs, wantKind: KindBody, wantOffset: -1},
		{name: "missing", on: dnsAnswer, keep: 2048, wantVerdict: Missing, wantOffset: -1},
		{name: "online not captured", tg: dnsAnswer, keep: 2048, wantVerdict: NotCompared, wantReason: ReasonNoOnline, wantOffset: -1},
		{name: "target not hashed (fragmented)", on: dnsAnswer, tg: dnsAnswer, keep: 2048, tgNoHash: true, wantVerdict: NotCompared, wantReason: ReasonTargetIncomplete, wantOffset: -1},
		{name: "online cut", on: dnsAnswer, tg: dnsAnswer, keep: 2048, onNoHash: true, wantVerdict: NotCompared, wantReason: ReasonOnlineIncomplete, wantOffset: -1},
		{name: "neither answered", keep: 2048, wantNoResult: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &Config{Bytes: tt.keep}
			for _, m := range tt.masks {
				cfg.Masks = append(cfg.Masks, regexp.MustCompile(m))
			}
			cfg.Init()
			var got []Result
			e := NewEngine(cfg, func(r *Result) {
				c := *r
				c.Request = bytes.Clone(r.Request)
				c.Online.Bytes, c.Target.Bytes = bytes.Clone(r.Online.Bytes), bytes.Clone(r.Target.Bytes)
				got = append(got, c)
			})
			on := dgram(tt.on, tt.keep, tt.onNoHash, 2e6)
			tg := dgram(tt.tg, tt.keep, tt.tgNoHash, 5e6)
			e.JudgeDatagrams(3, []byte("dns a.example. A"), 1e6, 2e6, on, tg, 9e6)
			if tt.wantNoResult {
				if len(got) != 0 {
					t.Fatalf("got %d results, want none: %+v", len(got), got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("got %d results, want 1", len(got))
			}
			r := got[0]
			if r.Verdict != tt.wantVerdict || r.Kind != tt.wantKind || r.Reason != tt.wantReason || r.Offset != tt.wantOffset {
				t.Errorf("got %v/%v/%v offset %d, want %v/%v/%v offset %d", r.Verdict, r.Kind, r.Reason, r.Offset,
					tt.wantVerdict, tt.wantKind, tt.wantReason, tt.wantOffset)
			}
			if r.Index != 3 || string(r.Request) != "dns a.example. A" {
				t.Errorf("index %d request %q, want 3 %q", r.Index, r.Request, "dns a.example. A")
			}
			if tt.on != nil && (r.Online.Length != len(tt.on) || r.Online.Time != 1e6 || r.Online.Hash != streamhash.Sum(tt.on)) {
				t.Errorf("online side %+v, want length %d, time 1ms", r.Online, len(tt.on))
			}
			if tt.tg != nil && (r.Target.Length != len(tt.tg) || r.Target.Time != 3e6) {
				t.Errorf("target side %+v, want length %d, time 3ms", r.Target, len(tt.tg))
			}
			if r.Verdict == Differs && r.Offset >= 0 && (r.Online.BytesAt > r.Offset || len(r.Online.Bytes) == 0) {
				t.Errorf("detail bytes from %d (%d of them) do not show offset %d", r.Online.BytesAt, len(r.Online.Bytes), r.Offset)
			}
			st := e.Stats()
			if st.Verdicts[tt.wantVerdict] != 1 || st.Kinds[tt.wantKind] != 1 || st.NotCompared[tt.wantReason] != 1 {
				t.Errorf("stats %+v do not count the verdict once", st)
			}
		})
	}
}

// TestJudgeDatagramsNoAllocs: a pair that is the same costs no
// allocation, nor does one that differs when emit keeps nothing.
func TestJudgeDatagramsNoAllocs(t *testing.T) {
	cfg := &Config{}
	cfg.Init()
	e := NewEngine(cfg, func(*Result) {})
	on, tg := dgram(dnsAnswer, 2048, false, 2), dgram(altered(dnsAnswer, 3, 0x80), 2048, false, 3)
	req := []byte("dns a.example. A")
	e.JudgeDatagrams(0, req, 1, 1, on, on, 4) // the slot pool is made
	if n := testing.AllocsPerRun(100, func() {
		e.JudgeDatagrams(0, req, 1, 1, on, on, 4)
		e.JudgeDatagrams(1, req, 1, 1, on, tg, 4)
	}); n != 0 {
		t.Errorf("JudgeDatagrams allocates %v times, want 0", n)
	}
}
