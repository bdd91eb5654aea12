package mysqlcopy

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"github.com/tcpcopy-go/tcpcopy/pkg/compare"
	"github.com/tcpcopy-go/tcpcopy/pkg/streamhash"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/pkg/mysqlproto"
)

// pkt is a packet a Conn sent.
type pkt struct {
	flags    Flags
	seq, ack uint32
	payload  []byte
}

type fakeOut struct {
	pkts     []pkt
	aborted  bool
	uncopied []uncopied
	cmp      *compare.Conn // if set, Uncopied marks its requests
}

type uncopied struct {
	from, to uint32
	login    bool
}

func (o *fakeOut) Packet(f Flags, seq, ack uint32, p []byte) {
	o.pkts = append(o.pkts, pkt{f, seq, ack, append([]byte(nil), p...)})
}
func (o *fakeOut) Abort() { o.aborted = true }

func (o *fakeOut) Uncopied(from, to uint32, login bool) {
	o.uncopied = append(o.uncopied, uncopied{from, to, login})
	if o.cmp != nil {
		why := compare.ReasonNotCopied
		if login {
			why = compare.ReasonNone
		}
		o.cmp.Skip(from, to, why)
	}
}

func (o *fakeOut) take() []pkt {
	p := o.pkts
	o.pkts = nil
	return p
}

var (
	cliAP = netip.MustParseAddrPort("192.0.2.10:40000")
	tgtAP = netip.MustParseAddrPort("198.51.100.2:3306")
)

// rig drives one Conn as tcpcopy's worker does, playing the online
// server's and the target's answers.
type rig struct {
	t    *testing.T
	c    *Conn
	out  fakeOut
	st   Stats
	cfg  Config
	now  int64
	cseq uint32 // next captured client byte
	cack uint32 // the client's ack: next online server byte
	oseq uint32 // online server's next byte
	tseq uint32 // target's next byte
	tack uint32 // the target's ack: what it got of the sent stream
	// scramble is the target's greeting nonce.
	scramble []byte
	plugin   string
}

func newRig(t *testing.T, cfg Config) *rig {
	r := &rig{t: t, cfg: cfg, now: int64(time.Hour), cseq: 1000, oseq: 50000, tseq: 70000, plugin: mysqlproto.NativePassword}
	r.scramble = []byte("abcdefghij0123456789")
	if r.cfg.Users == nil {
		r.cfg.Users = Users{"app": "secret"}
	}
	r.c = NewConn(&r.cfg, &r.st, cliAP, tgtAP)
	return r
}

// synStart plays the captured SYN and handshake ACK.
func (r *rig) synStart() {
	r.c.Start(r.now, r.cseq-1, &r.out)
	r.cack = r.oseq
	r.c.Client(r.now, FlagACK, r.cseq, r.cack, nil, &r.out)
	got := r.out.take()
	if len(got) != 2 || got[0].flags != FlagSYN || got[0].seq != r.cseq-1 || got[1].flags != FlagACK || got[1].seq != r.cseq {
		r.t.Fatalf("start: %v", got)
	}
}

// client plays a captured client packet of MySQL packets.
func (r *rig) client(payload []byte) {
	r.c.Client(r.now, FlagACK|FlagPSH, r.cseq, r.cack, payload, &r.out)
	r.cseq += uint32(len(payload))
}

// online plays the online server's answer of n bytes starting with b.
func (r *rig) online(b []byte, n int) {
	r.c.Online(r.now, FlagACK|FlagPSH, r.oseq, r.cseq, b, &r.out)
	r.oseq += uint32(n)
	r.cack = r.oseq
}

// target plays a record of the target's answer: it acknowledges what the
// Conn sent so far.
func (r *rig) target(b []byte) {
	r.c.Target(r.now, FlagACK|FlagPSH, r.tseq, r.tack, len(b), b, &r.out)
	r.tseq += uint32(len(b))
}

// synack plays the target's SYN-ACK of the Conn's SYN.
func (r *rig) synack(isn uint32) {
	r.tack = isn + 1
	r.c.Target(r.now, FlagSYN|FlagACK, r.tseq-1, r.tack, 0, nil, &r.out)
}

func (r *rig) greeting() []byte {
	g := mysqlproto.Greeting{ServerVersion: "5.5.5-10.11.19-MariaDB", ConnectionID: 9, Scramble: r.scramble,
		Caps: 0x81fff7fe, ExtCaps: 0x1d, Charset: 8, Status: 2, Plugin: r.plugin}
	return mysqlproto.AppendPacket(nil, 0, mysqlproto.AppendGreeting(nil, &g))
}

// sent returns the payload bytes of the data packets sent, and moves the
// target's ack past them.
func (r *rig) sent() []byte {
	var b []byte
	for _, p := range r.out.take() {
		if len(p.payload) > 0 {
			if p.seq != r.tack {
				r.t.Fatalf("sent at %d, the stream is at %d", p.seq, r.tack)
			}
			r.tack += uint32(len(p.payload))
			b = append(b, p.payload...)
		}
	}
	return b
}

var okPacket = mysqlproto.AppendPacket(nil, 2, []byte{0, 0, 0, 2, 0, 0, 0})

func query(seq uint8, cmd byte, text string) []byte {
	return mysqlproto.AppendPacket(nil, seq, append([]byte{cmd}, text...))
}

func loginPacket(t *testing.T, user string, caps uint32) []byte {
	hr := mysqlproto.HandshakeResponse{Caps: caps, Charset: 45, User: user, AuthData: bytes.Repeat([]byte{0xaa}, 20),
		Database: "shop", Plugin: mysqlproto.NativePassword}
	return mysqlproto.AppendPacket(nil, 1, mysqlproto.AppendHandshakeResponse(nil, &hr))
}

const clientCaps = mysqlproto.ClientProtocol41 | mysqlproto.ClientSecureConnection | mysqlproto.ClientPluginAuth |
	mysqlproto.ClientConnectWithDB | mysqlproto.ClientTransactions | mysqlproto.ClientMultiResults

// loggedIn plays a whole captured login and the target's part; it
// returns the login the Conn sent.
func (r *rig) loggedIn() mysqlproto.HandshakeResponse {
	r.t.Helper()
	r.synStart()
	r.online(make([]byte, 100), 100) // the online greeting
	r.synack(r.cseq - 1)
	r.target(r.greeting())
	if got := r.out.take(); len(got) != 0 {
		r.t.Fatalf("sent before the client's login: %v", got)
	}
	r.client(loginPacket(r.t, "app", clientCaps))
	b := r.sent()
	n, seq := mysqlproto.Header(b)
	if seq != 1 || n != len(b)-4 {
		r.t.Fatalf("login packet %x", b)
	}
	hr, err := mysqlproto.ParseHandshakeResponse(b[4:])
	if err != nil {
		r.t.Fatal(err)
	}
	r.online(mysqlproto.AppendPacket(nil, 2, []byte{0, 0, 0, 2, 0, 0, 0}), 11)
	r.target(okPacket)
	if !r.c.LoggedIn() {
		r.t.Fatal("not logged in after the target's OK")
	}
	return hr
}

func TestLoginRedoneNative(t *testing.T) {
	r := newRig(t, Config{})
	hr := r.loggedIn()
	if hr.User != "app" || hr.Database != "shop" || hr.Plugin != mysqlproto.NativePassword {
		t.Errorf("login %+v", hr)
	}
	if want := mysqlproto.NativeAuth("secret", r.scramble); !bytes.Equal(hr.AuthData, want) {
		t.Errorf("auth data %x, want %x (the target's nonce)", hr.AuthData, want)
	}
	if hr.Caps&(mysqlproto.ClientSSL|mysqlproto.ClientCompress) != 0 {
		t.Errorf("caps %#x", hr.Caps)
	}
	// Commands flow after the login, in the sent space.
	q := query(0, mysqlproto.ComQuery, "SELECT 1")
	r.client(q)
	if got := r.sent(); !bytes.Equal(got, q) {
		t.Errorf("sent %x, want %x", got, q)
	}
	if r.st.LoginsCaptured != 1 || r.st.LoginsDone != 1 || r.st.AuthNative != 1 || r.st.Commands != 1 {
		t.Errorf("stats %+v", r.st)
	}
	// The client's FIN follows the sent stream's end.
	r.c.Client(r.now, FlagACK|FlagFIN, r.cseq, r.cack, nil, &r.out)
	got := r.out.take()
	if len(got) != 1 || got[0].flags != FlagACK|FlagFIN || got[0].seq != r.tack {
		t.Errorf("FIN: %v (stream at %d)", got, r.tack)
	}
	if !r.c.Done(false) {
		t.Error("not done after the FIN")
	}
}

func TestCommandsWaitForLogin(t *testing.T) {
	r := newRig(t, Config{})
	r.synStart()
	r.client(loginPacket(t, "app", clientCaps))
	q := query(0, mysqlproto.ComQuery, "SELECT 2")
	r.client(q) // before the target even answered the SYN
	if got := r.out.take(); len(got) != 0 {
		t.Fatalf("sent %v before the greeting", got)
	}
	r.synack(r.cseq - 1 - uint32(len(q)) - uint32(len(loginPacket(t, "app", clientCaps))))
	r.target(r.greeting())
	login := r.sent()
	if len(login) == 0 {
		t.Fatal("no login after the greeting")
	}
	r.target(okPacket)
	if got := r.sent(); !bytes.Equal(got, q) {
		t.Errorf("after the OK: %x, want %x", got, q)
	}
}

func TestJoinPooledConnection(t *testing.T) {
	cfg := Config{Learnt: NewLogins(0)}
	cfg.Learnt.learn(cliAP.Addr(), tgtAP, Login{User: "app", Database: "shop", Caps: clientCaps, Charset: 45})
	r := newRig(t, cfg)
	// A pooled connection: the middle of a long query first (no command
	// start), then a new command.
	r.client(append([]byte("tail of an earlier query"), make([]byte, 600)...))
	if got := r.out.take(); len(got) != 0 {
		t.Fatalf("sent %v for a mid-command segment", got)
	}
	r.cack += 30 // the online server answered
	q := query(0, mysqlproto.ComQuery, "SELECT 3")
	start := r.cseq
	r.client(q)
	got := r.out.take()
	if len(got) != 1 || got[0].flags != FlagSYN || got[0].seq != start-1 {
		t.Fatalf("join: %v", got)
	}
	r.synack(start - 1)
	r.target(r.greeting())
	b := r.sent()
	hr, err := mysqlproto.ParseHandshakeResponse(b[4:])
	if err != nil || hr.User != "app" || hr.Database != "shop" {
		t.Fatalf("login %+v %v", hr, err)
	}
	r.target(okPacket)
	if got := r.sent(); !bytes.Equal(got, q) {
		t.Errorf("sent %x, want %x", got, q)
	}
	if r.st.Joined != 1 || r.st.SkippedBytes != 624 {
		t.Errorf("stats %+v", r.st)
	}
}

func TestJoinDefaultUserAndRefusals(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		why  Refusal
	}{
		{"no learnt login, no default", Config{}, RefusedNoUser},
		{"default user without password", Config{DefaultUser: "nobody"}, RefusedUnknownUser},
		{"default user", Config{DefaultUser: "app", DefaultDB: "shop"}, RefusedNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, tt.cfg)
			r.client(query(0, mysqlproto.ComQuery, "SELECT 4"))
			if got := r.c.Refused(); got != tt.why {
				t.Errorf("refused %v, want %v", got, tt.why)
			}
			sent := r.out.take()
			if (len(sent) == 1) != (tt.why == RefusedNone) {
				t.Errorf("sent %v", sent)
			}
		})
	}
}

func TestRefusedLogins(t *testing.T) {
	sslReq := mysqlproto.AppendPacket(nil, 1, mysqlproto.AppendHandshakeResponse(nil,
		&mysqlproto.HandshakeResponse{Caps: clientCaps | mysqlproto.ClientSSL, SSLRequest: true}))
	tests := []struct {
		name  string
		login []byte
		why   Refusal
	}{
		{"tls", sslReq, RefusedTLS},
		{"compression", loginPacket(t, "app", clientCaps|mysqlproto.ClientCompress), RefusedCompression},
		{"unknown user", loginPacket(t, "mallory", clientCaps), RefusedUnknownUser},
		{"garbage", mysqlproto.AppendPacket(nil, 1, []byte("GET / HTTP/1.1\r\n")), RefusedBadLogin},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, Config{})
			r.synStart()
			r.client(tt.login)
			r.client(query(0, mysqlproto.ComQuery, "DELETE FROM t"))
			if got := r.c.Refused(); got != tt.why || !r.out.aborted || r.st.Refused[tt.why] != 1 {
				t.Errorf("refused %v (aborted %v), want %v", got, r.out.aborted, tt.why)
			}
			for _, p := range r.out.take() {
				if len(p.payload) > 0 {
					t.Errorf("sent data %x", p.payload)
				}
			}
			if !r.c.Done(false) {
				t.Error("a refused connection is not done")
			}
		})
	}
}

func TestTargetRefusesLogin(t *testing.T) {
	r := newRig(t, Config{})
	r.synStart()
	r.synack(r.cseq - 1)
	r.target(r.greeting())
	r.client(loginPacket(t, "app", clientCaps))
	r.sent()
	r.target(mysqlproto.AppendPacket(nil, 2, []byte("\xff\x15\x04#28000Access denied for user 'app'")))
	if r.c.Refused() != RefusedLoginFailed || !r.out.aborted {
		t.Errorf("refused %v", r.c.Refused())
	}
}

func TestCachingSHA2FullPath(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	for _, fast := range []bool{true, false} {
		t.Run(fmt.Sprintf("fast=%v", fast), func(t *testing.T) {
			r := newRig(t, Config{})
			r.plugin = mysqlproto.CachingSHA2
			r.synStart()
			r.synack(r.cseq - 1)
			r.target(r.greeting())
			r.client(loginPacket(t, "app", clientCaps))
			hr, _ := mysqlproto.ParseHandshakeResponse(r.sent()[4:])
			if hr.Plugin != mysqlproto.CachingSHA2 || !bytes.Equal(hr.AuthData, mysqlproto.CachingSHA2Auth("secret", r.scramble)) {
				t.Fatalf("login %+v", hr)
			}
			if fast {
				// AuthMoreData fast_auth_success, then OK, in one record.
				r.target(append(mysqlproto.AppendPacket(nil, 2, []byte{1, 3}), mysqlproto.AppendPacket(nil, 3, okPacket[4:])...))
			} else {
				r.target(mysqlproto.AppendPacket(nil, 2, []byte{1, 4}))
				if got := r.sent(); !bytes.Equal(got, []byte{1, 0, 0, 3, 2}) {
					t.Fatalf("public key request %x", got)
				}
				r.target(mysqlproto.AppendPacket(nil, 4, append([]byte{1}, pemKey...)))
				b := r.sent()
				if n, seq := mysqlproto.Header(b); seq != 5 || n != 256 {
					t.Fatalf("encrypted password: seq %d, %d bytes", seq, n)
				}
				pw, err := mysqlproto.DecryptPassword(b[4:], r.scramble, key)
				if err != nil || pw != "secret" {
					t.Fatalf("the server reads %q %v", pw, err)
				}
				r.target(mysqlproto.AppendPacket(nil, 6, okPacket[4:]))
			}
			if !r.c.LoggedIn() {
				t.Fatal("not logged in")
			}
			if fast && r.st.AuthSHA2Fast != 1 || !fast && r.st.AuthSHA2Full != 1 {
				t.Errorf("stats %+v", r.st)
			}
		})
	}
}

func TestAuthSwitch(t *testing.T) {
	r := newRig(t, Config{})
	r.synStart()
	r.synack(r.cseq - 1)
	r.target(r.greeting())
	r.client(loginPacket(t, "app", clientCaps))
	r.sent()
	nonce := []byte("zyxwvutsrqponmlkjihg")
	r.target(mysqlproto.AppendPacket(nil, 2, append(append([]byte{0xfe}, "mysql_native_password\x00"...), append(nonce, 0)...)))
	b := r.sent()
	if _, seq := mysqlproto.Header(b); seq != 3 || !bytes.Equal(b[4:], mysqlproto.NativeAuth("secret", nonce)) {
		t.Fatalf("switch answer %x", b)
	}
	r.target(mysqlproto.AppendPacket(nil, 4, okPacket[4:]))
	if !r.c.LoggedIn() {
		t.Fatal("not logged in")
	}
	// A switch to a plugin we do not speak refuses the session.
	r2 := newRig(t, Config{})
	r2.synStart()
	r2.synack(r2.cseq - 1)
	r2.target(r2.greeting())
	r2.client(loginPacket(t, "app", clientCaps))
	r2.sent()
	r2.target(mysqlproto.AppendPacket(nil, 2, append([]byte{0xfe}, "client_ed25519\x00abc\x00"...)))
	if r2.c.Refused() != RefusedAuthPlugin {
		t.Errorf("refused %v", r2.c.Refused())
	}
}

func prepareOK(seq uint8, id uint32) []byte {
	p := make([]byte, 12)
	binary.LittleEndian.PutUint32(p[1:], id)
	p[7] = 1
	return mysqlproto.AppendPacket(nil, seq, p)
}

func stmtCmd(cmd byte, id uint32, rest string) []byte {
	p := []byte{cmd, 0, 0, 0, 0}
	binary.LittleEndian.PutUint32(p[1:], id)
	return mysqlproto.AppendPacket(nil, 0, append(p, rest...))
}

func TestPreparedStatementIDs(t *testing.T) {
	r := newRig(t, Config{})
	r.loggedIn()
	prep := query(0, mysqlproto.ComStmtPrepare, "SELECT ?")
	r.client(prep)
	if got := r.sent(); !bytes.Equal(got, prep) {
		t.Fatalf("prepare %x", got)
	}
	r.online(prepareOK(1, 41), 100) // the online server calls it 41
	// The client's execute comes before the target answered: it waits.
	r.client(stmtCmd(mysqlproto.ComStmtExecute, 41, "\x00\x01\x00\x00\x00"))
	if got := r.out.take(); len(got) != 0 {
		t.Fatalf("execute sent before the target's id: %v", got)
	}
	r.target(prepareOK(1, 3)) // the target calls it 3
	want := stmtCmd(mysqlproto.ComStmtExecute, 3, "\x00\x01\x00\x00\x00")
	if got := r.sent(); !bytes.Equal(got, want) {
		t.Fatalf("execute %x, want %x", got, want)
	}
	r.online(okPacket, 11)
	for _, cmd := range []byte{mysqlproto.ComStmtSendLongData, mysqlproto.ComStmtReset, mysqlproto.ComStmtFetch, mysqlproto.ComStmtClose} {
		r.client(stmtCmd(cmd, 41, ""))
		if got, want := r.sent(), stmtCmd(cmd, 3, ""); !bytes.Equal(got, want) {
			t.Errorf("command %#x: %x, want %x", cmd, got, want)
		}
	}
	// Closed: a later execute of 41 is unknown, dropped.
	r.client(stmtCmd(mysqlproto.ComStmtExecute, 41, ""))
	r.client(stmtCmd(mysqlproto.ComStmtExecute, 99, ""))
	if got := r.sent(); len(got) != 0 || r.st.Dropped[DropUnknownStatement] != 2 {
		t.Errorf("sent %x, dropped %v", got, r.st.Dropped)
	}
	if r.st.Prepares != 1 || r.st.StmtRewrites != 5 {
		t.Errorf("stats %+v", r.st)
	}
}

func TestPrepareFailedOnTarget(t *testing.T) {
	r := newRig(t, Config{})
	r.loggedIn()
	r.client(query(0, mysqlproto.ComStmtPrepare, "SELECT * FROM only_online"))
	r.sent()
	r.online(prepareOK(1, 5), 100)
	r.target(mysqlproto.AppendPacket(nil, 1, []byte("\xff\x7a\x04#42S02Table doesn't exist")))
	r.client(stmtCmd(mysqlproto.ComStmtExecute, 5, ""))
	if got := r.sent(); len(got) != 0 || r.st.Dropped[DropPrepareFailed] != 1 {
		t.Errorf("sent %x, dropped %v", got, r.st.Dropped)
	}
}

func TestReadOnly(t *testing.T) {
	r := newRig(t, Config{ReadOnly: true})
	r.loggedIn()
	sel := query(0, mysqlproto.ComQuery, "SELECT * FROM t")
	ins := query(0, mysqlproto.ComQuery, "INSERT INTO t VALUES (1)")
	r.client(sel)
	r.online(make([]byte, 60), 60)
	if got := r.sent(); !bytes.Equal(got, sel) {
		t.Fatalf("select %x", got)
	}
	ackBefore := r.cack
	r.client(ins)
	r.online(okPacket, 11)
	if got := r.sent(); len(got) != 0 {
		t.Fatalf("insert sent: %q", got)
	}
	// A dropped prepare: its executes are dropped as read-only too.
	r.client(query(0, mysqlproto.ComStmtPrepare, "UPDATE t SET a = ?"))
	r.online(prepareOK(1, 8), 50)
	r.client(stmtCmd(mysqlproto.ComStmtExecute, 8, ""))
	r.online(okPacket, 11)
	r.client(sel)
	out := r.out.take()
	if len(out) != 1 || !bytes.Equal(out[0].payload, sel) {
		t.Fatalf("sent %v", out)
	}
	// The select's ack leaves out the online answers to what was dropped.
	if want := ackBefore; out[0].ack != want {
		t.Errorf("ack %d, want %d", out[0].ack, want)
	}
	if r.st.Dropped[DropReadOnly] != 3 {
		t.Errorf("dropped %v", r.st.Dropped)
	}
}

func TestReplicationRefused(t *testing.T) {
	r := newRig(t, Config{})
	r.loggedIn()
	r.client(mysqlproto.AppendPacket(nil, 0, []byte{mysqlproto.ComBinlogDump, 4, 0, 0, 0}))
	if r.c.Refused() != RefusedReplication || !r.out.aborted {
		t.Errorf("refused %v", r.c.Refused())
	}
}

func TestChangeUser(t *testing.T) {
	r := newRig(t, Config{Users: Users{"app": "secret", "admin": "pw2"}})
	r.loggedIn()
	cu := mysqlproto.ChangeUser{User: "admin", AuthData: bytes.Repeat([]byte{1}, 20), Database: "shop"}
	r.client(mysqlproto.AppendPacket(nil, 0, mysqlproto.AppendChangeUser(nil, &cu, clientCaps)))
	b := r.sent()
	got, err := mysqlproto.ParseChangeUser(b[4:], clientCaps)
	if err != nil || got.User != "admin" || !bytes.Equal(got.AuthData, mysqlproto.NativeAuth("pw2", r.scramble)) {
		t.Fatalf("change user %+v %v", got, err)
	}
	q := query(0, mysqlproto.ComQuery, "SELECT 5")
	r.client(q)
	if got := r.out.take(); len(got) != 0 {
		t.Fatal("a command went before the target answered COM_CHANGE_USER")
	}
	r.target(okPacket)
	if got := r.sent(); !bytes.Equal(got, q) {
		t.Errorf("after the change: %x", got)
	}
	cu.User = "mallory"
	r.client(mysqlproto.AppendPacket(nil, 0, mysqlproto.AppendChangeUser(nil, &cu, clientCaps)))
	if r.c.Refused() != RefusedChangeUser {
		t.Errorf("refused %v", r.c.Refused())
	}
}

func TestCapturedStreamOutOfOrderAndSplit(t *testing.T) {
	r := newRig(t, Config{})
	r.loggedIn()
	q1 := query(0, mysqlproto.ComQuery, "SELECT 'one'")
	q2 := query(0, mysqlproto.ComQuery, strings.Repeat("x", 3000))
	all := append(append([]byte(nil), q1...), q2...)
	base := r.cseq
	// Segments out of order, overlapping, one header split in two.
	for _, part := range [][2]int{{10, 2000}, {0, 3}, {3, 12}, {1500, 2900}, {2000, len(all)}} {
		r.c.Client(r.now, FlagACK, base+uint32(part[0]), r.cack, all[part[0]:part[1]], &r.out)
	}
	if got := r.sent(); !bytes.Equal(got, all) {
		t.Errorf("sent %d bytes, want %d", len(got), len(all))
	}
}

func TestGapTimeoutAndRetry(t *testing.T) {
	r := newRig(t, Config{Learnt: NewLogins(0)})
	r.loggedIn()
	r.c.Client(r.now, FlagACK, r.cseq+100, r.cack, query(0, mysqlproto.ComQuery, "SELECT 6"), &r.out)
	r.now += int64(11 * time.Second)
	r.c.Tick(r.now, true, &r.out)
	if r.c.Refused() != RefusedCaptureGap || !r.out.aborted {
		t.Fatalf("refused %v", r.c.Refused())
	}
	r.out.take()
	// The session is gone; a second later the connection is joined again
	// at its next command, with the login learnt from its own.
	r.now += int64(2 * time.Second)
	r.c.Tick(r.now, false, &r.out)
	r.cack += 10
	r.cseq += 500
	r.client(query(0, mysqlproto.ComQuery, "SELECT 7"))
	if got := r.out.take(); len(got) != 1 || got[0].flags != FlagSYN {
		t.Fatalf("no new session: %v", got)
	}
}

func TestSessionLost(t *testing.T) {
	r := newRig(t, Config{})
	r.loggedIn()
	r.c.Tick(r.now, false, &r.out) // the engine ended it (target reset)
	if r.c.Refused() != RefusedSessionLost || r.out.aborted {
		t.Errorf("refused %v aborted %v", r.c.Refused(), r.out.aborted)
	}
}

func TestNoResponseBytes(t *testing.T) {
	r := newRig(t, Config{})
	r.synStart()
	r.synack(r.cseq - 1)
	g := r.greeting()
	r.c.Target(r.now, FlagACK|FlagPSH, r.tseq, r.tack, len(g), nil, &r.out) // a record without payload bytes
	if r.c.Refused() != RefusedNoResponseBytes {
		t.Errorf("refused %v", r.c.Refused())
	}
}

func TestLoginTimeout(t *testing.T) {
	r := newRig(t, Config{})
	r.synStart()
	r.client(loginPacket(t, "app", clientCaps))
	r.now += int64(11 * time.Second)
	r.c.Tick(r.now, true, &r.out)
	if r.c.Refused() != RefusedLoginTimeout {
		t.Errorf("refused %v", r.c.Refused())
	}
}

func TestHoldBounded(t *testing.T) {
	r := newRig(t, Config{MaxHold: 4096})
	r.synStart()
	r.client(loginPacket(t, "app", clientCaps))
	for range 10 {
		r.client(query(0, mysqlproto.ComQuery, strings.Repeat("y", 1000)))
	}
	if r.c.Refused() != RefusedHoldFull {
		t.Errorf("refused %v", r.c.Refused())
	}
}

// TestComparisonMap: what the response comparison learns of a session:
// the login and the dropped commands are not copied (Uncopied), and the
// target's acknowledgements map back to the captured commands they
// answer (CapturedAck).
func TestComparisonMap(t *testing.T) {
	r := newRig(t, Config{ReadOnly: true})
	isn := r.cseq - 1
	r.loggedIn()
	loginEnd := r.cseq
	if _, ok := r.c.CapturedAck(r.tack); ok {
		t.Errorf("the login's acknowledgement mapped")
	}
	sel := query(0, mysqlproto.ComQuery, "SELECT * FROM t")
	ins := query(0, mysqlproto.ComQuery, "INSERT INTO t VALUES (1)")
	selAt := r.cseq
	r.client(sel)
	r.online(make([]byte, 60), 60)
	r.sent()
	if got, ok := r.c.CapturedAck(r.tack); !ok || got != selAt+uint32(len(sel)) {
		t.Errorf("select's ack maps to %d %v, want %d", got, ok, selAt+uint32(len(sel)))
	}
	insAt := r.cseq
	r.client(ins)
	r.online(okPacket, 11)
	sel2At := r.cseq
	r.client(sel)
	r.sent()
	if got, ok := r.c.CapturedAck(r.tack); !ok || got != sel2At+uint32(len(sel)) {
		t.Errorf("second select's ack maps to %d %v, want %d", got, ok, sel2At+uint32(len(sel)))
	}
	if got, ok := r.c.CapturedAck(r.tack - 3); !ok || got != sel2At+uint32(len(sel))-3 {
		t.Errorf("within the select: %d %v", got, ok)
	}
	want := []uncopied{{isn, loginEnd, true}, {isn, selAt, true}, {insAt, sel2At, false}, {insAt, sel2At, false}}
	if !slices.Equal(r.out.uncopied, want) {
		t.Errorf("uncopied %v, want %v", r.out.uncopied, want)
	}
	if r.c.DroppedOnline() != 11 {
		t.Errorf("dropped online %d", r.c.DroppedOnline())
	}
	// A refused session: nothing from the unit being decided on is
	// copied.
	r.out.uncopied = nil
	cuAt := r.cseq
	r.client(query(0, mysqlproto.ComBinlogDump, "\x00\x00"))
	if want := []uncopied{{cuAt, cuAt + 1<<30, false}}; !slices.Equal(r.out.uncopied, want) {
		t.Errorf("refused: uncopied %v, want %v", r.out.uncopied, want)
	}
}

// TestComparisonPairs runs a joined connection through a Conn and a
// response comparison (package compare) fed as tcpcopy's worker feeds it:
// the captured client packets, the online answers, the target's answers
// with CapturedAck. Every copied command pairs with its own answer (the
// target's login and a dropped command's answer in between), the dropped
// command is not_copied, and nothing waits.
func TestComparisonPairs(t *testing.T) {
	cfg := Config{ReadOnly: true, DefaultUser: "app"}
	r := newRig(t, cfg)
	var got []compare.Result
	ccfg := &compare.Config{}
	ccfg.Init()
	e := compare.NewEngine(ccfg, func(res *compare.Result) {
		c := *res
		c.Request = bytes.Clone(res.Request)
		got = append(got, c)
	})
	cmp := e.NewMySQLConn()
	r.out.cmp = cmp
	client := func(p []byte) {
		cmp.Client(r.now, false, r.cseq, r.cack, p)
		r.client(p)
	}
	online := func(b []byte) {
		cmp.Online(r.now, r.oseq, r.cseq, b, len(b), false)
		r.online(b, len(b))
	}
	target := func(b []byte) {
		if ack, ok := r.c.CapturedAck(r.tack); ok {
			cmp.Target(r.now, r.tseq, ack, len(b), b, streamhash.Sum(b), true, false)
		}
		r.target(b)
	}
	// Joined at the first query: the target's greeting and login first.
	q := query(0, mysqlproto.ComQuery, "SELECT 3")
	start := r.cseq
	client(q)
	r.out.take()
	r.synack(start - 1)
	target(r.greeting())
	r.sent()
	target(okPacket)
	answer := mysqlproto.AppendPacket(nil, 1, []byte{0x01})
	answer = append(answer, mysqlproto.AppendPacket(nil, 2, []byte("\x03def\x00\x00\x00\x011\x00\x0c\x3f\x00\x01\x00\x00\x00\x08\x81\x00\x00\x00\x00"))...)
	answer = append(answer, mysqlproto.AppendPacket(nil, 3, []byte{0xfe, 0, 0, 2, 0})...)
	answer = append(answer, mysqlproto.AppendPacket(nil, 4, []byte{1, '3'})...)
	answer = append(answer, mysqlproto.AppendPacket(nil, 5, []byte{0xfe, 0, 0, 2, 0})...)
	online(answer)
	r.sent()
	target(answer)
	for i := range 20 {
		// A prepare, its execute and close, a dropped write, a query.
		client(query(0, mysqlproto.ComStmtPrepare, "SELECT ?"))
		online(prepareOK(1, uint32(100+i)))
		r.sent()
		target(prepareOK(1, uint32(i+1)))
		client(stmtCmd(mysqlproto.ComStmtExecute, uint32(100+i), "\x00\x01\x00\x00\x00"))
		online(answer)
		r.sent()
		target(answer)
		client(stmtCmd(mysqlproto.ComStmtClose, uint32(100+i), ""))
		client(query(0, mysqlproto.ComQuery, "DELETE FROM t"))
		online(okPacket)
		client(q)
		online(answer)
		r.sent()
		target(answer)
	}
	cmp.Finish(r.now)
	var st [compare.NumVerdicts]int
	for _, res := range got {
		st[res.Verdict]++
		if res.Verdict == compare.NotCompared && (res.Reason != compare.ReasonNotCopied || !bytes.Contains(res.Request, []byte("DELETE"))) ||
			res.Verdict == compare.Differs || res.Verdict == compare.Missing {
			t.Errorf("%v %v %v %q", res.Verdict, res.Kind, res.Reason, res.Request)
		}
	}
	if st[compare.Same] != 61 || st[compare.NotCompared] != 20 {
		t.Errorf("verdicts %v, want 61 same, 20 not compared", st)
	}
}

// countOut counts a Conn's packets without keeping them.
type countOut struct{ packets, bytes int }

func (o *countOut) Packet(_ Flags, _, _ uint32, p []byte) { o.packets++; o.bytes += len(p) }
func (o *countOut) Abort()                                {}
func (o *countOut) Uncopied(_, _ uint32, _ bool)          {}

// TestPassThroughAllocs: once logged in, a command and its answers pass
// through a Conn without allocating (docs/mysql.md).
func TestPassThroughAllocs(t *testing.T) {
	r := newRig(t, Config{})
	r.loggedIn()
	r.sent()
	var out countOut
	q := query(0, mysqlproto.ComQuery, "SELECT id, name FROM items WHERE id = 42")
	cycle := func() {
		r.c.Client(r.now, FlagACK|FlagPSH, r.cseq, r.cack, q, &out)
		r.cseq += uint32(len(q))
		r.tack += uint32(len(q))
		r.c.Online(r.now, FlagACK|FlagPSH, r.oseq, r.cseq, okPacket, &out)
		r.oseq += uint32(len(okPacket))
		r.cack = r.oseq
		r.c.Target(r.now, FlagACK|FlagPSH, r.tseq, r.tack, len(okPacket), okPacket, &out)
		r.tseq += uint32(len(okPacket))
	}
	for range 100 {
		cycle()
	}
	before := out.bytes
	if a := testing.AllocsPerRun(1000, cycle); a != 0 {
		t.Errorf("a command and its answers allocate %v times", a)
	}
	if sent := out.bytes - before; sent != 1001*len(q) {
		t.Errorf("sent %d bytes in 1001 commands of %d", sent, len(q))
	}
}
