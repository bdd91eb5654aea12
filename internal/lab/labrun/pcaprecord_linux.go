package labrun

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/tcpcopy-go/tcpcopy/internal/nsdo"
	"github.com/tcpcopy-go/tcpcopy/pkg/capture"
)

// PcapRecorder captures what crosses one interface of a lab namespace
// into a pcap file, as "tcpdump -i IF -w FILE" would: both directions,
// whole packets, super-packets included (GRO, TSO). Tests replay such
// recordings offline (tcpcopy -i FILE). Make it with RecordPcap.
type PcapRecorder struct {
	src  *capture.Source
	w    *bufio.Writer
	done chan struct{}

	mu  sync.Mutex
	n   int
	err error
}

// Made-up MAC addresses of the Ethernet headers RecordPcap writes: the
// capture ring hands out packets from the IP header on.
var (
	pcapMACHost = [6]byte{0x02, 0, 0, 0, 0, 0x01} // the recording namespace
	pcapMACPeer = [6]byte{0x02, 0, 0, 0, 0, 0x02} // the other end of the link
)

// RecordPcap starts capturing on interface ifname of the network
// namespace ns (a full name, such as netlab.Topology.Online.Name) and
// writes a classic pcap file (pcap-savefile(5): nanosecond timestamps,
// LINKTYPE_ETHERNET, snap length 262144) to w. Frames get a made-up
// Ethernet header (pcapMACHost/pcapMACPeer). Close stops it.
func RecordPcap(ns, ifname string, w io.Writer) (*PcapRecorder, error) {
	var src *capture.Source
	err := nsdo.Do(ns, func() error {
		var err error
		src, err = capture.Open(capture.Config{Interface: ifname})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("pcap recording on %s in %s: %w", ifname, ns, err)
	}
	r := &PcapRecorder{src: src, w: bufio.NewWriterSize(w, 1<<20), done: make(chan struct{})}
	var hdr [24]byte
	le := binary.LittleEndian
	le.PutUint32(hdr[0:], 0xa1b23c4d) // nanoseconds
	le.PutUint16(hdr[4:], 2)
	le.PutUint16(hdr[6:], 4)
	le.PutUint32(hdr[16:], 262144)
	le.PutUint32(hdr[20:], 1) // LINKTYPE_ETHERNET
	r.w.Write(hdr[:])
	go r.loop()
	return r, nil
}

func (r *PcapRecorder) loop() {
	defer close(r.done)
	pkts := make([]capture.Packet, 64)
	var rec [16 + 14]byte
	le := binary.LittleEndian
	for {
		n, err := r.src.ReadBatch(pkts)
		r.mu.Lock()
		for _, p := range pkts[:n] {
			le.PutUint32(rec[0:], uint32(p.Time.Unix()))
			le.PutUint32(rec[4:], uint32(p.Time.Nanosecond()))
			le.PutUint32(rec[8:], uint32(14+len(p.Data)))
			le.PutUint32(rec[12:], uint32(14+p.Len))
			dst, src := pcapMACHost, pcapMACPeer
			if p.Outgoing {
				dst, src = src, dst
			}
			copy(rec[16:], dst[:])
			copy(rec[22:], src[:])
			typ := uint16(0x0800)
			if len(p.Data) > 0 && p.Data[0]>>4 == 6 {
				typ = 0x86dd
			}
			binary.BigEndian.PutUint16(rec[28:], typ)
			r.w.Write(rec[:])
			r.w.Write(p.Data)
			r.n++
		}
		r.mu.Unlock()
		if err != nil {
			if !errors.Is(err, capture.ErrClosed) {
				r.mu.Lock()
				r.err = err
				r.mu.Unlock()
			}
			return
		}
	}
}

// Packets returns the number of packets written so far.
func (r *PcapRecorder) Packets() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// Close stops the capture, writes out what was captured and returns the
// number of packets in the file. It does not close the writer.
func (r *PcapRecorder) Close() (int, error) {
	r.src.Close()
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.w.Flush(); err != nil && r.err == nil {
		r.err = err
	}
	return r.n, r.err
}
