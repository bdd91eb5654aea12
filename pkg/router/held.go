package router

import (
	"sync"
	"sync/atomic"
	"time"
)

// heldPool keeps packets that arrived before their route, in fixed-size
// slots allocated once, chained per key oldest first.
type heldPool struct {
	mu    sync.Mutex
	size  int
	slots []heldSlot
	data  []byte // len(slots)*size bytes, slot i at [i*size:(i+1)*size]
	free  []int32
	heads map[Key]heldChain
	count atomic.Int64 // packets held now; read without the lock

	total, released, expired, dropped uint64 // under mu
}

type heldSlot struct {
	next int32 // -1 ends the chain
	n    int
	meta Meta
	at   int64
}

type heldChain struct{ head, tail int32 }

func (p *heldPool) init(max, size int) {
	p.size = size
	p.slots = make([]heldSlot, max)
	p.data = make([]byte, max*size)
	p.free = make([]int32, max)
	for i := range p.free {
		p.free[i] = int32(max - 1 - i)
	}
	p.heads = make(map[Key]heldChain)
}

func (p *heldPool) buf(i int32) []byte {
	return p.data[int(i)*p.size : int(i+1)*p.size]
}

func (p *heldPool) hold(k Key, data []byte, m Meta, now int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) == 0 {
		p.dropped++
		return false
	}
	i := p.free[len(p.free)-1]
	p.free = p.free[:len(p.free)-1]
	n := copy(p.buf(i), data)
	p.slots[i] = heldSlot{next: -1, n: n, meta: m, at: now}
	if c, ok := p.heads[k]; ok {
		p.slots[c.tail].next = i
		c.tail = i
		p.heads[k] = c
	} else {
		p.heads[k] = heldChain{head: i, tail: i}
	}
	p.total++
	p.count.Add(1)
	return true
}

// release delivers k's held packets that are younger than holdTime to
// owner and frees their slots. deliver runs with the pool locked, so it
// must not call back into the table.
func (p *heldPool) release(k Key, owner Owner, now int64, holdTime time.Duration, deliver DeliverFunc) {
	if p.count.Load() == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.heads[k]
	if !ok {
		return
	}
	delete(p.heads, k)
	cut := now - int64(holdTime)
	for i := c.head; i >= 0; {
		s := &p.slots[i]
		if s.at >= cut {
			deliver(owner, p.buf(i)[:s.n], s.meta)
			p.released++
		} else {
			p.expired++
		}
		next := s.next
		p.free = append(p.free, i)
		p.count.Add(-1)
		i = next
	}
}

// expire drops held packets captured before cut.
func (p *heldPool) expire(cut int64) {
	if p.count.Load() == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, c := range p.heads {
		// Chains are oldest first: drop from the head.
		for c.head >= 0 && p.slots[c.head].at < cut {
			next := p.slots[c.head].next
			p.free = append(p.free, c.head)
			p.count.Add(-1)
			p.expired++
			c.head = next
		}
		if c.head < 0 {
			delete(p.heads, k)
		} else {
			p.heads[k] = c
		}
	}
}

func (p *heldPool) stats(st *Stats) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st.Held = int(p.count.Load())
	st.HeldTotal = p.total
	st.Released = p.released
	st.HeldExpired = p.expired
	st.HeldDropped = p.dropped
}
