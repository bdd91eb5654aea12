package rawio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			t.Error(err)
		}
		acc <- c
	}()
	a, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b = <-acc
	if b == nil {
		t.FailNow()
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestConn(t *testing.T) {
	a, b := tcpPair(t)
	ra, rb := New(a), New(b)
	if ra == nil || rb == nil {
		t.Fatal("no raw I/O on a TCP connection")
	}
	// More than the socket buffers hold: the writer waits in the poller
	// while the reader, concurrently, drains.
	want := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	werr := make(chan error, 1)
	go func() {
		n, err := ra.Write(want)
		if err == nil && n != len(want) {
			err = io.ErrShortWrite
		}
		a.(*net.TCPConn).CloseWrite()
		werr <- err
	}()
	got, err := io.ReadAll(rb)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, want the %d written", len(got), len(want))
	}
	// The connection's read deadline applies.
	if err := a.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := ra.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read past the deadline: %v", err)
	}
	// Close wakes a waiting reader.
	a.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := ra.Read(make([]byte, 10))
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	a.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("read after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake the reader")
	}
	if New(&net.UnixConn{}) != nil {
		t.Error("raw I/O on a connection that is not TCP")
	}
}

func TestConnAllocs(t *testing.T) {
	a, b := tcpPair(t)
	ra, rb := New(a), New(b)
	msg := make([]byte, 100)
	buf := make([]byte, 100)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := ra.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(rb, buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("a write and a read allocate %v times", allocs)
	}
}
