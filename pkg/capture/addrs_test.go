package capture_test

import "net/netip"

// Addresses from the documentation ranges (RFC 5737, RFC 3849).
var (
	client4 = netip.MustParseAddr("198.51.100.7")
	server4 = netip.MustParseAddr("192.0.2.1")
	client6 = netip.MustParseAddr("2001:db8:1::7")
	server6 = netip.MustParseAddr("2001:db8::1")
)
