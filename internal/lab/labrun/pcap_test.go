package labrun_test

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
)

// handshake is how a client connection in a capture started: the client's
// first packet after its SYN.
type handshake struct {
	conn    string // client address:port
	third   layers.TCP
	payload int
}

// readHandshakes reads a tcpdump capture of online's to-client and returns,
// for each client connection to port 80, the client's packet after its SYN,
// and how many packets came from each side.
func readHandshakes(t *testing.T, path string) (hs []handshake, fromClient, toClient int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if r.LinkType() != layers.LinkTypeEthernet {
		t.Fatalf("link type %v, want Ethernet", r.LinkType())
	}
	synSeen := map[string]bool{}
	done := map[string]bool{}
	for {
		data, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		tcp, ok := p.TransportLayer().(*layers.TCP)
		if !ok || p.NetworkLayer() == nil {
			continue
		}
		src := p.NetworkLayer().NetworkFlow().Src().String()
		switch {
		case tcp.DstPort == 80:
			fromClient++
		case tcp.SrcPort == 80:
			toClient++
			continue
		default:
			continue
		}
		conn := src + ":" + tcp.SrcPort.String()
		switch {
		case tcp.SYN:
			synSeen[conn], done[conn] = true, false
		case synSeen[conn] && !done[conn]:
			done[conn] = true
			hs = append(hs, handshake{conn: conn, third: *tcp, payload: len(tcp.Payload)})
		}
	}
	return hs, fromClient, toClient
}

// TestRunPcapDataOnAck records the client side of two runs with tcpdump:
// with the data-on-ack client stack, the third packet of every handshake
// carries the request; with the default client it is a pure ACK. It also
// checks the report's client stack and loss lines.
func TestRunPcapDataOnAck(t *testing.T) {
	needRoot(t)
	for _, tool := range []string{"tcpdump", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: scripts/deps.sh installs it", tool)
		}
	}
	cases := []struct {
		stack     string
		loss      bool
		dataOnAck bool
		lines     []string
	}{
		{"linux", false, false, []string{"client     stack linux: the lab's Linux defaults\n", "loss       none\n"}},
		{"data-on-ack", true, true, []string{"client     stack data-on-ack: requests on the handshake's ACK\n",
			"loss       copy 1% (0 TCP frames dropped), response 1% (0 TCP frames dropped)\n"}},
	}
	for _, c := range cases {
		t.Run(c.stack, func(t *testing.T) {
			cfg := config(t)
			cfg.Load = load.Options{Rate: 20, Duration: 400 * time.Millisecond, MaxRequests: 8, Mode: load.Short,
				Methods: []string{"GET", "POST"}, BodySizes: []int{100}}
			s, err := labrun.ClientStackByName(c.stack)
			if err != nil {
				t.Fatal(err)
			}
			s.Apply(&cfg)
			if c.loss {
				labrun.LossLevels[0].Apply(&cfg)
			}
			cfg.Pcap = filepath.Join(cfg.Dir, "client.pcap")
			rep, err := labrun.Run(context.Background(), cfg, logger(t))
			if err != nil {
				t.Fatal(err)
			}
			checkGone(t, rep.ID)
			var text strings.Builder
			if err := rep.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			t.Logf("report:\n%s", text.String())
			for _, l := range c.lines {
				if !strings.Contains(text.String(), l) {
					t.Errorf("report lacks %q", l)
				}
			}
			if rep.Load.OK == 0 || rep.Load.OK != rep.Load.Requests {
				t.Fatalf("load: %d requests, %d ok: %s", rep.Load.Requests, rep.Load.OK, rep.Load.FirstErr)
			}
			p := rep.Pcap
			if p == nil || p.File != cfg.Pcap || p.Captured == 0 || p.DroppedByKernel != 0 {
				t.Fatalf("pcap report %+v", p)
			}
			if !strings.Contains(text.String(), "pcap       "+cfg.Pcap+": ") {
				t.Errorf("report lacks the pcap line")
			}
			hs, fromClient, toClient := readHandshakes(t, cfg.Pcap)
			if uint64(fromClient+toClient) > p.Captured || fromClient == 0 || toClient == 0 {
				t.Errorf("capture has %d packets from and %d to the client, tcpdump counted %d", fromClient, toClient, p.Captured)
			}
			// Short mode: one connection per request, every one recorded
			// from its SYN.
			if len(hs) != rep.Load.Requests {
				t.Errorf("%d handshakes in the capture, want %d (one per request)", len(hs), rep.Load.Requests)
			}
			for _, h := range hs {
				if !h.third.ACK || h.third.SYN || h.third.FIN || h.third.RST {
					t.Errorf("%s: third packet of the handshake is not an ACK: %+v", h.conn, h.third)
				}
				if got := h.payload > 0; got != c.dataOnAck {
					t.Errorf("%s: third packet of the handshake carries %d bytes, want data %v", h.conn, h.payload, c.dataOnAck)
				}
			}
		})
	}
}
