// Package tcpcopy is the online-host daemon: it captures client→server
// packets that match the -x mappings, replays each client connection to
// the target as its own TCP session, and drives those sessions from the
// response headers that intercept sends back.
//
// [Config] holds the command line of C TCPCopy 1.x (same flags, same
// defaults) with every value checked by [Config.Validate] instead of being
// truncated into C's bit-fields; docs/tcpcopy-flags.md lists where we
// differ from C.
package tcpcopy
