// Package compare pairs the responses of the target with the online
// server's, response by response, and says whether they are the same.
//
// tcpcopy copies a client's requests to the target; both servers answer.
// For one copied connection a Conn gets three streams: the client's
// packets (captured on the online host), the online server's answers
// (captured there too, whole) and the target's answers (the records
// intercept sends: per segment, the payload length, a hash of the payload
// (package streamhash) and the payload's first bytes when they fall within
// the first Config.Bytes of a response).
//
// # Pairing
//
// tcpcopy keeps the client's sequence numbers, so both servers acknowledge
// the same client bytes with the same numbers. A request is a run of
// client data whose acknowledgement number moved (the server had answered
// in between), as the pacing of tcpstate defines it; request k starts at
// client sequence number start(k). Server data acknowledging client bytes
// up to A was sent after the server had read part of request k, the last
// request with start(k) < A: it belongs to response k. The n-th response of
// the online server is thereby paired with the n-th of the target, however
// either cut it into segments, and whenever it arrived. Data sent before
// any request (a greeting) is response -1, paired the same way.
//
// A response is complete on a side when that side sends data of a later
// response, closes, or the connection ends. Then, with both sides
// complete, the pair gets a Verdict.
//
// # What is compared
//
// HTTP/1.x responses (both start with "HTTP/1."): the status, the headers
// (minus Config.IgnoreHeaders), the body's length and its hash (the
// response's hash with the head's taken off, streamhash.Cut), after any
// 1xx interim responses (100 Continue) in front. The head must fit in the
// first Config.Bytes bytes of the response; a longer one is compared as
// bytes. A body that fits there too is compared byte by byte, after
// Config.Masks replaced what they match on both sides. A chunked body is
// compared with its chunk framing: servers running the same code chunk
// alike. Anything else is compared as the length and the hash of each
// response.
//
// MySQL answers (a Conn of Engine.NewMySQLConn, for connections tcpcopy's
// MySQL module copies): each answer is read packet by packet, and compared
// by what it is (OK, ERR, result set, COM_STMT_PREPARE_OK), the ERR's code
// and SQLSTATE, the OK's affected rows, the columns, the rows (when the
// answer fits in Config.Bytes), then by its bytes: the packets kept, with
// OK, EOF and ERR packets compared by those fields only (not the last
// insert id, status flags, warnings, info or message) and a PREPARE_OK
// without its statement id, and the rest as its length and hash. The
// greeting is not compared; requests the module did not copy are marked
// with Conn.Skip.
//
// Nothing here allocates per packet; a Conn keeps two buffers of
// Config.Bytes per response waiting for its pair (at most
// Config.MaxPending of them).
package compare

import (
	"regexp"
	"strings"
)

// Verdict is the outcome of comparing one response.
type Verdict uint8

// Verdicts.
const (
	// Same: the target answered like the online server, volatile parts
	// aside.
	Same Verdict = iota
	// Differs: status, a header, the length or the body differ (Kind).
	Differs
	// Missing: the online server answered, the target did not.
	Missing
	// NotCompared: one side could not be seen whole (Reason).
	NotCompared
	numVerdicts
)

// NumVerdicts sizes arrays indexed by Verdict.
const NumVerdicts = int(numVerdicts)

var verdictNames = [numVerdicts]string{"same", "differs", "missing", "not_compared"}

func (v Verdict) String() string {
	if v < numVerdicts {
		return verdictNames[v]
	}
	return "unknown"
}

// Kind says what differs.
type Kind uint8

// Kinds of difference, in the order they are looked for: the first found
// is the one reported.
const (
	KindNone   Kind = iota
	KindStatus      // the HTTP status code
	KindHeader      // a header, Result.Header names it
	KindLength      // the body's (or, not HTTP, the response's) length
	KindBody        // the body's bytes
	// MySQL (Engine.NewMySQLConn):
	KindMySQLResult   // OK, ERR, result set: not the same type of answer
	KindMySQLError    // both ERR: the code or the SQLSTATE differs
	KindMySQLAffected // the OK packets' affected rows
	KindMySQLColumns  // a result set's column count or definitions; a prepare's counts
	KindMySQLRows     // the number of rows (answers that fit in Config.Bytes)
	KindMySQLChecksum // the bytes: rows kept, or the length and hash of the rest
	numKinds
)

// NumKinds sizes arrays indexed by Kind.
const NumKinds = int(numKinds)

var kindNames = [numKinds]string{"", "status", "header", "length", "body",
	"mysql_result", "mysql_error", "mysql_affected_rows", "mysql_columns", "mysql_rows", "mysql_checksum"}

func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return "unknown"
}

// Reason says why a response was not compared.
type Reason uint8

// Reasons of NotCompared.
const (
	ReasonNone Reason = iota
	// ReasonNoOnline: the target answered a request the online server's
	// answer to which was not captured (not in the capture file, or
	// tcpcopy started after it).
	ReasonNoOnline
	// ReasonOnlineIncomplete: part of the online answer was not captured.
	ReasonOnlineIncomplete
	// ReasonTargetIncomplete: part of the target's answer did not come
	// through intercept (lost records, a segment without its hash).
	ReasonTargetIncomplete
	// ReasonTooMany: more answers waited for their pair than a connection
	// keeps (Config.MaxPending).
	ReasonTooMany
	// ReasonNotCopied: the request was not copied to the target (MySQL: a
	// command --mysql-read-only dropped, a statement the target does not
	// know, a refused session), so its online answer has no counterpart.
	ReasonNotCopied
	numReasons
)

// NumReasons sizes arrays indexed by Reason.
const NumReasons = int(numReasons)

var reasonNames = [numReasons]string{"", "online_not_captured", "online_incomplete", "target_incomplete", "too_many_pending", "not_copied"}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Config holds the comparison rules. Zero values take the defaults.
type Config struct {
	// Bytes is how many bytes of the start of each response are kept
	// verbatim on each side (tcpcopy --compare-bytes): the HTTP head must
	// fit, a body that fits too is compared byte by byte. Default 2048.
	Bytes int
	// IgnoreHeaders are header names (any case) whose values are not
	// compared; a header present on one side only is not reported either.
	// DefaultIgnoreHeaders by default; nil keeps the default, an empty
	// non-nil slice ignores nothing.
	IgnoreHeaders []string
	// Masks are regular expressions; what they match in a body (both
	// sides) is replaced by "*" before comparing. They apply to bodies
	// that fit in Bytes.
	Masks []*regexp.Regexp
	// MaxPending bounds the responses one connection keeps waiting for
	// their pair. Default 16.
	MaxPending int
	// MySQLMaxPending is MaxPending for MySQL connections
	// (Engine.NewMySQLConn), whose target may run many commands behind the
	// online server in a burst (tcpcopy waits for the target's answer to
	// each prepare, and the commands are short). Default 128.
	MySQLMaxPending int
	// DetailBytes is how many bytes of each side a Result keeps where
	// they differ. Default 96.
	DetailBytes int

	ignore map[string]bool
}

// DefaultIgnoreHeaders are the headers whose values change from one
// response to the next on any server, or name the server.
var DefaultIgnoreHeaders = []string{
	"Date", "Set-Cookie", "Server", "ETag", "Last-Modified", "Expires", "Age",
	"X-Request-Id", "X-Correlation-Id", "X-Trace-Id", "Traceparent", "Tracestate",
	"X-Runtime", "X-Response-Time", "Via", "X-Served-By", "Keep-Alive", "Connection",
}

// Defaults.
const (
	DefaultBytes      = 2048
	defaultMaxPending = 16
	// defaultMySQLMaxPending: at most 128 × 2 × Bytes of buffers per MySQL
	// connection whose target lags (512 KiB with the default Bytes).
	defaultMySQLMaxPending = 128
	defaultDetail          = 96
	// MaxBytes is the largest Config.Bytes (the protocol's limit of a
	// record's payload prefix).
	MaxBytes = 16384
)

// Init sets the defaults; call it once before the Config is used.
func (c *Config) Init() {
	if c.Bytes <= 0 {
		c.Bytes = DefaultBytes
	}
	c.Bytes = min(c.Bytes, MaxBytes)
	if c.MaxPending <= 0 {
		c.MaxPending = defaultMaxPending
	}
	if c.MySQLMaxPending <= 0 {
		c.MySQLMaxPending = defaultMySQLMaxPending
	}
	if c.DetailBytes <= 0 {
		c.DetailBytes = defaultDetail
	}
	if c.IgnoreHeaders == nil {
		c.IgnoreHeaders = DefaultIgnoreHeaders
	}
	c.ignore = make(map[string]bool, len(c.IgnoreHeaders))
	for _, h := range c.IgnoreHeaders {
		c.ignore[strings.ToLower(h)] = true
	}
}
