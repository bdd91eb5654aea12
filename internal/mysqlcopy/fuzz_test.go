package mysqlcopy

import (
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/pkg/mysqlproto"
)

// FuzzConn feeds a Conn captured garbage, hostile target answers and
// online answers in any order: it never panics, never holds more than
// MaxHold, and every packet it sends continues the sent stream.
func FuzzConn(f *testing.F) {
	r := newRig(&testing.T{}, Config{})
	f.Add(loginPacket(&testing.T{}, "app", clientCaps), r.greeting(), []byte{0, 7, 1, 9, 2, 3, 4}, true)
	f.Add(query(0, mysqlproto.ComQuery, "SELECT 1"), okPacket, prepareOK(1, 3), false)
	f.Add(stmtCmd(mysqlproto.ComStmtExecute, 1, ""), mysqlproto.AppendPacket(nil, 2, []byte{1, 4}), []byte{5, 200, 3}, true)
	f.Fuzz(func(t *testing.T, client, target, script []byte, syn bool) {
		cfg := Config{Users: Users{"app": "secret"}, DefaultUser: "app", ReadOnly: len(script)%2 == 0, MaxHold: 1 << 16}
		var st Stats
		var out checkOut
		c := NewConn(&cfg, &st, cliAP, tgtAP)
		now := int64(time.Hour)
		cseq, tseq := uint32(1000), uint32(9000)
		if syn {
			c.Start(now, cseq-1, &out)
		}
		for i, op := range script {
			n := int(op>>3) + 1
			switch op & 7 {
			case 0, 1: // a captured segment, maybe out of order
				k := min(n*7, len(client))
				off := uint32(0)
				if op&1 != 0 {
					off = uint32(i * 3)
				}
				c.Client(now, FlagACK|FlagPSH, cseq+off, uint32(i), client[:k], &out)
				if op&1 == 0 {
					cseq += uint32(k)
					client = client[k:]
				}
			case 2: // the target's SYN-ACK of whatever the Conn sent
				c.Target(now, FlagSYN|FlagACK, tseq-1, out.isn+1, 0, nil, &out)
			case 3, 4: // a record of the target, its bytes cut or not
				k := min(n*5, len(target))
				pre := target[:k]
				if op&7 == 4 {
					pre = pre[:k/2]
				}
				c.Target(now, FlagACK, tseq, out.next, k, pre, &out)
				tseq += uint32(k)
				target = target[k:]
			case 5: // the online server
				c.Online(now, FlagACK, 0, cseq, target[:min(n, len(target))], &out)
			case 6:
				now += int64(n) * int64(time.Second)
				c.Tick(now, op&8 != 0, &out)
			case 7:
				c.Client(now, FlagACK|FlagFIN, cseq, 0, nil, &out)
			}
			if c.pendBytes > cfg.MaxHold {
				t.Fatalf("holds %d bytes", c.pendBytes)
			}
		}
	})
}

// checkOut checks that the sent stream is contiguous.
type checkOut struct {
	isn, next uint32
	started   bool
}

func (o *checkOut) Packet(f Flags, seq, ack uint32, p []byte) {
	if f&FlagSYN != 0 {
		o.isn, o.next, o.started = seq, seq+1, true
		return
	}
	if !o.started {
		panic("data before a SYN")
	}
	if len(p) > 0 && seq != o.next {
		panic("the sent stream is not contiguous")
	}
	o.next = seq + uint32(len(p))
	if f&FlagFIN != 0 {
		o.next++
	}
}

func (o *checkOut) Abort() {}

func (o *checkOut) Uncopied(from, to uint32, login bool) {}
