package tcpcopy

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func mustParseMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func TestParseMapping(t *testing.T) {
	ap := netip.MustParseAddrPort
	port := func(p uint16) netip.AddrPort { return netip.AddrPortFrom(netip.Addr{}, p) }
	tests := []struct {
		name    string
		in      string
		withMAC bool
		want    Mapping
		wantErr string // substring of the error
	}{
		{name: "port only", in: "80-203.0.113.20:8080",
			want: Mapping{Online: port(80), Target: ap("203.0.113.20:8080")}},
		{name: "online address", in: "192.0.2.1:80-203.0.113.20:8080",
			want: Mapping{Online: ap("192.0.2.1:80"), Target: ap("203.0.113.20:8080")}},
		{name: "spaces trimmed", in: " 80-203.0.113.20:8080 ",
			want: Mapping{Online: port(80), Target: ap("203.0.113.20:8080")}},
		{name: "same port with online address", in: "192.0.2.1:80-203.0.113.20:80",
			want: Mapping{Online: ap("192.0.2.1:80"), Target: ap("203.0.113.20:80")}},
		{name: "unspecified online means any", in: "0.0.0.0:80-203.0.113.20:8080",
			want: Mapping{Online: port(80), Target: ap("203.0.113.20:8080")}},
		{name: "IPv6", in: "[2001:db8::1]:80-[2001:db8::2]:8080",
			want: Mapping{Online: ap("[2001:db8::1]:80"), Target: ap("[2001:db8::2]:8080")}},
		{name: "IPv6 port only", in: "80-[2001:db8::2]:8080",
			want: Mapping{Online: port(80), Target: ap("[2001:db8::2]:8080")}},
		{name: "UDP", in: "udp:53-203.0.113.20:5353",
			want: Mapping{Proto: ProtoUDP, Online: port(53), Target: ap("203.0.113.20:5353")}},
		{name: "UDP upper case, online address", in: "UDP:192.0.2.1:53-203.0.113.20:5353",
			want: Mapping{Proto: ProtoUDP, Online: ap("192.0.2.1:53"), Target: ap("203.0.113.20:5353")}},
		{name: "UDP IPv6", in: "udp:[2001:db8::1]:53-[2001:db8::2]:5353",
			want: Mapping{Proto: ProtoUDP, Online: ap("[2001:db8::1]:53"), Target: ap("[2001:db8::2]:5353")}},
		{name: "tcp prefix", in: "tcp:80-203.0.113.20:8080",
			want: Mapping{Online: port(80), Target: ap("203.0.113.20:8080")}},
		{name: "UDP with MACs", in: "udp:53@aa:bb:cc:dd:ee:01-203.0.113.20:5353@aa:bb:cc:dd:ee:02", withMAC: true,
			want: Mapping{Proto: ProtoUDP, Online: port(53), Target: ap("203.0.113.20:5353"),
				OnlineMAC: mustParseMAC("aa:bb:cc:dd:ee:01"), TargetMAC: mustParseMAC("aa:bb:cc:dd:ee:02")}},
		{name: "MACs", in: "80@aa:bb:cc:dd:ee:01-203.0.113.20:8080@AA:BB:CC:DD:EE:02", withMAC: true,
			want: Mapping{Online: port(80), Target: ap("203.0.113.20:8080"),
				OnlineMAC: mustParseMAC("aa:bb:cc:dd:ee:01"), TargetMAC: mustParseMAC("aa:bb:cc:dd:ee:02")}},
		{name: "MACs with online address", in: "192.0.2.1:80@aa:bb:cc:dd:ee:01-203.0.113.20:8080@aa:bb:cc:dd:ee:02", withMAC: true,
			want: Mapping{Online: ap("192.0.2.1:80"), Target: ap("203.0.113.20:8080"),
				OnlineMAC: mustParseMAC("aa:bb:cc:dd:ee:01"), TargetMAC: mustParseMAC("aa:bb:cc:dd:ee:02")}},

		{name: "no target port", in: "80-203.0.113.20", wantErr: `option -x: "80-203.0.113.20": target "203.0.113.20" needs a port`},
		{name: "online port too big", in: "99999-203.0.113.20:8080", wantErr: "port 99999 is out of range 1..65535"},
		{name: "target port too big", in: "80-203.0.113.20:65536", wantErr: "port 65536 is out of range 1..65535"},
		{name: "port zero", in: "0-203.0.113.20:8080", wantErr: "port 0 is out of range 1..65535"},
		{name: "no dash", in: "80", wantErr: "want [srcIP:]srcPort-targetIP:targetPort"},
		{name: "two dashes", in: "80-203.0.113.20:8080-9", wantErr: "want [srcIP:]srcPort-targetIP:targetPort"},
		{name: "bad port", in: "http-203.0.113.20:8080", wantErr: `online "http" is not ip:port`},
		{name: "hostname target", in: "80-example.com:8080", wantErr: `target address "example.com" is not an IP address`},
		{name: "MAC without -o", in: "80-203.0.113.20:8080@aa:bb:cc:dd:ee:ff", wantErr: "the @mac forms need an output device (-o)"},
		{name: "-o without MACs", in: "80-203.0.113.20:8080", withMAC: true, wantErr: "with -o write"},
		{name: "-o with one MAC", in: "80@aa:bb:cc:dd:ee:01-203.0.113.20:8080", withMAC: true, wantErr: "with -o write"},
		{name: "short MAC", in: "80@aa:bb:cc:dd:ee-203.0.113.20:8080@aa:bb:cc:dd:ee:02", withMAC: true, wantErr: `MAC "aa:bb:cc:dd:ee" is not`},
		{name: "mixed families", in: "192.0.2.1:80-[2001:db8::2]:8080", wantErr: "one family"},
		{name: "IPv6 without brackets", in: "80-2001:db8::2:8080", wantErr: "write IPv6 as [addr]:port"},
		{name: "loopback target", in: "80-127.0.0.1:8080", wantErr: "loopback"},
		{name: "IPv6 loopback target", in: "80-[::1]:8080", wantErr: "loopback"},
		{name: "multicast target", in: "80-224.0.0.1:8080", wantErr: "not a host address"},
		{name: "unspecified target", in: "80-0.0.0.0:8080", wantErr: "not a host address"},
		{name: "same address", in: "192.0.2.1:80-192.0.2.1:80", wantErr: "same address"},
		{name: "mapped IPv4", in: "80-[::ffff:203.0.113.20]:8080", wantErr: "not ::ffff:"},
		{name: "zone", in: "80-[fe80::1%eth0]:8080", wantErr: "zones"},
		{name: "other protocol", in: "sctp:80-203.0.113.20:8080", wantErr: `protocol "sctp" is not tcp or udp`},
		{name: "protocol twice", in: "udp:tcp:80-203.0.113.20:8080", wantErr: "the protocol is named twice"},
		{name: "IPv6 group of letters", in: "udp:dead:beef::1:53-203.0.113.20:53", wantErr: "write IPv6 as [addr]:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMapping(tt.in, tt.withMAC)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseMapping(%q) error = %v, want it to contain %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseMapping(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseMapping(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			back, err := ParseMapping(got.String(), tt.withMAC)
			if err != nil || !reflect.DeepEqual(back, got) {
				t.Errorf("ParseMapping(%q) = %+v, %v; want %+v", got.String(), back, err, got)
			}
		})
	}
}

func TestParseMappings(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string // String() of each mapping
		wantErr string
	}{
		{"one", "80-203.0.113.20:8080", []string{"80-203.0.113.20:8080"}, ""},
		{"several", "80-203.0.113.20:8080, 192.0.2.1:443-203.0.113.21:8443,,", []string{"80-203.0.113.20:8080", "192.0.2.1:443-203.0.113.21:8443"}, ""},
		{"same port per family", "80-203.0.113.20:8080,80-[2001:db8::2]:8080", []string{"80-203.0.113.20:8080", "80-[2001:db8::2]:8080"}, ""},
		{"port and address", "80-203.0.113.20:8080,192.0.2.1:80-203.0.113.21:8080", []string{"80-203.0.113.20:8080", "192.0.2.1:80-203.0.113.21:8080"}, ""},
		{"TCP and UDP on one port", "53-203.0.113.20:5353,udp:53-203.0.113.20:5353,udp:[2001:db8::1]:53-[2001:db8::2]:53",
			[]string{"53-203.0.113.20:5353", "udp:53-203.0.113.20:5353", "udp:[2001:db8::1]:53-[2001:db8::2]:53"}, ""},
		{"empty", "", nil, ""},
		{"duplicate UDP", "udp:53-203.0.113.20:5353,udp:53-203.0.113.21:5353", nil, `option -x: online side of "udp:53-203.0.113.21:5353" is listed twice`},
		{"duplicate", "80-203.0.113.20:8080,80-203.0.113.21:8080", nil, `option -x: online side of "80-203.0.113.21:8080" is listed twice`},
		{"one bad", "80-203.0.113.20:8080,81-203.0.113.20", nil, `option -x: "81-203.0.113.20"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMappings(tt.in, false)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseMappings(%q) error = %v, want it to contain %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseMappings(%q): %v", tt.in, err)
			}
			var strs []string
			for _, m := range got {
				strs = append(strs, m.String())
			}
			if !slices.Equal(strs, tt.want) {
				t.Errorf("ParseMappings(%q) = %q, want %q", tt.in, strs, tt.want)
			}
		})
	}
}

func TestParseIntercepts(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		name    string
		in      string
		want    []netip.AddrPort
		wantErr string
	}{
		{"default port", "203.0.113.30", []netip.AddrPort{ap("203.0.113.30:36524")}, ""},
		{"list", "203.0.113.30:36524,203.0.113.31", []netip.AddrPort{ap("203.0.113.30:36524"), ap("203.0.113.31:36524")}, ""},
		{"explicit port", "203.0.113.30:4000", []netip.AddrPort{ap("203.0.113.30:4000")}, ""},
		{"bare IPv6", "2001:db8::30", []netip.AddrPort{ap("[2001:db8::30]:36524")}, ""},
		{"bracketed IPv6", "[2001:db8::30]", []netip.AddrPort{ap("[2001:db8::30]:36524")}, ""},
		{"IPv6 with port", "[2001:db8::30]:4000", []netip.AddrPort{ap("[2001:db8::30]:4000")}, ""},
		{"link-local with zone", "[fe80::1%eth0]:4000", []netip.AddrPort{ap("[fe80::1%eth0]:4000")}, ""},
		{"loopback", "127.0.0.1", []netip.AddrPort{ap("127.0.0.1:36524")}, ""},
		{"mapped", "::ffff:203.0.113.30", []netip.AddrPort{ap("203.0.113.30:36524")}, ""},
		{"hostname", "intercept.example", nil, `option -s: "intercept.example": intercept "intercept.example" is not ip:port`},
		{"bad port", "203.0.113.30:70000", nil, "port 70000 is out of range 1..65535"},
		{"unspecified", "0.0.0.0", nil, "0.0.0.0 is not a host address"},
		{"duplicate", "203.0.113.30,203.0.113.30:36524", nil, "option -s: 203.0.113.30:36524 is listed twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseIntercepts(tt.in, 36524)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseIntercepts(%q) error = %v, want it to contain %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("ParseIntercepts(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
	var many []string
	for i := range maxIntercepts + 1 {
		many = append(many, netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}).String())
	}
	if _, err := ParseIntercepts(strings.Join(many, ","), 36524); err == nil || err.Error() != "option -s: more than 64 intercepts" {
		t.Errorf("65 intercepts: error = %v", err)
	}
}

func TestParseClientPool(t *testing.T) {
	a := netip.MustParseAddr
	targets := []netip.Addr{a("198.51.100.7"), a("203.0.113.20")}
	tests := []struct {
		name    string
		in      string
		wantLen int
		first   netip.Addr // when wantLen > 0
		last    netip.Addr
		wantErr string
	}{
		{name: "one", in: "198.51.100.1", wantLen: 1, first: a("198.51.100.1"), last: a("198.51.100.1")},
		{name: "x expansion", in: "192.0.2.x", wantLen: 254, first: a("192.0.2.1"), last: a("192.0.2.254")},
		{name: "X upper case", in: "192.0.2.X", wantLen: 254, first: a("192.0.2.1"), last: a("192.0.2.254")},
		{name: "x skips a target", in: "198.51.100.x", wantLen: 253, first: a("198.51.100.1"), last: a("198.51.100.254")},
		{name: "duplicates dropped", in: "192.0.2.5,192.0.2.x", wantLen: 254, first: a("192.0.2.5"), last: a("192.0.2.254")},
		{name: "IPv6", in: "2001:db8::100,192.0.2.1", wantLen: 2, first: a("2001:db8::100"), last: a("192.0.2.1")},
		{name: "target skipped", in: "203.0.113.20,192.0.2.1", wantLen: 1, first: a("192.0.2.1"), last: a("192.0.2.1")},
		{name: "empty", in: "", wantLen: 0},
		{name: "only targets", in: "203.0.113.20", wantErr: "option -c: every address is a target address"},
		{name: "star", in: "*", wantErr: `option -c: "*" is not supported`},
		{name: "garbage", in: "192.0.2", wantErr: `option -c: "192.0.2" is not an IP address or a.b.c.x`},
		{name: "x on two octets", in: "192.0.x", wantErr: `is not an IP address or a.b.c.x`},
		{name: "loopback", in: "127.0.0.1", wantErr: "loopback"},
		{name: "loopback x", in: "127.0.0.x", wantErr: "loopback"},
		{name: "multicast", in: "224.0.0.x", wantErr: "not a host address"},
		{name: "this network", in: "0.0.0.5", wantErr: "not a host address"},
		{name: "too many", in: manyPoolX(17), wantErr: "option -c: more than 4096 addresses"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseClientPool(tt.in, targets)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseClientPool(%q) error = %v, want it to contain %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseClientPool(%q): %v", tt.in, err)
			}
			if len(got) != tt.wantLen {
				t.Fatalf("ParseClientPool(%q) has %d addresses, want %d", tt.in, len(got), tt.wantLen)
			}
			if tt.wantLen > 0 && (got[0] != tt.first || got[len(got)-1] != tt.last) {
				t.Errorf("ParseClientPool(%q) = %v..%v, want %v..%v", tt.in, got[0], got[len(got)-1], tt.first, tt.last)
			}
			if slices.Contains(got, targets[0]) || slices.Contains(got, targets[1]) {
				t.Errorf("ParseClientPool(%q) kept a target address", tt.in)
			}
		})
	}
	// Exactly 4096 is allowed: 16 × 254 + 32.
	var items []string
	for i := range 16 {
		items = append(items, fmt.Sprintf("10.0.%d.x", i))
	}
	for i := range 32 {
		items = append(items, fmt.Sprintf("10.1.0.%d", i+1))
	}
	got, err := ParseClientPool(strings.Join(items, ","), nil)
	if err != nil || len(got) != 4096 {
		t.Errorf("4096 addresses: got %d, %v", len(got), err)
	}
}

// manyPoolX returns n distinct a.b.c.x items.
func manyPoolX(n int) string {
	var items []string
	for i := range n {
		items = append(items, fmt.Sprintf("10.0.%d.x", i))
	}
	return strings.Join(items, ",")
}

func TestParseInput(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "capture.pcap")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "eth9")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		in       string
		wantIfs  []string
		wantFile string
		wantErr  string
	}{
		{name: "none", in: ""},
		{name: "any", in: "any"},
		{name: "interfaces", in: "eth0, eth1.100", wantIfs: []string{"eth0", "eth1.100"}},
		{name: "file", in: file, wantFile: file},
		{name: "file without extension", in: plain, wantFile: plain},
		{name: "missing file", in: filepath.Join(dir, "nope.pcapng"), wantErr: "does not exist"},
		{name: "missing by extension", in: "nope.pcap", wantErr: `option -i: offline file "nope.pcap" does not exist`},
		{name: "directory", in: dir, wantErr: "not a regular file"},
		{name: "file and interface", in: "eth0," + file, wantErr: "give one offline file, not mixed with interfaces"},
		{name: "any and others", in: "any,eth0", wantErr: `"any" means every interface`},
		{name: "long name", in: "averyveryverylongname", wantErr: "is not an interface name"},
		{name: "duplicate", in: "eth0,eth0", wantErr: "listed twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ifs, f, err := ParseInput(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseInput(%q) error = %v, want it to contain %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(ifs, tt.wantIfs) || f != tt.wantFile {
				t.Errorf("ParseInput(%q) = %q, %q, %v; want %q, %q", tt.in, ifs, f, err, tt.wantIfs, tt.wantFile)
			}
		})
	}
}

// validConfig returns a Config that passes Validate.
func validConfig() Config {
	c := Default()
	c.Mappings = []Mapping{{Online: netip.AddrPortFrom(netip.Addr{}, 80), Target: netip.MustParseAddrPort("203.0.113.20:8080")}}
	c.Intercepts = []netip.AddrPort{netip.MustParseAddrPort("203.0.113.30:36524")}
	return c
}

func TestValidate(t *testing.T) {
	v6 := Mapping{Online: netip.AddrPortFrom(netip.Addr{}, 80), Target: netip.MustParseAddrPort("[2001:db8::2]:8080")}
	mac := Mapping{Online: netip.AddrPortFrom(netip.Addr{}, 80), Target: netip.MustParseAddrPort("203.0.113.20:8080"),
		OnlineMAC: mustParseMAC("aa:bb:cc:dd:ee:01"), TargetMAC: mustParseMAC("aa:bb:cc:dd:ee:02")}
	samePort := Mapping{Online: netip.AddrPortFrom(netip.Addr{}, 80), Target: netip.MustParseAddrPort("203.0.113.20:80")}
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string // exact; "" for valid
	}{
		{"default", func(*Config) {}, ""},
		{"percent 0 means all", func(c *Config) { c.Percent = 0 }, ""},
		{"offline", func(c *Config) { c.OfflineFile = "x.pcap"; c.Accel = 2.5; c.Repeat = 3; c.IdleSkip = time.Second }, ""},
		{"IPv6", func(c *Config) { c.Mappings = append(c.Mappings, v6) }, ""},
		{"same port with filter", func(c *Config) { c.Mappings = []Mapping{samePort}; c.Filter = "tcp dst port 80" }, ""},
		{"MACs with -o", func(c *Config) { c.Mappings = []Mapping{mac}; c.OutputIf = "eth1" }, ""},
		{"pool per family", func(c *Config) {
			c.Mappings = append(c.Mappings, v6)
			c.ClientPool = []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::100")}
		}, ""},

		{"UDP only, no -s", func(c *Config) { c.Mappings[0].Proto = ProtoUDP; c.Intercepts = nil }, ""},
		{"UDP IPv6 with wire 6", func(c *Config) { v := v6; v.Proto = ProtoUDP; c.Mappings = append(c.Mappings, v); c.WireVersion = 6 }, ""},
		{"UDP same port", func(c *Config) { m := samePort; m.Proto = ProtoUDP; c.Mappings = []Mapping{m} },
			`option -x: "udp:80-203.0.113.20:80": copies to port 80 would match the capture again; give the online address (ip:80-...) or a filter (-F)`},
		{"no -x", func(c *Config) { c.Mappings = nil }, "option -x is required, e.g. -x 80-203.0.113.20:8080"},
		{"TCP beside UDP, no -s", func(c *Config) {
			c.Mappings = append(c.Mappings, Mapping{Proto: ProtoUDP, Online: netip.AddrPortFrom(netip.Addr{}, 53), Target: netip.MustParseAddrPort("203.0.113.20:5353")})
			c.Intercepts = nil
		}, "option -s is required: the intercept address, e.g. -s 203.0.113.30"},
		{"no -s", func(c *Config) { c.Intercepts = nil }, "option -s is required: the intercept address, e.g. -s 203.0.113.30"},
		{"-r 150", func(c *Config) { c.Percent = 150 }, "option -r: 150 is out of range 0..100"},
		{"-r -1", func(c *Config) { c.Percent = -1 }, "option -r: -1 is out of range 0..100"},
		{"-n 1024", func(c *Config) { c.Copies = 1024 }, "option -n: 1024 is out of range 1..1023"},
		{"-f 32", func(c *Config) { c.PortShift = 32 }, "option -f: 32 is out of range 0..31"},
		{"-C 0", func(c *Config) { c.ConnsPerIntercept = 0 }, "option -C: 0 is out of range 1..16"},
		{"-C 17", func(c *Config) { c.ConnsPerIntercept = 17 }, "option -C: 17 is out of range 1..16"},
		{"-M 2048 ok, -M 500", func(c *Config) { c.MTU = 500 }, "option -M: 500 is out of range 576..65535"},
		{"-D above MTU", func(c *Config) { c.MTU = 1400 }, "option -D: 1460 is above the MTU (-M 1400) less 40"},
		{"-D too small", func(c *Config) { c.MSS = 50 }, "option -D: 50 is out of range 88..1460"},
		{"-t 0", func(c *Config) { c.SessionTimeout = 0 }, "option -t: 0 is out of range 1..604800"},
		{"-S too small", func(c *Config) { c.SnapLen = 64 }, "option -S: 64 is out of range 128..262144"},
		{"-B 0", func(c *Config) { c.BufferMB = 0 }, "option -B: 0 is out of range 1..4096"},
		{"workers", func(c *Config) { c.Workers = 0 }, "option --workers: 0 is out of range 1..256"},
		{"-g with -r", func(c *Config) { c.Gradual = true; c.Percent = 20 }, "option -g: ramps the share of copied sessions up to 100%; do not combine it with -r"},
		{"same port", func(c *Config) { c.Mappings = []Mapping{samePort} }, `option -x: "80-203.0.113.20:80": copies to port 80 would match the capture again; give the online address (ip:80-...) or a filter (-F)`},
		{"MAC without -o", func(c *Config) { c.Mappings = []Mapping{mac} }, `option -x: "80@aa:bb:cc:dd:ee:01-203.0.113.20:8080@aa:bb:cc:dd:ee:02": the @mac forms need an output device (-o)`},
		{"-o without MAC", func(c *Config) { c.OutputIf = "eth1" }, `option -x: "80-203.0.113.20:8080": with -o write [srcIP:]srcPort@srcMAC-targetIP:targetPort@nextHopMAC`},
		{"duplicate mapping", func(c *Config) { c.Mappings = append(c.Mappings, c.Mappings[0]) }, `option -x: online side of "80-203.0.113.20:8080" is listed twice`},
		{"IPv6 small MTU", func(c *Config) { c.Mappings = []Mapping{v6}; c.MTU = 1000; c.MSS = 900 }, "option -M: 1000 is below 1280, the IPv6 minimum MTU"},
		{"pool lacks IPv6", func(c *Config) {
			c.Mappings = append(c.Mappings, v6)
			c.ClientPool = []netip.Addr{netip.MustParseAddr("192.0.2.1")}
		}, "option -c: no IPv6 address for the IPv6 mappings"},
		{"-H loopback", func(c *Config) { c.LocalhostAs = netip.MustParseAddr("127.0.0.2") }, "option -H: 127.0.0.2: a loopback address cannot be the source of a copy sent to another host"},
		{"loopback online without -c or -H", func(c *Config) {
			c.Mappings = []Mapping{{Online: netip.MustParseAddrPort("127.0.0.1:8080"), Target: netip.MustParseAddrPort("203.0.113.20:8080")}}
		}, `option -x: "127.0.0.1:8080-203.0.113.20:8080": the clients of a loopback address are loopback addresses, which the target cannot answer; give the copies an address the target routes to the assistant: -c or -H`},
		{"loopback online, -H of the other family", func(c *Config) {
			c.Mappings = []Mapping{{Online: netip.MustParseAddrPort("[::1]:8080"), Target: netip.MustParseAddrPort("[2001:db8::2]:8080")}}
			c.LocalhostAs = netip.MustParseAddr("198.51.100.200")
		}, `option -x: "[::1]:8080-[2001:db8::2]:8080": the clients of a loopback address are loopback addresses, which the target cannot answer; give the copies an address the target routes to the assistant: -c or -H`},
		{"loopback online with -H", func(c *Config) {
			c.Mappings = []Mapping{{Online: netip.MustParseAddrPort("127.0.0.1:8080"), Target: netip.MustParseAddrPort("203.0.113.20:8080")}}
			c.LocalhostAs = netip.MustParseAddr("198.51.100.200")
		}, ""},
		{"loopback online with -c", func(c *Config) {
			c.Mappings = []Mapping{{Online: netip.MustParseAddrPort("127.0.0.1:8080"), Target: netip.MustParseAddrPort("203.0.113.20:8080")}}
			c.ClientPool = []netip.Addr{netip.MustParseAddr("198.51.100.200")}
		}, ""},
		{"-a live", func(c *Config) { c.Accel = 2 }, "option -a: only with an offline file (-i FILE)"},
		{"-I live", func(c *Config) { c.IdleSkip = time.Second }, "option -I: only with an offline file (-i FILE)"},
		{"-T live", func(c *Config) { c.Repeat = 2 }, "option -T: only with an offline file (-i FILE)"},
		{"-a 0", func(c *Config) { c.OfflineFile = "x.pcap"; c.Accel = 0 }, "option -a: 0 is out of range 0.01..1000"},
		{"file and interfaces", func(c *Config) { c.OfflineFile = "x.pcap"; c.Interfaces = []string{"eth0"} }, "option -i: give interfaces or an offline file, not both"},
		{"-F too long", func(c *Config) { c.Filter = strings.Repeat("x", 4097) }, "option -F: longer than 4096 bytes"},
		{"wire 6 IPv6", func(c *Config) { c.Mappings = []Mapping{v6}; c.WireVersion = 6 }, `option --wire-version: version 6 carries IPv4 only, and "80-[2001:db8::2]:8080" is IPv6`},
		{"wire 7 no-combined", func(c *Config) { c.WireVersion = 7; c.Combined = false }, "option --wire-version: --no-combined and --resp-payload apply to version 6 only"},
		{"wire 5", func(c *Config) { c.WireVersion = 5 }, "option --wire-version: 5 is not auto, 6 or 7"},
		{"metrics addr", func(c *Config) { c.MetricsAddr = "9100" }, `option --metrics-addr: "9100" is not host:port`},
		{"negative stats", func(c *Config) { c.StatsInterval = -time.Second }, "option --stats-interval: -1s is not 0 (off) or between 1s and 24h0m0s"},
		{"stats 1ns", func(c *Config) { c.StatsInterval = time.Nanosecond }, "option --stats-interval: 1ns is not 0 (off) or between 1s and 24h0m0s"},
		{"metrics port 99999", func(c *Config) { c.MetricsAddr = ":99999" }, `option --metrics-addr: port "99999" is not 1..65535`},
		{"metrics host name", func(c *Config) { c.MetricsAddr = "metrics.example:9100" }, `option --metrics-addr: host "metrics.example" is not an IP address`},
		{"-R -1ms", func(c *Config) { c.FixedRTT = -time.Millisecond }, "option -R: -1 is out of range 0..60000"},
		{"secret with version 6", func(c *Config) { c.Secret = []byte("0123456789abcdef"); c.WireVersion = 6 }, "option --secret-file: authentication needs protocol version 7, and --wire-version is 6"},
		{"capture timeout 1s", func(c *Config) { c.CaptureTimeout = time.Second }, ""},
		{"stall timeout 1s", func(c *Config) { c.StallTimeout = time.Second }, ""},
		{"stall timeout 0", func(c *Config) { c.StallTimeout = 0 }, "option --stall-timeout: 0s is not between 1s and 1h0m0s"},
		{"capture timeout 0", func(c *Config) { c.CaptureTimeout = 0 }, "option --capture-timeout: 0s is out of range 1ms..1s"},
		{"capture timeout 2s", func(c *Config) { c.CaptureTimeout = 2 * time.Second }, "option --capture-timeout: 2s is out of range 1ms..1s"},
		{"capture timeout 1.5ms", func(c *Config) { c.CaptureTimeout = 1500 * time.Microsecond }, "option --capture-timeout: 1.5ms is not a whole number of milliseconds"},
		{"loopback target", func(c *Config) { c.Mappings[0].Target = netip.MustParseAddrPort("127.0.0.1:8080") },
			`option -x: "80-127.0.0.1:8080": target 127.0.0.1 is a loopback address: copies must go to another address (C target_localhost mode is not supported)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mod(&c)
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
				t.Errorf("Validate() = %v, want %q", err, tt.wantErr)
			}
		})
	}
	c := validConfig()
	c.Percent = 0
	if err := c.Validate(); err != nil || c.Percent != 100 {
		t.Errorf("Validate with Percent 0: Percent = %d, %v; want 100", c.Percent, err)
	}
}

func TestDefault(t *testing.T) {
	c := Default()
	// C TCPCopy's defaults, except -C (2 in C) and the options of our own.
	if c.InterceptPort != 36524 || c.ConnsPerIntercept != 1 || c.Copies != 1 || c.Percent != 100 ||
		c.MemoryMB != 2048 || c.MTU != 1500 || c.MSS != 1460 || c.SessionTimeout != 600*time.Second ||
		c.KeepaliveTimeout != 720*time.Second || !c.Combined || c.Workers != 1 || c.AckDelay != DefaultAckDelay ||
		c.CaptureTimeout != 2*time.Millisecond || c.StallTimeout != 30*time.Second {
		t.Errorf("Default() = %+v, does not match the documented defaults", c)
	}
}

// FuzzParseMappings checks that ParseMappings never panics and that what
// it accepts is valid and reads back from its String form.
func FuzzParseMappings(f *testing.F) {
	for _, s := range []string{
		"80-203.0.113.20:8080",
		"192.0.2.1:80-203.0.113.20:8080,443-203.0.113.21:8443",
		"[2001:db8::1]:80-[2001:db8::2]:8080",
		"80-[2001:db8::2]:8080",
		"0.0.0.0:80-203.0.113.20:8080",
		"80@aa:bb:cc:dd:ee:01-203.0.113.20:8080@aa:bb:cc:dd:ee:02",
		"99999-203.0.113.20:8080",
		"80-203.0.113.20",
	} {
		f.Add(s, strings.Contains(s, "@"))
	}
	f.Fuzz(func(t *testing.T, s string, withMAC bool) {
		ms, err := ParseMappings(s, withMAC)
		if err != nil {
			return
		}
		strs := make([]string, len(ms))
		for i, m := range ms {
			if err := m.check(); err != nil {
				t.Fatalf("ParseMappings(%q) accepted %+v: %v", s, m, err)
			}
			if (m.OnlineMAC != nil) != withMAC {
				t.Fatalf("ParseMappings(%q, %v) gave MACs %v", s, withMAC, m.OnlineMAC)
			}
			strs[i] = m.String()
		}
		back, err := ParseMappings(strings.Join(strs, ","), withMAC)
		if err != nil || !reflect.DeepEqual(back, ms) {
			t.Fatalf("ParseMappings(%q) = %v; its String form %q reads back as %v, %v", s, ms, strs, back, err)
		}
	})
}

// FuzzParseClientPool checks that ParseClientPool never panics and that
// what it accepts is within its documented limits and reads back equal.
func FuzzParseClientPool(f *testing.F) {
	for _, s := range []string{
		"198.51.100.x",
		"192.0.2.1,192.0.2.2,2001:db8::100",
		"203.0.113.20,192.0.2.x",
		"*",
		"127.0.0.x",
		"::ffff:192.0.2.1",
	} {
		f.Add(s)
	}
	targets := []netip.Addr{netip.MustParseAddr("203.0.113.20"), netip.MustParseAddr("2001:db8::2")}
	f.Fuzz(func(t *testing.T, s string) {
		pool, err := ParseClientPool(s, targets)
		if err != nil {
			return
		}
		if len(pool) > maxClientPool {
			t.Fatalf("ParseClientPool(%q) returned %d addresses", s, len(pool))
		}
		seen := make(map[netip.Addr]bool)
		strs := make([]string, len(pool))
		for i, a := range pool {
			if seen[a] || a == targets[0] || a == targets[1] || a.Is4In6() || checkClientAddr(a) != nil {
				t.Fatalf("ParseClientPool(%q) returned %v (duplicate, target or not a host)", s, a)
			}
			seen[a] = true
			strs[i] = a.String()
		}
		back, err := ParseClientPool(strings.Join(strs, ","), targets)
		if len(pool) == 0 {
			return
		}
		if err != nil || !reflect.DeepEqual(back, pool) {
			t.Fatalf("ParseClientPool(%q): String form reads back as %v, %v", s, back, err)
		}
	})
}

// FuzzParseIntercepts checks that ParseIntercepts never panics and that
// what it accepts reads back equal.
func FuzzParseIntercepts(f *testing.F) {
	for _, s := range []string{"203.0.113.30", "203.0.113.30:36524,203.0.113.31", "[2001:db8::30]:4000", "2001:db8::30", "[fe80::1%eth0]:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		aps, err := ParseIntercepts(s, 36524)
		if err != nil {
			return
		}
		strs := make([]string, len(aps))
		for i, ap := range aps {
			if !ap.IsValid() || ap.Port() == 0 || ap.Addr().Is4In6() {
				t.Fatalf("ParseIntercepts(%q) returned %v", s, ap)
			}
			strs[i] = ap.String()
		}
		back, err := ParseIntercepts(strings.Join(strs, ","), 1)
		if err != nil || !reflect.DeepEqual(back, aps) {
			t.Fatalf("ParseIntercepts(%q) = %v; String form reads back as %v, %v", s, aps, back, err)
		}
	})
}
