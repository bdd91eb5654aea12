package tcpcopy

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/netlab"
	"github.com/tcpcopy-go/tcpcopy/internal/nsdo"
	"github.com/tcpcopy-go/tcpcopy/pkg/pcapfile"
)

// recordGolden records the golden exchange in a namespace lab and writes
// testdata/offline/http.pcap, .pcapng and .pcap.gz. Four connections,
// recorded on online's client-side interface, both directions:
//
//	A  IPv4, keep-alive: GET /a1, POST /a2 (3000 B), POST /a3 (20000 B,
//	   GRO/TSO super-packets), GET /a4
//	   a pause of 300 ms (an idle gap for -I)
//	B  IPv4, Connection: close: POST /b1 (100 B)
//	C  IPv6, keep-alive: GET /c1, POST /c2 (5000 B)
//	D  IPv4 to port 81, not mapped: ignored by the replay
//
// then the clients close their idle connections (FIN).
func recordGolden(t *testing.T) {
	topo := netlab.NewForTest(t, netlab.Options{GRO: true})
	var lns []net.Listener
	err := nsdo.Do(topo.Online.Name, func() error {
		for _, a := range []string{"192.0.2.1:80", "[2001:db8:1::1]:80", "192.0.2.1:81"} {
			ln, err := net.Listen("tcp", a)
			if err != nil {
				return err
			}
			lns = append(lns, ln)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "ok %s %d\n", r.URL.Path, n)
	})}
	for _, ln := range lns {
		go srv.Serve(ln)
	}
	defer srv.Close()

	var pcap bytes.Buffer
	rec, err := labrun.RecordPcap(topo.Online.Name, netlab.IfToClient, &pcap)
	if err != nil {
		t.Fatal(err)
	}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := nsdo.Do(topo.Client.Name, func() error {
			var err error
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	newClient := func() *http.Client {
		return &http.Client{Transport: &http.Transport{DialContext: dial, DisableCompression: true}, Timeout: 5 * time.Second}
	}
	do := func(c *http.Client, method, url string, body int, closeConn bool) {
		t.Helper()
		req, err := http.NewRequest(method, url, bytes.NewReader(bytes.Repeat([]byte{'x'}, body)))
		if err != nil {
			t.Fatal(err)
		}
		if body == 0 {
			req.Body = nil
		}
		req.Close = closeConn
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	a, b, c, d := newClient(), newClient(), newClient(), newClient()
	do(a, "GET", "http://192.0.2.1/a1", 0, false)
	do(a, "POST", "http://192.0.2.1/a2", 3000, false)
	do(a, "POST", "http://192.0.2.1/a3", 20000, false)
	do(a, "GET", "http://192.0.2.1/a4", 0, false)
	time.Sleep(300 * time.Millisecond)
	do(b, "POST", "http://192.0.2.1/b1", 100, true)
	do(c, "GET", "http://[2001:db8:1::1]/c1", 0, false)
	do(d, "GET", "http://192.0.2.1:81/d1", 0, false)
	do(c, "POST", "http://[2001:db8:1::1]/c2", 5000, false)
	for _, cl := range []*http.Client{a, b, c, d} {
		cl.CloseIdleConnections()
	}
	time.Sleep(200 * time.Millisecond)
	n, err := rec.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("recorded %d packets, %d bytes", n, pcap.Len())
	if err := os.MkdirAll(goldenDir, 0o755); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(goldenDir, "http.pcap")
	if err := os.WriteFile(base, pcap.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(pcap.Bytes())
	zw.Close()
	if err := os.WriteFile(base+".gz", z.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	// pcapng, big-endian: written by hand so that the stored file differs
	// from what gopacket writes in the tests.
	var ng bytes.Buffer
	writeNGBigEndian(t, base, &ng)
	if err := os.WriteFile(filepath.Join(goldenDir, "http.pcapng"), ng.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeNGBigEndian writes the capture at src as a big-endian pcapng file
// with one Ethernet interface in nanoseconds (if_tsresol 9).
func writeNGBigEndian(t *testing.T, src string, w *bytes.Buffer) {
	t.Helper()
	be := binary.BigEndian
	block := func(typ uint32, body []byte) {
		for len(body)%4 != 0 {
			body = append(body, 0)
		}
		total := uint32(12 + len(body))
		w.Write(be.AppendUint32(be.AppendUint32(nil, typ), total))
		w.Write(body)
		w.Write(be.AppendUint32(nil, total))
	}
	shb := be.AppendUint32(nil, 0x1a2b3c4d)
	shb = be.AppendUint16(shb, 1)
	shb = be.AppendUint16(shb, 0)
	shb = be.AppendUint64(shb, ^uint64(0))
	block(0x0a0d0d0a, shb)
	idb := be.AppendUint16(nil, 1)
	idb = be.AppendUint16(idb, 0)
	idb = be.AppendUint32(idb, 262144)
	idb = append(be.AppendUint16(be.AppendUint16(idb, 9), 1), 9, 0, 0, 0) // if_tsresol: 10^-9 s
	idb = be.AppendUint32(idb, 0)                                         // opt_endofopt
	block(1, idb)
	eachFrame(t, src, func(p *pcapfile.Packet) {
		ns := uint64(p.Time)
		epb := be.AppendUint32(nil, 0)
		epb = be.AppendUint32(epb, uint32(ns>>32))
		epb = be.AppendUint32(epb, uint32(ns))
		epb = be.AppendUint32(epb, uint32(len(p.Data)))
		epb = be.AppendUint32(epb, uint32(p.Len))
		block(6, append(epb, p.Data...))
	})
}

// recordGoldenClients records testdata/offline/notimestamps.pcap in a
// namespace lab whose client runs without TCP timestamps (Windows'
// default, net.ipv4.tcp_timestamps=0), so that its full segments carry
// 1460 bytes (1440 over IPv6) and a copy that adds our 12-byte
// timestamps option without splitting them exceeds the MTU. GRO is on,
// as on real hosts. Recorded on online's client-side interface, both
// directions:
//
//	K  IPv4, keep-alive, opened before the recording starts (GET /k0 not
//	   recorded, so the replay sees no SYN): POST /k1 (3000 B), POST /k2
//	   (20000 B), GET /k3
//	E  IPv4, keep-alive: POST /e1 (20000 B) with "Expect: 100-continue",
//	   whose body follows the server's interim "100 Continue" response,
//	   GET /e2, POST /e3 (5000 B, Expect: 100-continue)
//	S  IPv6, keep-alive: POST /s1 (5000 B), GET /s2
//
// then the clients close their idle connections (FIN).
func recordGoldenClients(t *testing.T, path string) {
	topo := netlab.NewForTest(t, netlab.Options{GRO: true})
	ctx := t.Context()
	if out, err := topo.Run(ctx, netlab.Client, "sysctl", "-q", "-w", "net.ipv4.tcp_timestamps=0"); err != nil {
		t.Fatalf("sysctl: %v: %s", err, out)
	}
	var lns []net.Listener
	err := nsdo.Do(topo.Online.Name, func() error {
		for _, a := range []string{"192.0.2.1:80", "[2001:db8:1::1]:80"} {
			ln, err := net.Listen("tcp", a)
			if err != nil {
				return err
			}
			lns = append(lns, ln)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "ok %s %d\n", r.URL.Path, n)
	})}
	for _, ln := range lns {
		go srv.Serve(ln)
	}
	defer srv.Close()
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := nsdo.Do(topo.Client.Name, func() error {
			var err error
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	newClient := func() *http.Client {
		return &http.Client{Transport: &http.Transport{DialContext: dial, DisableCompression: true, ExpectContinueTimeout: 2 * time.Second}, Timeout: 5 * time.Second}
	}
	do := func(c *http.Client, method, url string, body int, expect bool) {
		t.Helper()
		req, err := http.NewRequest(method, url, bytes.NewReader(bytes.Repeat([]byte{'x'}, body)))
		if err != nil {
			t.Fatal(err)
		}
		if body == 0 {
			req.Body = nil
		}
		if expect {
			req.Header.Set("Expect", "100-continue")
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	k, e, s := newClient(), newClient(), newClient()
	do(k, "GET", "http://192.0.2.1/k0", 0, false) // before the recording: no SYN in the file
	var pcap bytes.Buffer
	rec, err := labrun.RecordPcap(topo.Online.Name, netlab.IfToClient, &pcap)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	do(k, "POST", "http://192.0.2.1/k1", 3000, false)
	do(e, "POST", "http://192.0.2.1/e1", 20000, true)
	do(k, "POST", "http://192.0.2.1/k2", 20000, false)
	do(e, "GET", "http://192.0.2.1/e2", 0, false)
	do(s, "POST", "http://[2001:db8:1::1]/s1", 5000, false)
	do(k, "GET", "http://192.0.2.1/k3", 0, false)
	do(e, "POST", "http://192.0.2.1/e3", 5000, true)
	do(s, "GET", "http://[2001:db8:1::1]/s2", 0, false)
	for _, cl := range []*http.Client{k, e, s} {
		cl.CloseIdleConnections()
	}
	time.Sleep(200 * time.Millisecond)
	n, err := rec.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("recorded %d packets, %d bytes", n, pcap.Len())
	if err := os.WriteFile(path, pcap.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
