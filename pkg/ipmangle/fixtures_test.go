package ipmangle

import (
	"encoding/hex"
	"os"
	"strings"
)

// Real packets, captured with an AF_PACKET socket on Linux 6.18 (Go net
// client and server). Those from a veth pair between two network
// namespaces (192.0.2.1 → 192.0.2.2, 2001:db8::1 → 2001:db8::2, MTU 1500)
// and from loopback (MTU 65536; the IPv6 ones with IPV6_HOPOPTS and
// IPV6_DSTOPTS set on the client socket). The only edit after capture: the
// veth packets' private addresses were replaced by these documentation
// addresses, with the IPv4 header checksums and the partial TCP checksums
// updated to match (RFC 1624). Linux offloads the TCP checksum on both,
// so every captured TCP checksum is partial: it holds the folded
// pseudo-header sum, not the checksum (tcp_v4_send_check). The IPv4 header
// checksums are complete.
//
// unhex drops everything after '#' on a line, and all white space.
func unhex(s string) []byte {
	var sb strings.Builder
	for line := range strings.Lines(s) {
		line, _, _ = strings.Cut(line, "#")
		sb.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(sb.String())
	if err != nil {
		panic(err)
	}
	return b
}

// clone returns a copy of b, so tests can mutate fixtures.
func clone(b []byte) []byte { return append([]byte(nil), b...) }

// synV4 is a Linux SYN on veth: MSS 1460, SACK_PERM+TS, NOP+WS.
var synV4 = unhex(`
	45 00 00 3c  # version 4, IHL 5 (20 bytes); TOS 0; total length 60
	e0 c4 40 00  # ID 0xe0c4; flags DF, fragment offset 0
	40 06 d5 f3  # TTL 64; protocol 6 (TCP); header checksum 0xd5f3
	c0 00 02 01  # src 192.0.2.1
	c0 00 02 02  # dst 192.0.2.2
	e3 dc 1f 90  # src port 58332; dst port 8080
	34 b9 28 2b  # seq 0x34b9282b
	00 00 00 00  # ack 0
	a0 02 fa f0  # data offset 10 (40 bytes); flags SYN; window 64240
	84 32 00 00  # checksum 0x8432 (partial: pseudo-header sum); urgent 0
	02 04 05 b4  # MSS 1460
	04 02 08 0a  # SACK permitted; timestamps (kind 8, length 10) ...
	5b e5 3f dc  # ... TSval 0x5be53fdc
	00 00 00 00  # ... TSecr 0
	01 03 03 0a  # NOP; window scale 10
`)

// ackV4 is the third handshake ACK of the same connection: NOP,NOP,TS.
var ackV4 = unhex(`
	45 00 00 34  # version 4, IHL 5; TOS 0; total length 52
	e0 c5 40 00  # ID 0xe0c5; DF
	40 06 d5 fa  # TTL 64; TCP; header checksum 0xd5fa
	c0 00 02 01  # src 192.0.2.1
	c0 00 02 02  # dst 192.0.2.2
	e3 dc 1f 90  # src port 58332; dst port 8080
	34 b9 28 2c  # seq 0x34b9282c (ISN+1)
	f7 9f f5 88  # ack 0xf79ff588
	80 10 00 3f  # data offset 8 (32 bytes); flags ACK; window 63 (scaled)
	84 2a 00 00  # checksum 0x842a (partial); urgent 0
	01 01 08 0a  # NOP; NOP; timestamps ...
	5b e5 3f dc  # ... TSval
	f8 be c0 c1  # ... TSecr
`)

// synAckV4Lo is a Linux SYN-ACK on loopback (IP ID 0, MSS 65495).
var synAckV4Lo = unhex(`
	45 00 00 3c  # version 4, IHL 5; TOS 0; total length 60
	00 00 40 00  # ID 0; DF
	40 06 3c ba  # TTL 64; TCP; header checksum 0x3cba
	7f 00 00 01  # src 127.0.0.1
	7f 00 00 01  # dst 127.0.0.1
	95 17 df 2c  # src port 38167; dst port 57132
	ef 51 9b 00  # seq 0xef519b00
	a8 b8 2e cf  # ack 0xa8b82ecf
	a0 12 ff cb  # data offset 10 (40 bytes); flags SYN|ACK; window 65483
	fe 30 00 00  # checksum 0xfe30 (partial); urgent 0
	02 04 ff d7  # MSS 65495
	04 02 08 0a  # SACK permitted; timestamps ...
	31 8d 62 8b  # ... TSval
	ac a3 6c 09  # ... TSecr
	01 03 03 0a  # NOP; window scale 10
`)

// dataV4Lo is a data segment on loopback: PSH|ACK, 27 bytes of HTTP.
var dataV4Lo = unhex(`
	45 00 00 4f  # version 4, IHL 5; TOS 0; total length 79
	45 d9 40 00  # ID 0x45d9; DF
	40 06 f6 cd  # TTL 64; TCP; header checksum 0xf6cd
	7f 00 00 01  # src 127.0.0.1
	7f 00 00 01  # dst 127.0.0.1
	df 2c 95 17  # src port 57132; dst port 38167
	a8 b8 2e cf  # seq 0xa8b82ecf
	ef 51 9b 01  # ack 0xef519b01
	80 18 00 40  # data offset 8 (32 bytes); flags PSH|ACK; window 64
	fe 43 00 00  # checksum 0xfe43 (partial); urgent 0
	01 01 08 0a  # NOP; NOP; timestamps ...
	ac a3 6c 09  # ... TSval
	31 8d 62 8b  # ... TSecr
	47 45 54 20 2f 20 48 54 54 50 2f 31 2e 31 0d 0a  # "GET / HTTP/1.1\r\n"
	48 6f 73 74 3a 20 78 0d 0a 0d 0a                 # "Host: x\r\n\r\n"
`)

// synV6 is a Linux IPv6 SYN on veth: MSS 1440, SACK_PERM+TS, NOP+WS.
var synV6 = unhex(`
	60 02 fe ba  # version 6; traffic class 0; flow label 0x2feba
	00 28 06 40  # payload length 40; next header 6 (TCP); hop limit 64
	20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01  # src 2001:db8::1
	20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 02  # dst 2001:db8::2
	86 60 1f 90  # src port 34400; dst port 8080
	ac c7 a3 fa  # seq 0xacc7a3fa
	00 00 00 00  # ack 0
	a0 02 fd 20  # data offset 10 (40 bytes); flags SYN; window 64800
	5b a3 00 00  # checksum 0x5ba3 (partial); urgent 0
	02 04 05 a0  # MSS 1440
	04 02 08 0a  # SACK permitted; timestamps ...
	ba a3 9a 57  # ... TSval
	00 00 00 00  # ... TSecr 0
	01 03 03 0a  # NOP; window scale 10
`)

// synV6Ext is a Linux IPv6 SYN on loopback with a Hop-by-Hop header and a
// Destination Options header before TCP.
var synV6Ext = unhex(`
	60 00 ab 3e  # version 6; traffic class 0; flow label 0xab3e
	00 38 00 40  # payload length 56; next header 0 (Hop-by-Hop); hop limit 64
	00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01  # src ::1
	00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01  # dst ::1
	3c 00        # Hop-by-Hop: next header 60 (Destination Options); length 0 (8 bytes)
	01 04 00 00 00 00  # ... PadN, 4 bytes
	06 00        # Destination Options: next header 6 (TCP); length 0 (8 bytes)
	1e 04 de ad be ef  # ... option 0x1e (RFC 4727 experiment, skip if unknown), 4 bytes
	99 50 b0 81  # src port 39248; dst port 45185
	37 41 3a bd  # seq 0x37413abd
	00 00 00 00  # ack 0
	a0 02 ff c4  # data offset 10 (40 bytes); flags SYN; window 65476
	00 30 00 00  # checksum 0x0030 (partial); urgent 0
	02 04 ff c4  # MSS 65476
	04 02 08 0a  # SACK permitted; timestamps ...
	a1 a2 b7 e7  # ... TSval
	00 00 00 00  # ... TSecr 0
	01 03 03 0a  # NOP; window scale 10
`)

// dataV6Ext is a data segment of the same connection, with the same
// extension headers.
var dataV6Ext = unhex(`
	60 00 ab 3e  # version 6; traffic class 0; flow label 0xab3e
	00 4b 00 40  # payload length 75; next header 0 (Hop-by-Hop); hop limit 64
	00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01  # src ::1
	00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01  # dst ::1
	3c 00 01 04 00 00 00 00  # Hop-by-Hop: next 60; length 0; PadN 4
	06 00 1e 04 de ad be ef  # Destination Options: next 6; length 0; option 0x1e
	99 50 b0 81  # src port 39248; dst port 45185
	37 41 3a be  # seq 0x37413abe
	55 a1 95 10  # ack 0x55a19510
	80 18 00 40  # data offset 8 (32 bytes); flags PSH|ACK; window 64
	00 43 00 00  # checksum 0x0043 (partial); urgent 0
	01 01 08 0a  # NOP; NOP; timestamps ...
	a1 a2 b7 e7  # ... TSval
	6c 19 3c 6c  # ... TSecr
	47 45 54 20 2f 20 48 54 54 50 2f 31 2e 31 0d 0a  # "GET / HTTP/1.1\r\n"
	48 6f 73 74 3a 20 78 0d 0a 0d 0a                 # "Host: x\r\n\r\n"
`)

// GRO/TSO super-packets captured on the receiving end of the veth pair:
// 30000 bytes written at once by the client ("abc...z" repeated), handed
// to the capture as single TCP segments far above the 1500-byte MTU with
// partial checksums (see testdata/).
//
//	gro_ipv4_10188.bin: IPv4, IHL 5, total length 10188, TCP header 32
//	  bytes (NOP,NOP,TS), PSH|ACK, 10136 bytes of payload.
//	gro_ipv6_14352.bin: IPv6, no extension headers, payload length 14312,
//	  TCP header 32 bytes, PSH|ACK, 14280 bytes of payload.
func groV4() []byte { return readTestdata("gro_ipv4_10188.bin") }
func groV6() []byte { return readTestdata("gro_ipv6_14352.bin") }

func readTestdata(name string) []byte {
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		panic(err)
	}
	return b
}

// fixture is a named real packet.
type fixture struct {
	name string
	pkt  []byte
}

// realPackets lists every captured packet, for tests that run on all.
func realPackets() []fixture {
	return []fixture{
		{"syn-v4", synV4},
		{"ack-v4", ackV4},
		{"synack-v4-lo", synAckV4Lo},
		{"data-v4-lo", dataV4Lo},
		{"syn-v6", synV6},
		{"syn-v6-ext", synV6Ext},
		{"data-v6-ext", dataV6Ext},
		{"gro-v4", groV4()},
		{"gro-v6", groV6()},
	}
}

// fixed returns a copy of pkt with both checksums recomputed.
func fixed(pkt []byte) []byte {
	b := clone(pkt)
	var p Parsed
	p.Decode(b)
	FixChecksums(b, &p)
	return b
}
