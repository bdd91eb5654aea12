// Package mysqlcopy is tcpcopy's MySQL module: a per-session stream
// transformer that sits between the captured client stream and the
// session engine (package tcpstate), so that a copied MySQL connection
// works on a server that is not the one the client talked to.
//
// A plain packet copy fails for MySQL in three ways: the server's greeting
// carries a random nonce, so the client's captured login answer is wrong
// for the target; pooled connections stay open for days, so their login is
// almost never captured; and prepared statements get ids chosen by each
// server. A Conn therefore
//
//   - answers the target's greeting itself (mysql_native_password,
//     caching_sha2_password's fast path, and its full path through the
//     server's RSA public key), for the user of the captured login, with
//     the password of the users file;
//   - joins a connection whose login it never saw: it logs in itself (the
//     user and database learnt from an earlier captured login of that
//     client address, else defaults) and copies the captured commands from
//     the next command boundary on;
//   - maps the statement ids of the online server to the target's in
//     COM_STMT_EXECUTE, SEND_LONG_DATA, RESET, CLOSE, FETCH and MariaDB's
//     BULK_EXECUTE, reading both servers' COM_STMT_PREPARE_OK;
//   - drops what must not reach the target (writes under ReadOnly, an
//     execute of a statement whose prepare was not seen) and refuses
//     sessions it cannot copy (TLS, compression, replication, an unknown
//     user), each counted with its reason.
//
// # The two sequence spaces
//
// The stream the target gets is not the captured one: a redone login has
// another length, dropped commands are missing. A Conn numbers what it
// sends in a space of its own ("sent" sequence numbers) and hands the
// engine client packets built in that space, so the engine's
// acknowledgements, retransmissions, segmentation and -n copies work on the
// sent stream unchanged: the target's acknowledgements are in the sent
// space already. The Conn keeps the map from captured to sent positions:
// captured bytes are consumed in order (out-of-order segments wait, bounded)
// and each byte passed on goes to the next sent position. The engine's
// pacing reads the client's acknowledgement numbers (the online server's
// space); a Conn passes them on, less the online server's answers to the
// commands it dropped, so that the engine does not wait for answers the
// target will never send.
//
// # The response comparison
//
// With tcpcopy's response comparison on, a MySQL session's answers are
// compared command by command (package compare, Engine.NewMySQLConn). A
// Conn helps it pair them across the two sequence spaces: CapturedAck
// maps the target's acknowledgements (sent space) back to the captured
// commands they cover, and Output.Uncopied names the captured bytes that
// were not copied (the client's login exchange, dropped commands, the rest
// of a refused session), whose online answers have no counterpart.
//
// # What a Conn needs
//
// The target's answers: the greeting, the login exchange, and the first
// bytes of each COM_STMT_PREPARE answer. intercept sends them in version-7
// records with a response window (docs/protocol.md §4.5), which tcpcopy
// asks for whenever the module is on. The online server's answers to
// COM_STMT_PREPARE: tcpcopy captures the online server's packets (live, on
// the online host; offline, from the capture file).
//
// A Conn is not safe for concurrent use: tcpcopy runs each under its
// session's worker lock. It allocates per session and per command that
// must wait; passing bytes through allocates nothing in the steady state.
package mysqlcopy
