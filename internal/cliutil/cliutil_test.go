package cliutil

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestNormalize(t *testing.T) {
	const withValue, plain = "xsrFi", "dOLv"
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{"separate", []string{"-x", "80-192.0.2.1:8080", "-r", "20"}, []string{"-x", "80-192.0.2.1:8080", "-r", "20"}},
		{"glued value", []string{"-r20"}, []string{"-r", "20"}},
		{"group of plain", []string{"-dO"}, []string{"-d", "-O"}},
		{"group ending in value", []string{"-dr20"}, []string{"-d", "-r", "20"}},
		{"group then separate value", []string{"-dr", "20"}, []string{"-d", "-r", "20"}},
		{"value looks like a flag", []string{"-F", "-dO"}, []string{"-F", "-dO"}},
		{"long option", []string{"--no-combined", "--allow=192.0.2.0/24"}, []string{"--no-combined", "--allow=192.0.2.0/24"}},
		{"unknown letters left alone", []string{"-zq"}, []string{"-zq"}},
		{"equals form", []string{"-r=20"}, []string{"-r=20"}},
		{"after double dash", []string{"--", "-r20"}, []string{"--", "-r20"}},
		{"lone dash", []string{"-"}, []string{"-"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Normalize(tt.in, withValue, plain); !slices.Equal(got, tt.want) {
				t.Errorf("Normalize(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestIntInRange(t *testing.T) {
	tests := []struct {
		in      string
		want    int
		wantErr string
	}{
		{"20", 20, ""},
		{" 7 ", 7, ""},
		{"150", 0, "option -r: 150 is out of range 0..100"},
		{"abc", 0, `option -r: "abc" is not a number`},
		{"", 0, `option -r: "" is not a number`},
	}
	for _, tt := range tests {
		got, err := IntInRange("-r", tt.in, 0, 100)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("IntInRange(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("IntInRange(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestMillisInRange(t *testing.T) {
	tests := []struct {
		in      time.Duration
		wantErr string
	}{
		{time.Millisecond, ""},
		{250 * time.Millisecond, ""},
		{time.Second, ""},
		{0, "option --x: 0s is out of range 1ms..1s"},
		{-time.Millisecond, "option --x: -1ms is out of range 1ms..1s"},
		{1001 * time.Millisecond, "option --x: 1.001s is out of range 1ms..1s"},
		{2500 * time.Microsecond, "option --x: 2.5ms is not a whole number of milliseconds"},
	}
	for _, tt := range tests {
		err := MillisInRange("--x", tt.in, time.Millisecond, time.Second)
		if (tt.wantErr == "" && err != nil) || (tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr)) {
			t.Errorf("MillisInRange(%v) = %v, want %q", tt.in, err, tt.wantErr)
		}
	}
}

func TestSplitList(t *testing.T) {
	if got, want := SplitList(" eth0, ,eth1,"), []string{"eth0", "eth1"}; !slices.Equal(got, want) {
		t.Errorf("SplitList = %q, want %q", got, want)
	}
}

func TestShorten(t *testing.T) {
	if s := Shorten("short"); s != "short" {
		t.Errorf("Shorten(short) = %q", s)
	}
	long := "option -x: \"" + strings.Repeat("é", 60000) + "\": want more"
	s := Shorten(long)
	if len(s) > maxMessage+64 || !strings.HasPrefix(s, "option -x: ") || !strings.HasSuffix(s, "\": want more") ||
		!strings.Contains(s, "bytes left out") || !utf8.ValidString(s) {
		t.Errorf("Shorten(%d bytes) = %q", len(long), s)
	}
}

func TestParsePrefix(t *testing.T) {
	tests := []struct {
		in, want, wantErr string
	}{
		{"192.0.2.0/24", "192.0.2.0/24", ""},
		{"192.0.2.7/24", "192.0.2.0/24", ""},
		{"192.0.2.7", "192.0.2.7/32", ""},
		{"2001:db8::/32", "2001:db8::/32", ""},
		{"::ffff:203.0.113.0/120", "203.0.113.0/24", ""},
		{"::ffff:203.0.113.9", "203.0.113.9/32", ""},
		{"::ffff:0.0.0.0/96", "0.0.0.0/0", ""},
		{"::/0", "::/0", ""},
		{"::ffff:0:0/95", "", "covers more than IPv4-mapped addresses"},
		{"fe80::1%eth0", "", "zones are not supported"},
		{"lan", "", `"lan" is not a CIDR or address`},
	}
	for _, tt := range tests {
		got, err := ParsePrefix(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParsePrefix(%q) = %v, %v; want error %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != netip.MustParsePrefix(tt.want) {
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}

func TestCheckListenAddr(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{":9100", true}, {"127.0.0.1:9100", true}, {"[::1]:9100", true}, {"localhost:9100", true},
		{"9100", false}, {":0", false}, {":99999", false}, {":+80", false}, {"example.org:80", false}, {"127.0.0.1:http", false},
	}
	for _, tt := range tests {
		if err := CheckListenAddr("--metrics-addr", tt.in); (err == nil) != tt.ok {
			t.Errorf("CheckListenAddr(%q) = %v, want ok %v", tt.in, err, tt.ok)
		}
	}
}
