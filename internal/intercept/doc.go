// Package intercept is the assistant-host daemon: it captures the target's
// responses, looks up which tcpcopy link owns each one, and sends their
// headers there in the link's wire format.
//
// Data flow: one capture goroutine per interface reads a batch of packets
// from its TPACKET_V3 ring, decodes each (ipmangle), routes it (router) and
// appends a record to the owning link's pending frame; at the end of the
// batch every link that got records is woken, and its writer goroutine sends
// them in one write. So records captured together leave together, with no
// timer, and a record waits at most one ring block timeout plus one batch.
//
// Each link has a reader goroutine (handshake, route messages), a writer
// goroutine and a bounded queue: a slow tcpcopy loses its own records
// (counted), never stalls capture or the other links. A malformed or hostile
// message closes only that link. Where C intercept differs: it keys routes
// by a hash and never deletes them, serves one epoll loop, and exits on
// several peer errors; see docs/intercept.md.
package intercept
