package mysqlcopy

// Refusal says why a session (or its rest) is not copied.
type Refusal uint8

// Refusals.
const (
	RefusedNone Refusal = iota
	// RefusedTLS: the client asked for TLS (SSLRequest): its stream is
	// encrypted for the online server.
	RefusedTLS
	// RefusedCompression: the client asked for the compressed protocol.
	RefusedCompression
	// RefusedUnknownUser: the login's user is not in the users file.
	RefusedUnknownUser
	// RefusedNoUser: a connection joined mid-way without a login learnt
	// for its client address, and no default user.
	RefusedNoUser
	// RefusedChangeUser: COM_CHANGE_USER to a user not in the users file.
	RefusedChangeUser
	// RefusedReplication: a replication stream (COM_BINLOG_DUMP,
	// COM_BINLOG_DUMP_GTID, COM_REGISTER_SLAVE).
	RefusedReplication
	// RefusedLoginFailed: the target refused the login (wrong password in
	// the users file, or no such account on the target).
	RefusedLoginFailed
	// RefusedAuthPlugin: the target asked for an authentication plugin we
	// do not speak (ed25519, PAM, sha256_password, ...).
	RefusedAuthPlugin
	// RefusedNoResponseBytes: the intercept link carries no response
	// bytes (a C intercept, or --compare-window 0).
	RefusedNoResponseBytes
	// RefusedBadLogin: the captured login could not be decoded.
	RefusedBadLogin
	// RefusedBadGreeting: the target's greeting could not be decoded.
	RefusedBadGreeting
	// RefusedLoginTimeout: the target's greeting or login answer did not
	// come in time.
	RefusedLoginTimeout
	// RefusedHoldFull: too much captured data waited (for the login, an
	// answer, or a hole in the capture to fill).
	RefusedHoldFull
	// RefusedCaptureGap: a hole in the captured stream was never filled.
	RefusedCaptureGap
	// RefusedSessionLost: the engine ended the session (the target reset
	// or closed it, no SYN-ACK, ...): see its outcome reason.
	RefusedSessionLost
	numRefusals
)

var refusalNames = [numRefusals]string{
	RefusedNone:            "none",
	RefusedTLS:             "tls",
	RefusedCompression:     "compression",
	RefusedUnknownUser:     "unknown_user",
	RefusedNoUser:          "no_user",
	RefusedChangeUser:      "change_user_unknown",
	RefusedReplication:     "replication",
	RefusedLoginFailed:     "login_failed",
	RefusedAuthPlugin:      "auth_plugin",
	RefusedNoResponseBytes: "no_response_bytes",
	RefusedBadLogin:        "bad_login",
	RefusedBadGreeting:     "bad_greeting",
	RefusedLoginTimeout:    "login_timeout",
	RefusedHoldFull:        "hold_full",
	RefusedCaptureGap:      "capture_gap",
	RefusedSessionLost:     "session_lost",
}

func (r Refusal) String() string {
	if r < numRefusals {
		return refusalNames[r]
	}
	return "unknown"
}

// permanent reports whether the rest of the client's connection is never
// copied after r; otherwise its copy is tried again from a later command,
// with a new login (a joined session).
func (r Refusal) permanent() bool {
	switch r {
	case RefusedLoginTimeout, RefusedHoldFull, RefusedCaptureGap, RefusedSessionLost:
		return false
	}
	return true
}

// DropReason says why a command was not copied.
type DropReason uint8

// Drop reasons.
const (
	// DropReadOnly: a statement that changes data, with ReadOnly.
	DropReadOnly DropReason = iota
	// DropUnknownStatement: a command naming a prepared statement whose
	// prepare was not seen (joined mid-way) or not matched.
	DropUnknownStatement
	// DropPrepareFailed: the target refused the statement's prepare.
	DropPrepareFailed
	numDropReasons
)

var dropNames = [numDropReasons]string{
	DropReadOnly:         "read_only",
	DropUnknownStatement: "unknown_statement",
	DropPrepareFailed:    "prepare_failed",
}

func (d DropReason) String() string {
	if d < numDropReasons {
		return dropNames[d]
	}
	return "unknown"
}

// NumRefusals and NumDropReasons size arrays indexed by those enums.
const (
	NumRefusals    = int(numRefusals)
	NumDropReasons = int(numDropReasons)
)

// Stats are the module's counters (one set per tcpcopy worker).
type Stats struct {
	// Sessions the module started toward the target: with the client's
	// captured login, and joined mid-way.
	LoginsCaptured, Joined uint64
	// LoginsDone counts logins the target accepted.
	LoginsDone uint64
	// Auth counts the authentication answers made, by plugin:
	// mysql_native_password, caching_sha2_password fast path, and full
	// path (RSA).
	AuthNative, AuthSHA2Fast, AuthSHA2Full uint64
	// Refused counts sessions (or their rest) not copied, by why.
	Refused [NumRefusals]uint64
	// Commands copied, and dropped by why.
	Commands uint64
	Dropped  [NumDropReasons]uint64
	// Prepares whose ids were matched on both servers; StmtRewrites the
	// commands whose statement id was replaced.
	Prepares, StmtRewrites uint64
	// ChangeUsers counts COM_CHANGE_USER redone for the target.
	ChangeUsers uint64
	// SkippedBytes are captured bytes not sent because the session was
	// looking for a command boundary to join at, or refused.
	SkippedBytes uint64
}

// Add adds o to s.
func (s *Stats) Add(o *Stats) {
	s.LoginsCaptured += o.LoginsCaptured
	s.Joined += o.Joined
	s.LoginsDone += o.LoginsDone
	s.AuthNative += o.AuthNative
	s.AuthSHA2Fast += o.AuthSHA2Fast
	s.AuthSHA2Full += o.AuthSHA2Full
	for i := range s.Refused {
		s.Refused[i] += o.Refused[i]
	}
	s.Commands += o.Commands
	for i := range s.Dropped {
		s.Dropped[i] += o.Dropped[i]
	}
	s.Prepares += o.Prepares
	s.StmtRewrites += o.StmtRewrites
	s.ChangeUsers += o.ChangeUsers
	s.SkippedBytes += o.SkippedBytes
}
