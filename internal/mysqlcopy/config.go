package mysqlcopy

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"
)

// Password is a password of the users file. It never shows in logs or
// formatted output.
type Password string

// String hides the password.
func (Password) String() string { return "<hidden>" }

// LogValue hides the password from slog.
func (Password) LogValue() slog.Value { return slog.StringValue("<hidden>") }

// GoString hides the password from %#v.
func (Password) GoString() string { return "<hidden>" }

// Users maps user names to their passwords on the target.
type Users map[string]Password

// LoadUsers reads a users file: one "user:password" per line (the
// password is everything after the first colon, and may be empty), blank
// lines and lines starting with # ignored. The file must not be readable,
// writable or executable by group or others (chmod 600): it holds
// passwords. Errors name the file and line, never a password.
func LoadUsers(path string) (Users, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s holds passwords but is accessible to group or others (mode %04o): chmod 600 %s", path, perm, path)
	}
	return parseUsers(f, path)
}

func parseUsers(f fs.File, path string) (Users, error) {
	users := Users{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimRight(sc.Bytes(), "\r")
		if len(bytes.TrimSpace(line)) == 0 || bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			continue
		}
		user, pw, ok := bytes.Cut(line, []byte(":"))
		u := strings.TrimSpace(string(user))
		switch {
		case !ok:
			return nil, fmt.Errorf("%s:%d: want user:password", path, n)
		case u == "":
			return nil, fmt.Errorf("%s:%d: empty user name", path, n)
		}
		if _, dup := users[u]; dup {
			return nil, fmt.Errorf("%s:%d: user %q listed twice", path, n, u)
		}
		users[u] = Password(pw)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return users, nil
}

// Config is the module's configuration, shared read-only by every Conn
// (Learnt is safe for concurrent use).
type Config struct {
	Users Users
	// DefaultUser and DefaultDB are the login of a joined connection
	// without a learnt one (--mysql-default-user, --mysql-default-db).
	DefaultUser, DefaultDB string
	// ReadOnly drops statements that change data (--mysql-read-only).
	ReadOnly bool
	// Learnt remembers captured logins by client address.
	Learnt *Logins
	// LoginTimeout bounds the wait for the target's greeting and login
	// answer; default 10 s.
	LoginTimeout time.Duration
	// AnswerTimeout bounds the wait for the target's answer to a
	// COM_STMT_PREPARE (the stream waits for it); default 5 s.
	AnswerTimeout time.Duration
	// GapTimeout fails a session whose captured stream has a hole that
	// does not fill; default 10 s.
	GapTimeout time.Duration
	// RetryAfter is the pause after a session was lost before the
	// connection is joined again at a later command; default 1 s.
	RetryAfter time.Duration
	// MaxHold bounds the captured bytes a Conn holds while it waits;
	// default 4 MiB.
	MaxHold int
	// Log receives the module's rare events (a refused login: user and the
	// target's error, never a password). Nil: discard.
	Log *slog.Logger
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.LoginTimeout, 10*time.Second)
	def(&c.AnswerTimeout, 5*time.Second)
	def(&c.GapTimeout, 10*time.Second)
	def(&c.RetryAfter, time.Second)
	if c.MaxHold <= 0 {
		c.MaxHold = 4 << 20
	}
	if c.Learnt == nil {
		c.Learnt = NewLogins(0)
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// Login is what a joined session needs to log in like the client did.
type Login struct {
	User      string
	Database  string
	Caps      uint32
	ExtCaps   uint32
	Charset   uint8
	MaxPacket uint32
	Attrs     []byte
}

// Logins remembers the latest captured login per client address and
// target, for connections joined mid-way (a pooled application opens all
// its connections from one address with the same user). It is safe for
// concurrent use and bounded.
type Logins struct {
	mu  sync.Mutex
	max int
	m   map[loginKey]Login
}

type loginKey struct {
	client netip.Addr
	target netip.AddrPort
}

// NewLogins returns an empty store of at most max logins (default 65536).
func NewLogins(max int) *Logins {
	if max <= 0 {
		max = 65536
	}
	return &Logins{max: max, m: make(map[loginKey]Login)}
}

// learn remembers l for client (its address) and target.
func (ls *Logins) learn(client netip.Addr, target netip.AddrPort, l Login) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	k := loginKey{client, target}
	if _, ok := ls.m[k]; !ok && len(ls.m) >= ls.max {
		for old := range ls.m { // forget one at random
			delete(ls.m, old)
			break
		}
	}
	ls.m[k] = l
}

// lookup returns the login learnt for client and target.
func (ls *Logins) lookup(client netip.Addr, target netip.AddrPort) (Login, bool) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l, ok := ls.m[loginKey{client, target}]
	return l, ok
}
