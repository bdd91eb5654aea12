package tcpstate

// timerHeap is a binary min-heap of sessions by deadline. Each session
// records its index, so updates are O(log n) and nothing allocates once
// the slice has grown.
type timerHeap []*session

func (h timerHeap) less(i, j int) bool { return h[i].deadline < h[j].deadline }

func (h timerHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = int32(i)
	h[j].heapIdx = int32(j)
}

func (h *timerHeap) push(s *session) {
	s.heapIdx = int32(len(*h))
	*h = append(*h, s)
	h.up(int(s.heapIdx))
}

func (h *timerHeap) remove(s *session) {
	i := int(s.heapIdx)
	if i < 0 {
		return
	}
	last := len(*h) - 1
	if i != last {
		h.swap(i, last)
	}
	(*h)[last] = nil
	*h = (*h)[:last]
	s.heapIdx = -1
	if i != last {
		if !h.down(i) {
			h.up(i)
		}
	}
}

func (h *timerHeap) fix(s *session) {
	if !h.down(int(s.heapIdx)) {
		h.up(int(s.heapIdx))
	}
}

func (h timerHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h timerHeap) down(i int) bool {
	start := i
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && h.less(r, l) {
			m = r
		}
		if !h.less(m, i) {
			break
		}
		h.swap(i, m)
		i = m
	}
	return i > start
}
