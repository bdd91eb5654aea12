package wire

import (
	"errors"
	"io"
)

var errBadRead = errors.New("wire: reader returned an invalid count")

// maxEmptyReads is how many (0, nil) reads in a row inbuf tolerates before
// failing with io.ErrNoProgress (bufio does the same).
const maxEmptyReads = 100

// inbuf is the read buffer shared by the stream decoders: one slice
// allocated at construction, bytes buf[r:w] buffered, compacted only when a
// message would not fit behind r.
type inbuf struct {
	rd      io.Reader
	buf     []byte
	r, w    int
	pending error // read error received together with enough bytes
}

// buffered returns the bytes read but not consumed.
func (b *inbuf) buffered() []byte { return b.buf[b.r:b.w] }

// take consumes n buffered bytes and returns them; the slice stays valid
// until the next fill.
func (b *inbuf) take(n int) []byte {
	p := b.buf[b.r : b.r+n : b.r+n]
	b.r += n
	return p
}

// grow makes the buffer at least n bytes long, keeping buffered bytes. It
// allocates; callers use it only while setting a connection up.
func (b *inbuf) grow(n int) {
	if n <= len(b.buf) {
		return
	}
	nb := make([]byte, n)
	b.w = copy(nb, b.buf[b.r:b.w])
	b.r = 0
	b.buf = nb
}

// fill makes at least n (<= len(b.buf)) bytes available. It returns io.EOF
// if the reader ended with nothing buffered, io.ErrUnexpectedEOF if it ended
// with fewer than n bytes buffered, or the reader's error.
func (b *inbuf) fill(n int) error {
	if n > len(b.buf) {
		// Callers bound n by the buffer size; this is a bug, not input.
		panic("wire: fill beyond buffer size")
	}
	empty := 0
	for b.w-b.r < n {
		if b.pending != nil {
			err := b.pending
			b.pending = nil
			return b.eofErr(err)
		}
		if len(b.buf)-b.r < n {
			b.w = copy(b.buf, b.buf[b.r:b.w])
			b.r = 0
		}
		m, err := b.rd.Read(b.buf[b.w:])
		if m < 0 || m > len(b.buf)-b.w {
			return errBadRead
		}
		b.w += m
		if err != nil {
			if b.w-b.r >= n {
				b.pending = err
				return nil
			}
			return b.eofErr(err)
		}
		if m == 0 {
			if empty++; empty >= maxEmptyReads {
				return io.ErrNoProgress
			}
		} else {
			empty = 0
		}
	}
	return nil
}

func (b *inbuf) eofErr(err error) error {
	if err == io.EOF && b.w > b.r {
		return io.ErrUnexpectedEOF
	}
	return err
}
