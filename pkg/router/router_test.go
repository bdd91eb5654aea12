package router

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func key(client string, target string) Key {
	return Key{Client: netip.MustParseAddrPort(client), Target: netip.MustParseAddrPort(target)}
}

var t0 = time.Unix(1_700_000_000, 0)

func TestAddLookupDelete(t *testing.T) {
	tb := New(Config{})
	k1 := key("192.0.2.10:40000", "203.0.113.20:8080")
	k2 := key("192.0.2.10:40001", "203.0.113.20:8080")
	k6 := key("[2001:db8:1::10]:40000", "[2001:db8:3::20]:8080")
	if r := tb.Add(k1, 1, t0, nil); r != Added {
		t.Errorf("first add = %v", r)
	}
	tb.Add(k2, 2, t0, nil)
	tb.Add(k6, 2, t0, nil)
	tests := []struct {
		name string
		k    Key
		want Owner
		ok   bool
	}{
		{"first owner", k1, 1, true},
		{"second owner", k2, 2, true},
		{"ipv6", k6, 2, true},
		{"other port", key("192.0.2.10:40002", "203.0.113.20:8080"), 0, false},
		{"other target", key("192.0.2.10:40000", "203.0.113.21:8080"), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tb.Lookup(tt.k, t0)
			if got != tt.want || ok != tt.ok {
				t.Errorf("Lookup = %d, %v; want %d, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
	if tb.Delete(k1, 2) {
		t.Errorf("Delete by a non-owner succeeded")
	}
	if !tb.Delete(k1, 1) {
		t.Errorf("Delete by the owner failed")
	}
	if _, ok := tb.Lookup(k1, t0); ok {
		t.Errorf("route still there after Delete")
	}
	if r := tb.Add(k2, 3, t0, nil); r != TookOver {
		t.Errorf("take-over = %v", r)
	}
	if r := tb.Add(k2, 3, t0, nil); r != Refreshed {
		t.Errorf("refresh = %v", r)
	}
	st := tb.Stats()
	if st.Routes != 2 || st.Added != 5 || st.Deleted != 1 || st.TakenOver != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestExpire(t *testing.T) {
	tb := New(Config{IdleTimeout: 10 * time.Second})
	used := key("192.0.2.10:1", "203.0.113.20:8080")
	idle := key("192.0.2.10:2", "203.0.113.20:8080")
	gone := key("192.0.2.10:3", "203.0.113.20:8080")
	tb.Add(used, 1, t0, nil)
	tb.Add(idle, 1, t0, nil)
	tb.Add(gone, 9, t0.Add(8*time.Second), nil)
	tb.Lookup(used, t0.Add(8*time.Second)) // refreshes
	tb.Expire(t0.Add(11*time.Second), func(o Owner) bool { return o != 9 })
	if _, ok := tb.Lookup(used, t0); !ok {
		t.Errorf("used route expired")
	}
	if _, ok := tb.Lookup(idle, t0); ok {
		t.Errorf("idle route kept")
	}
	if _, ok := tb.Lookup(gone, t0); ok {
		t.Errorf("route of a dead owner kept")
	}
	if got := tb.Stats().Expired; got != 2 {
		t.Errorf("Expired = %d, want 2", got)
	}
	if a, b := tb.OwnerRoutes(1), tb.OwnerRoutes(9); a != 1 || b != 0 {
		t.Errorf("OwnerRoutes(1) = %d, (9) = %d; want 1, 0", a, b)
	}
}

func TestPerOwnerCap(t *testing.T) {
	tb := New(Config{MaxPerOwner: 10})
	k := func(i int) Key { return key(fmt.Sprintf("192.0.2.10:%d", i+1), "203.0.113.20:8080") }
	var results [5]int
	for i := range 20 {
		results[tb.Add(k(i), 1, t0, nil)]++
	}
	if results[Added] != 10 || results[RefusedOwnerFull] != 10 {
		t.Errorf("owner 1: %v added, %v refused; want 10, 10", results[Added], results[RefusedOwnerFull])
	}
	tests := []struct {
		name  string
		k     Key
		owner Owner
		want  AddResult
	}{
		{"another owner is not limited by owner 1", k(100), 2, Added},
		{"owner 1 refreshes a route it holds", k(3), 1, Refreshed},
		{"owner 1 cannot take over beyond its cap", k(100), 1, RefusedOwnerFull},
		{"owner 2 takes over one of owner 1's", k(4), 2, TookOver},
		{"which frees a place for owner 1", k(50), 1, Added},
	}
	for _, tt := range tests {
		if got := tb.Add(tt.k, tt.owner, t0, nil); got != tt.want {
			t.Errorf("%s: Add = %v, want %v", tt.name, got, tt.want)
		}
	}
	if o, ok := tb.Lookup(k(15), t0); ok {
		t.Errorf("refused route installed for %d", o)
	}
	st := tb.Stats()
	if st.RefusedOwnerFull != 11 || tb.OwnerRoutes(1) != 10 || tb.OwnerRoutes(2) != 2 || st.Routes != 12 {
		t.Errorf("stats %+v, owner 1 %d, owner 2 %d", st, tb.OwnerRoutes(1), tb.OwnerRoutes(2))
	}
	tb.Delete(k(0), 1)
	if got := tb.Add(k(60), 1, t0, nil); got != Added {
		t.Errorf("add after a delete = %v", got)
	}
}

// TestFullTableNeverEvictsOthers: a flood of one owner's routes into a
// full table evicts only its own routes; another owner's idle routes stay.
func TestFullTableNeverEvictsOthers(t *testing.T) {
	tb := New(Config{MaxRoutes: numShards * 4})
	var victims []Key
	for i := range 50 {
		k := key(fmt.Sprintf("192.0.2.99:%d", i+1), "203.0.113.20:8080")
		if r := tb.Add(k, 1, t0, nil); r != Added {
			t.Fatalf("victim route %d: %v", i, r)
		}
		victims = append(victims, k)
	}
	var refused int
	for i := range 20000 {
		r := tb.Add(key(fmt.Sprintf("192.0.2.%d:%d", 1+i/60000, i%60000+1), "203.0.113.20:8080"), 2, t0.Add(time.Hour+time.Duration(i)), nil)
		if r == RefusedTableFull {
			refused++
		} else if r != Added {
			t.Fatalf("flood add %d: %v", i, r)
		}
	}
	for _, k := range victims {
		if o, ok := tb.Lookup(k, t0); !ok || o != 1 {
			t.Errorf("victim route %v: owner %d, %v", k, o, ok)
		}
	}
	st := tb.Stats()
	if limit := numShards * 5; st.Routes > limit {
		t.Errorf("Routes = %d, want at most %d", st.Routes, limit)
	}
	if st.Evicted == 0 || int(st.RefusedTableFull) != refused {
		t.Errorf("stats %+v, refused %d", st, refused)
	}
	if got := tb.OwnerRoutes(1) + tb.OwnerRoutes(2); got != st.Routes {
		t.Errorf("owner counts add up to %d, table holds %d", got, st.Routes)
	}
}

func TestMaxRoutesEvicts(t *testing.T) {
	tb := New(Config{MaxRoutes: numShards * 4})
	for i := range 10000 {
		tb.Add(key(fmt.Sprintf("192.0.2.10:%d", i+1), "203.0.113.20:8080"), 1, t0.Add(time.Duration(i)), nil)
	}
	st := tb.Stats()
	if limit := numShards * 5; st.Routes > limit {
		t.Errorf("Routes = %d, want at most %d", st.Routes, limit)
	}
	if st.Evicted == 0 || int(st.Evicted)+st.Routes != 10000 {
		t.Errorf("Evicted = %d, Routes = %d: want them to add up to 10000", st.Evicted, st.Routes)
	}
}

type delivered struct {
	owner Owner
	data  string
	meta  Meta
}

func TestHoldAndRelease(t *testing.T) {
	tb := New(Config{HoldTime: 5 * time.Second, MaxHeld: 3, HeldSize: 4})
	k := key("192.0.2.10:40000", "203.0.113.20:8080")
	other := key("192.0.2.11:40000", "203.0.113.20:8080")
	if !tb.Hold(k, []byte("old!"), Meta{PayloadLen: 1}, t0) ||
		!tb.Hold(k, []byte("synack"), Meta{PayloadLen: 2}, t0.Add(4*time.Second)) ||
		!tb.Hold(other, []byte("rst"), Meta{PayloadLen: 3}, t0.Add(4*time.Second)) {
		t.Fatalf("Hold failed below the limit")
	}
	if tb.Hold(k, []byte("x"), Meta{}, t0) {
		t.Fatalf("Hold succeeded above MaxHeld")
	}
	var got []delivered
	deliver := func(o Owner, data []byte, m Meta) { got = append(got, delivered{o, string(data), m}) }
	tb.Add(k, 7, t0.Add(6*time.Second), deliver)
	// The first packet is older than HoldTime; the second is cut to HeldSize.
	want := []delivered{{7, "syna", Meta{PayloadLen: 2}}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
	tb.Expire(t0.Add(10*time.Second), nil)
	st := tb.Stats()
	if st.Held != 0 || st.Released != 1 || st.HeldExpired != 2 || st.HeldDropped != 1 || st.HeldTotal != 3 {
		t.Errorf("stats = %+v", st)
	}
	// Slots are reusable after release and expiry (k has a route now: a
	// key without one).
	for i := range 3 {
		if !tb.Hold(other, []byte{byte(i)}, Meta{}, t0) {
			t.Fatalf("Hold %d failed after slots were freed", i)
		}
	}
}

// TestHoldAfterAdd: a packet whose lookup missed just before its route
// was added is not held (nothing would release it before it expired):
// Hold refuses it, and a lookup finds the route.
func TestHoldAfterAdd(t *testing.T) {
	tb := New(Config{})
	k := key("192.0.2.10:40000", "203.0.113.20:5353")
	if _, ok := tb.Lookup(k, t0); ok {
		t.Fatal("route before Add")
	}
	tb.Add(k, 7, t0, nil) // another goroutine, between the lookup and the hold
	if tb.Hold(k, []byte("answer"), Meta{PayloadLen: 6}, t0) {
		t.Error("held for a route that exists")
	}
	if o, ok := tb.Lookup(k, t0); !ok || o != 7 {
		t.Errorf("Lookup = %v, %v", o, ok)
	}
	if st := tb.Stats(); st.Held != 0 || st.HeldTotal != 0 || st.HeldDropped != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestLookupAllocs(t *testing.T) {
	tb := New(Config{})
	k := key("[2001:db8:1::10]:40000", "[2001:db8:3::20]:8080")
	tb.Add(k, 1, t0, nil)
	allocs := testing.AllocsPerRun(1000, func() {
		if _, ok := tb.Lookup(k, t0); !ok {
			t.Fatal("lookup failed")
		}
	})
	if allocs != 0 {
		t.Errorf("Lookup allocates %v times per call, want 0", allocs)
	}
}

func BenchmarkLookup(b *testing.B) {
	tb := New(Config{})
	keys := make([]Key, 4096)
	for i := range keys {
		keys[i] = key(fmt.Sprintf("192.0.2.%d:%d", i%250+1, 1024+i), "203.0.113.20:8080")
		tb.Add(keys[i], Owner(i%4+1), t0, nil)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		tb.Lookup(keys[i&4095], t0)
	}
}

func BenchmarkLookupParallel(b *testing.B) {
	tb := New(Config{})
	keys := make([]Key, 4096)
	for i := range keys {
		keys[i] = key(fmt.Sprintf("192.0.2.%d:%d", i%250+1, 1024+i), "203.0.113.20:8080")
		tb.Add(keys[i], 1, t0, nil)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			tb.Lookup(keys[i&4095], t0)
			i++
		}
	})
}

func TestConcurrentUse(t *testing.T) {
	tb := New(Config{MaxHeld: 64})
	done := make(chan struct{})
	for w := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 2000 {
				k := key(fmt.Sprintf("192.0.2.%d:%d", w+1, i+1), "203.0.113.20:8080")
				tb.Hold(k, []byte("synack"), Meta{}, t0)
				tb.Add(k, Owner(w+1), t0, func(Owner, []byte, Meta) {})
				if o, ok := tb.Lookup(k, t0); !ok || o != Owner(w+1) {
					t.Errorf("Lookup(%v) = %d, %v", k, o, ok)
					return
				}
				if i%100 == 0 {
					tb.Expire(t0, nil)
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
	if st := tb.Stats(); st.Routes != 8000 || st.Held != 0 {
		t.Errorf("stats = %+v", st)
	}
	for w := range 4 {
		if got := tb.OwnerRoutes(Owner(w + 1)); got != 2000 {
			t.Errorf("OwnerRoutes(%d) = %d", w+1, got)
		}
	}
}

// TestLookupSegment follows the responses of a connection: each
// segment's offset in its response, a response starting when the
// target's acknowledgement number moves.
func TestLookupSegment(t *testing.T) {
	tab := New(Config{})
	k := Key{Client: netip.MustParseAddrPort("192.0.2.10:40000"), Target: netip.MustParseAddrPort("198.51.100.2:8080")}
	now := time.Unix(1700000000, 0)
	tab.Add(k, 7, now, nil)
	steps := []struct {
		name     string
		seq, ack uint32
		off      int
	}{
		{"first response, first segment", 5001, 1100, 0},
		{"its second segment", 6001, 1100, 1000},
		{"the start again (retransmitted)", 5001, 1100, 0},
		{"the next response: the ack moved", 8897, 1200, 0},
		{"an old ack: same response", 9397, 1150, 500},
		{"before the start (an old segment again)", 8000, 1200, -1},
		{"sequence numbers wrap", 0xffff_fff0, 1400, 0},
		{"after the wrap", 0x0000_0050, 1400, 0x60},
	}
	for _, st := range steps {
		owner, off, ok := tab.LookupSegment(k, now, st.seq, st.ack)
		if !ok || owner != 7 || off != st.off {
			t.Errorf("%s: owner %d, offset %d, ok %v; want 7, %d", st.name, owner, off, ok, st.off)
		}
	}
	if _, _, ok := tab.LookupSegment(Key{Client: k.Client}, now, 1, 1); ok {
		t.Errorf("an unknown route was found")
	}
	if n := testing.AllocsPerRun(100, func() { tab.LookupSegment(k, now, 5001, 1100) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}
