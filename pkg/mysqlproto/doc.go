// Package mysqlproto reads and writes the parts of the MySQL client/server
// protocol that a traffic copier must understand to redo a client's login
// against another server and keep its commands valid there: packet framing,
// the server's greeting (HandshakeV10), the client's HandshakeResponse41,
// the authentication exchanges of mysql_native_password and
// caching_sha2_password (its fast path and, without TLS, the full path
// through the server's RSA public key), the first packet of a response
// (OK, ERR, EOF, AuthSwitchRequest, AuthMoreData, COM_STMT_PREPARE_OK), the
// statement id of the prepared-statement commands, and a classification of
// SQL statements as reading or changing data.
//
// Everything is written from the protocol's public definition (MySQL's
// "Client/Server Protocol" pages and MariaDB's "clientserver-protocol"
// pages); no code of another project was used.
//
// Decoders take byte slices that the caller owns, never panic on any
// input, and return an error (ErrShort, ErrMalformed) for truncated or
// inconsistent packets; fuzz tests check it. They allocate only for the
// strings and byte slices they return. Nothing here does I/O.
package mysqlproto
