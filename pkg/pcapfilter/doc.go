// Package pcapfilter compiles tcpdump filter expressions into classic BPF
// programs with libpcap.
//
// It is the only package of tcpcopy-go that uses cgo: it links libpcap
// dynamically (Debian's static libpcap.a needs libdbus and fails to link) and
// calls pcap_open_dead(3PCAP), pcap_compile(3PCAP) and pcap_freecode(3PCAP).
// No capture handle is opened; the result is a plain []bpf.RawInstruction
// (golang.org/x/net/bpf) for the capture layer to attach to its own socket
// with SO_ATTACH_FILTER.
//
// libpcap is the reference: pure-Go filter compilers were measured producing
// programs the kernel rejects (every ip6 expression) and wrong results for
// "and not", "portrange" and "vlan" (see the project's pitfalls notes).
//
// # Link type
//
// The program is only meaningful for the link layer it was compiled for.
// An AF_PACKET SOCK_RAW socket on an Ethernet (or loopback) interface hands
// the filter the frame from the Ethernet header on, so compile with
// [LinkTypeEthernet] for package capture. On such a live socket the kernel
// has already moved an 802.1Q tag out of the frame into packet metadata, so
// "vlan" expressions compiled here (which test the in-band tag, since
// pcap_open_dead has no live Linux handle) do not match live traffic.
//
// # Cost and concurrency
//
// [Compile] is a setup-time call (it allocates and takes a process-wide
// lock around libpcap, whose older parsers were not reentrant); it is safe
// for concurrent use. Without cgo (CGO_ENABLED=0) Compile returns an error.
package pcapfilter
