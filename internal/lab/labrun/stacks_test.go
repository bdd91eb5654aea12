package labrun

import (
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
)

func TestClientStacks(t *testing.T) {
	seen := map[string]bool{}
	name := regexp.MustCompile(`^[a-z0-9-]{1,16}$`)
	for i, s := range ClientStacks {
		if !name.MatchString(s.Name) || seen[s.Name] {
			t.Errorf("stack %d: name %q not short, lowercase and unique", i, s.Name)
		}
		seen[s.Name] = true
		if s.Doc == "" {
			t.Errorf("stack %s: no Doc", s.Name)
		}
		c := Config{}
		s.Apply(&c)
		if c.ClientStack != s.Name {
			t.Errorf("stack %s: Apply set ClientStack %q", s.Name, c.ClientStack)
		}
		if err := c.netlabOptions().Validate(); err != nil {
			t.Errorf("stack %s: %v", s.Name, err)
		}
		got, err := ClientStackByName(s.Name)
		if err != nil || !reflect.DeepEqual(got, s) {
			t.Errorf("ClientStackByName(%q) = %+v, %v", s.Name, got, err)
		}
	}
	if ClientStacks[0].Name != "linux" {
		t.Errorf("first stack %q, want linux (the default)", ClientStacks[0].Name)
	}
	c := Config{}
	ClientStacks[0].Apply(&c)
	if !reflect.DeepEqual(c, Config{ClientStack: "linux"}) {
		t.Errorf("linux changed the config: %+v", c)
	}
	for _, want := range []string{"linux", "no-timestamps", "no-sack", "no-wscale", "mss536", "mss1200", "jumbo-client", "target-mtu1400", "ecn", "data-on-ack"} {
		if !seen[want] {
			t.Errorf("no stack %s", want)
		}
	}
	if _, err := ClientStackByName("windows95"); err == nil || !strings.Contains(err.Error(), "no-timestamps") {
		t.Errorf("unknown stack: got %v, want an error listing the stacks", err)
	}
}

func TestClientStackApply(t *testing.T) {
	cases := []struct {
		name  string
		stack string
		in    Config
		want  Config
	}{
		{"sysctls appended after the config's", "no-sack",
			Config{ClientSysctls: []string{"net.ipv4.tcp_ecn=1"}},
			Config{ClientStack: "no-sack", ClientSysctls: []string{"net.ipv4.tcp_ecn=1", "net.ipv4.tcp_sack=0"}}},
		{"mss replaces", "mss536", Config{ClientMSS: 1000, ClientMTU: 9000},
			Config{ClientStack: "mss536", ClientSysctls: []string{}, ClientMSS: 536, ClientMTU: 9000}},
		{"data on ack", "data-on-ack", Config{Load: load.Options{Rate: 5}},
			Config{ClientStack: "data-on-ack", ClientSysctls: []string{}, Load: load.Options{Rate: 5, DataOnAck: true}}},
		{"mtus", "jumbo-client", Config{TargetMTU: 1400},
			Config{ClientStack: "jumbo-client", ClientSysctls: []string{}, ClientMTU: 9000, TargetMTU: 1400}},
	}
	for _, c := range cases {
		s, err := ClientStackByName(c.stack)
		if err != nil {
			t.Fatal(err)
		}
		got := c.in
		s.Apply(&got)
		if got.ClientSysctls == nil {
			got.ClientSysctls = []string{}
		}
		if c.want.ClientSysctls == nil {
			c.want.ClientSysctls = []string{}
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\ngot  %+v\nwant %+v", c.name, got, c.want)
		}
	}
	// Apply does not write into the stack's own slice.
	in := Config{ClientSysctls: make([]string, 1, 10)}
	ClientStacks[1].Apply(&in)
	in.ClientSysctls[1] = "x"
	if ClientStacks[1].Sysctls[0] == "x" {
		t.Error("Apply aliased the stack's sysctls")
	}
}

func TestLossLevels(t *testing.T) {
	want := map[string][2]float64{"loss-1-1": {1, 1}, "loss-2-2": {2, 2}, "loss-5-0": {5, 0}, "loss-0-5": {0, 5}}
	if len(LossLevels) != len(want) {
		t.Errorf("%d loss levels, want %d", len(LossLevels), len(want))
	}
	for _, l := range LossLevels {
		w, ok := want[l.Name]
		if !ok || w != [2]float64{l.Copy, l.Response} {
			t.Errorf("loss level %+v, want %v", l, w)
		}
		var c Config
		l.Apply(&c)
		if c.LossCopy != l.Copy || c.LossResponse != l.Response {
			t.Errorf("%s: Apply set %v/%v", l.Name, c.LossCopy, c.LossResponse)
		}
		if err := c.netlabOptions().Validate(); err != nil {
			t.Errorf("%s: %v", l.Name, err)
		}
		if got, err := LossLevelByName(l.Name); err != nil || got != l {
			t.Errorf("LossLevelByName(%q) = %+v, %v", l.Name, got, err)
		}
	}
	if _, err := LossLevelByName("loss-9-9"); err == nil {
		t.Error("unknown loss level: want an error")
	}
}

func TestStackName(t *testing.T) {
	cases := []struct {
		name string
		c    Config
		want string
	}{
		{"nothing", Config{}, "linux"},
		{"named", Config{ClientStack: "ecn", ClientSysctls: []string{"net.ipv4.tcp_ecn=1"}}, "ecn"},
		{"sysctl", Config{ClientSysctls: []string{"net.ipv4.tcp_ecn=1"}}, "custom"},
		{"mss", Config{ClientMSS: 536}, "custom"},
		{"expect continue", Config{Load: load.Options{ExpectContinue: true}}, "custom"},
		{"loss only", Config{LossCopy: 1}, "linux"},
	}
	for _, c := range cases {
		if got := c.c.stackName(); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}

func TestParseTcpdumpStats(t *testing.T) {
	cases := []struct {
		name    string
		stderr  string
		want    PcapReport
		wantErr bool
	}{
		{"tcpdump 4.99", "tcpdump: listening on to-client, link-type EN10MB (Ethernet), snapshot length 262144 bytes\n" +
			"1234 packets captured\n1240 packets received by filter\n0 packets dropped by kernel\n",
			PcapReport{Captured: 1234, ReceivedByFilter: 1240}, false},
		{"singular and drops", "tcpdump: listening on to-client\n1 packet captured\n1 packet received by filter\n7 packets dropped by kernel\n2 packets dropped by interface\n",
			PcapReport{Captured: 1, ReceivedByFilter: 1, DroppedByKernel: 7, DroppedByInterface: 2}, false},
		{"killed before the counts", "tcpdump: listening on to-client, link-type EN10MB\n", PcapReport{}, true},
		{"empty", "", PcapReport{}, true},
	}
	for _, c := range cases {
		got, err := parseTcpdumpStats(c.stderr)
		if c.wantErr {
			if err == nil {
				t.Errorf("%s: got %+v, want an error", c.name, got)
			}
			continue
		}
		if err != nil || *got != c.want {
			t.Errorf("%s: got %+v, %v; want %+v", c.name, got, err, c.want)
		}
	}
}

func TestNetworkText(t *testing.T) {
	cases := []struct {
		name        string
		n           Network
		stack, loss string
	}{
		{"defaults", Network{}, "the lab's Linux defaults", "none"},
		{"all", Network{ClientSysctls: []string{"net.ipv4.tcp_timestamps=0"}, ClientMSS: 1220, ClientMSS6: 1220, ClientMTU: 9000,
			TargetMTU: 1400, DataOnAck: true, ExpectContinue: true, LossCopy: 1.5, DroppedCopy: 12},
			"net.ipv4.tcp_timestamps=0, MSS 1220, client link MTU 9000, target MTU 1400 (online sends at 1500), requests on the handshake's ACK, Expect: 100-continue",
			"copy 1.5% (12 TCP frames dropped), response 0%"},
		{"mss ipv4 only", Network{ClientMSS: 536, LossResponse: 5, DroppedResponse: 3},
			"MSS 536 (IPv4 only: MSS+60 is below the IPv6 minimum MTU)", "copy 0%, response 5% (3 TCP frames dropped)"},
	}
	for _, c := range cases {
		if got := c.n.stackText(); got != c.stack {
			t.Errorf("%s: stack %q, want %q", c.name, got, c.stack)
		}
		if got := c.n.lossText(); got != c.loss {
			t.Errorf("%s: loss %q, want %q", c.name, got, c.loss)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name    string
		c       Config
		wantErr string
	}{
		{"defaults", Config{}, ""},
		{"every stack setting", Config{ClientSysctls: []string{"net.ipv4.tcp_ecn=1"}, ClientMSS: 536, ClientMTU: 9000, TargetMTU: 1400,
			LossCopy: 2, LossResponse: 0.5}, ""},
		{"client mtu below ipv6", Config{ClientMTU: 1279}, "ClientMTU 1279 is below 1280"},
		{"client mtu out of range", Config{ClientMTU: 65536}, "ClientMTU 65536 out of range"},
		{"target mtu below ipv6 without ipv6", Config{TargetMTU: 576}, ""},
		{"target mtu below ipv6 with ipv6", Config{TargetMTU: 1279, IPv6: true}, "TargetMTU 1279 is below 1280"},
		{"target mtu out of range", Config{TargetMTU: 67}, "TargetMTU 67 out of range"},
		{"mss too large for the link", Config{ClientMSS: 1500}, "ClientMSS 1500 out of range"},
		{"bad sysctl", Config{ClientSysctls: []string{"net.ipv4.tcp_ecn"}}, "key=value"},
		{"loss above 100", Config{LossResponse: 100.01}, "LossResponse"},
		{"pcap without a directory", Config{Pcap: dir + "/missing/x.pcap"}, "no directory"},
	}
	for _, c := range cases {
		err := c.c.setDefaults()
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("%s: got %v, want an error with %q", c.name, err, c.wantErr)
		}
	}
}
