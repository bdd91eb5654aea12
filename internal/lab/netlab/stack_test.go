package netlab

import (
	"math"
	"strings"
	"testing"
)

func TestOptionsValidate(t *testing.T) {
	cases := []struct {
		name    string
		opts    Options
		wantErr string // "" for valid
	}{
		{"zero", Options{}, ""},
		{"all set", Options{ClientSysctls: []string{"net.ipv4.tcp_timestamps=0", "net.ipv4.tcp_sack=0"},
			ClientMSS: 536, ClientMTU: 9000, TargetMTU: 1400, LossCopy: 1, LossResponse: 0.01}, ""},
		{"extra clients negative", Options{ExtraClients: -1}, "ExtraClients"},
		{"extra clients too many", Options{ExtraClients: MaxExtraClients + 1}, "ExtraClients"},
		{"bad prefix", Options{Prefix: "Tcg"}, "bad prefix"},
		{"sysctl without value", Options{ClientSysctls: []string{"net.ipv4.tcp_sack"}}, "key=value"},
		{"sysctl empty key", Options{ClientSysctls: []string{"=1"}}, "empty key"},
		{"sysctl empty value", Options{ClientSysctls: []string{"net.ipv4.tcp_sack="}}, "empty value"},
		{"sysctl upper case", Options{ClientSysctls: []string{"net.IPv4.tcp_sack=0"}}, "[a-z0-9._-]"},
		{"sysctl slash", Options{ClientSysctls: []string{"net/ipv4/tcp_sack=0"}}, "[a-z0-9._-]"},
		{"sysctl space in key", Options{ClientSysctls: []string{"net.ipv4 .tcp_sack=0"}}, "[a-z0-9._-]"},
		{"sysctl leading dot", Options{ClientSysctls: []string{".net.ipv4.tcp_sack=0"}}, "malformed"},
		{"sysctl double dot", Options{ClientSysctls: []string{"net..tcp_sack=0"}}, "malformed"},
		{"sysctl newline in value", Options{ClientSysctls: []string{"net.ipv4.tcp_sack=0\nx"}}, "control character"},
		{"client mtu too small", Options{ClientMTU: 67}, "ClientMTU 67 out of range 68..65535"},
		{"client mtu smallest", Options{ClientMTU: 68}, ""},
		{"client mtu too large", Options{ClientMTU: 65536}, "ClientMTU"},
		{"client mtu largest", Options{ClientMTU: 65535}, ""},
		{"target mtu too small", Options{TargetMTU: 10}, "TargetMTU"},
		{"target mtu too large", Options{TargetMTU: 70000}, "TargetMTU"},
		{"mss too small", Options{ClientMSS: 63}, "ClientMSS 63 out of range 64..1460"},
		{"mss smallest", Options{ClientMSS: 64}, ""},
		{"mss largest at 1500", Options{ClientMSS: 1460}, ""},
		{"mss above the link", Options{ClientMSS: 1461}, "ClientMSS 1461 out of range 64..1460"},
		{"mss on a jumbo link", Options{ClientMSS: 8960, ClientMTU: 9000}, ""},
		{"mss on a small link", Options{ClientMSS: 536, ClientMTU: 500}, "64..460"},
		{"loss negative", Options{LossCopy: -1}, "LossCopy: loss -1% out of range 0..100"},
		{"loss above 100", Options{LossResponse: 100.5}, "LossResponse"},
		{"loss 100", Options{LossCopy: 100}, ""},
		{"loss NaN", Options{LossCopy: math.NaN()}, "out of range"},
		{"loss below resolution", Options{LossCopy: 0.004}, "resolution"},
		{"loss at resolution", Options{LossCopy: 0.01}, ""},
	}
	for _, c := range cases {
		err := c.opts.Validate()
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%s: got %v, want valid", c.name, err)
		case c.wantErr != "" && err == nil:
			t.Errorf("%s: valid, want an error with %q", c.name, c.wantErr)
		case c.wantErr != "" && !strings.Contains(err.Error(), c.wantErr):
			t.Errorf("%s: got %q, want it to contain %q", c.name, err, c.wantErr)
		}
	}
}

func TestLossThreshold(t *testing.T) {
	cases := []struct {
		pct  float64
		want int
	}{
		{0, 0}, {0.01, 1}, {0.015, 2}, {1, 100}, {2.5, 250}, {20, 2000}, {99.99, 9999}, {100, 10000},
	}
	for _, c := range cases {
		got, err := lossThreshold(c.pct)
		if err != nil || got != c.want {
			t.Errorf("lossThreshold(%v): got %d, %v; want %d", c.pct, got, err, c.want)
		}
	}
}

func TestLossRuleset(t *testing.T) {
	got := lossRuleset(lossChainCopy, IfToTarget, 150)
	want := "table netdev tcpcopy_lab {\n" +
		"\tchain copy_loss {\n" +
		"\t\ttype filter hook egress device \"to-target\" priority 0; policy accept;\n" +
		"\t\tmeta l4proto tcp numgen random mod 10000 < 150 counter drop\n" +
		"\t}\n" +
		"}\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestNftCounter(t *testing.T) {
	// nft -j list table netdev tcpcopy_lab, nftables 1.0.6.
	const listing = `{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
{"table": {"family": "netdev", "name": "tcpcopy_lab", "handle": 1}},
{"chain": {"family": "netdev", "table": "tcpcopy_lab", "name": "copy_loss", "handle": 1, "type": "filter", "hook": "egress", "prio": 0, "policy": "accept"}},
{"rule": {"family": "netdev", "table": "tcpcopy_lab", "chain": "copy_loss", "handle": 2, "expr": [
 {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}},
 {"match": {"op": "<", "left": {"numgen": {"mode": "random", "mod": 10000, "offset": 0}}, "right": 2000}},
 {"counter": {"packets": 97, "bytes": 3880}}, {"drop": null}]}},
{"rule": {"family": "netdev", "table": "other", "chain": "copy_loss", "handle": 3, "expr": [{"counter": {"packets": 5, "bytes": 1}}]}}]}`
	cases := []struct {
		name, js, chain string
		want            uint64
		wantErr         string
	}{
		{"counter", listing, lossChainCopy, 97, ""},
		{"other chain", listing, lossChainResponse, 0, "no counter"},
		{"not json", "table netdev x {}", lossChainCopy, 0, "nft -j output"},
		{"counter without packets", `{"nftables":[{"rule":{"table":"tcpcopy_lab","chain":"copy_loss","expr":[{"counter":{"bytes":1}}]}}]}`, lossChainCopy, 0, "unexpected counter"},
	}
	for _, c := range cases {
		got, err := nftCounter([]byte(c.js), lossTable, c.chain)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%s: got %d, %v; want an error with %q", c.name, got, err, c.wantErr)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: got %d, %v; want %d", c.name, got, err, c.want)
		}
	}
}
