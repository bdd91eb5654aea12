package tcpcopy

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/tcpcopy-go/tcpcopy/pkg/pcapfile"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

// TestPacerBoundsGaps: without -I a gap above maxReplayGap is skipped and
// counted; with -I the user's bound rules.
func TestPacerBoundsGaps(t *testing.T) {
	const sec = int64(time.Second)
	tests := []struct {
		name        string
		idle        time.Duration
		gap         int64 // ns between the two packets
		due         int64 // of the second packet, ns after the first
		wantBounded uint64
	}{
		{"a jump of 1e9 s", 0, 1_000_000_000 * sec, 0, 1},
		{"59 minutes are waited for", 0, 59 * 60 * sec, 59 * 60 * sec, 0},
		{"61 minutes are not", 0, 61 * 60 * sec, 0, 1},
		{"-I 1 day: a 2 h gap is the user's choice", 24 * time.Hour, 2 * 3600 * sec, 2 * 3600 * sec, 0},
		{"-I 1 s skips it without a warning", time.Second, 1_000_000_000 * sec, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pc := pacer{accel: 1, idle: int64(tt.idle)}
			pc.due(1_700_000_000*sec, 0)
			if got := pc.due(1_700_000_000*sec+tt.gap, 0); got != tt.due {
				t.Errorf("due %v, want %v", time.Duration(got), time.Duration(tt.due))
			}
			if pc.bounded != tt.wantBounded {
				t.Errorf("bounded %d, want %d", pc.bounded, tt.wantBounded)
			}
		})
	}
}

// syncLog is a log buffer safe for the workers.
type syncLog struct {
	buf bytes.Buffer
	ch  chan struct{}
}

func (s *syncLog) Write(p []byte) (int, error) {
	s.ch <- struct{}{}
	defer func() { <-s.ch }()
	return s.buf.Write(p)
}

func (s *syncLog) String() string {
	s.ch <- struct{}{}
	defer func() { <-s.ch }()
	return s.buf.String()
}

// replayFile replays path on a virtual clock and returns the log and the
// virtual time the replay took.
func replayFile(t *testing.T, path string) (string, time.Duration) {
	t.Helper()
	out := &syncLog{ch: make(chan struct{}, 1)}
	var took time.Duration
	synctest.Test(t, func(t *testing.T) {
		cfg := goldenCfg(path)
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		log := slog.New(slog.NewTextHandler(out, nil))
		e := newEngine(&cfg, &synClock{got: map[string]time.Duration{}}, log)
		e.linksUp = func() int { return 1 }
		for _, w := range e.disp.workers {
			w.links = routeRecorder{new([]wire.Route)}
			e.track(w)
		}
		src, err := openOffline(&cfg, log)
		if err != nil {
			t.Fatal(err)
		}
		defer src.close()
		start := time.Now()
		if err := e.replay(context.Background(), src); err != nil {
			t.Fatal(err)
		}
		took = time.Since(start)
		e.logOffline(src)
	})
	return out.String(), took
}

// writeCapture writes the golden capture's frames to dst, with the
// timestamps and record lengths edit returns.
func writeCapture(t *testing.T, dst string, snap uint32, edit func(i int, ts time.Time, capLen, origLen int) (time.Time, int)) {
	t.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriterNanos(&buf)
	if err := w.WriteFileHeader(snap, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	i := 0
	if edit == nil { // the file header alone
		if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	eachFrame(t, filepath.Join(goldenDir, "http.pcap"), func(p *pcapfile.Packet) {
		ts, orig := edit(i, time.Unix(0, p.Time), len(p.Data), p.Len)
		i++
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(p.Data), Length: orig}, p.Data); err != nil {
			t.Fatal(err)
		}
	})
	if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestOfflineClockJump(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jump.pcap")
	// Every packet from the fifth on is 1e9 s later: a clock that jumped.
	writeCapture(t, path, 262144, func(i int, ts time.Time, _, orig int) (time.Time, int) {
		if i >= 4 {
			ts = ts.Add(1e9 * time.Second)
		}
		return ts, orig
	})
	log, took := replayFile(t, path)
	if took > time.Minute {
		t.Errorf("the replay waited %v", took)
	}
	if !strings.Contains(log, "jump by more than an hour") || !strings.Contains(log, "gaps_above_max=1") {
		t.Errorf("no warning about the gap:\n%s", log)
	}
}

func TestOfflineRecordAnomalies(t *testing.T) {
	path := filepath.Join(t.TempDir(), "odd.pcap")
	// A snap length of 100 that the records exceed, and the first
	// record's original length below its captured length.
	writeCapture(t, path, 100, func(_ int, ts time.Time, _, orig int) (time.Time, int) { return ts, orig })
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// pcapgo writes no such record: lower the first one's original length
	// by hand (record header after the 24-byte file header; little endian).
	capLen := binary.LittleEndian.Uint32(b[24+8:])
	binary.LittleEndian.PutUint32(b[24+12:], capLen-1)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	log, _ := replayFile(t, path)
	for _, want := range []string{"more bytes than the file's snap length", "original length is below its captured length",
		"caplen_above_snaplen=", "origlen_below_caplen=1"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log does not say %q:\n%s", want, log)
		}
	}
	if strings.Count(log, "snap length (damaged") != 1 {
		t.Errorf("the snap length warning is not logged once:\n%s", log)
	}
}

func TestOfflineHeaderOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "empty.pcap")
	writeCapture(t, path, 262144, nil)
	log, _ := replayFile(t, path)
	if !strings.Contains(log, "holds no packet") {
		t.Errorf("no warning for a file without packets:\n%s", log)
	}
}
