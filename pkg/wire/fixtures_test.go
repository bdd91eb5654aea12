package wire

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// Fixtures are annotated hex dumps: one field per line, "OFFSET  BYTES |
// comment". BYTES are two-digit hex tokens, "xx*N" repeats a byte N times.
// OFFSET (hex) must equal the number of bytes before the line. The same
// dumps appear in docs/protocol.md (TestDocFixtures keeps them in sync).
//
// The packets are real: IPv4/IPv6 and TCP checksums are valid for the
// original segments (the 512-byte payload of the data segment is 512 x 'a',
// the 100-byte payload of the IP-options segment is 100 x 'b').
var fixtures = map[string]string{
	"v6-handshake": `
0000  00 00 00 00   | clt_ip 0
0004  00 00         | clt_port 0
0006  00 06         | type 6 (C INTERNAL_VERSION, big-endian)
0008  00 00 00 00   | target_ip 0 (read and ignored by C intercept)
000c  00 00         | target_port 0 (read and ignored)
`,
	"v7-offer": `
0000  00 00 00 00   | clt_ip 0: C intercept accepts the handshake
0004  00 00         | clt_port 0
0006  00 06         | type 6: C intercept 1.0 does not even warn
0008  54 43 47 4f   | magic "TCGO" in target_ip (ignored by C)
000c  00 07         | highest version offered: 7, in target_port (ignored by C)
`,
	"v6-client-add": `
0000  c0 00 02 0a   | clt_ip 192.0.2.10 (rewritten client address, network order)
0004  9c 40         | clt_port 40000 (network order)
0006  00 01         | type 1 = CLIENT_ADD (big-endian)
0008  cb 00 71 14   | target_ip 203.0.113.20
000c  1f 90         | target_port 8080
`,
	"v6-record-synack": `
0000  45 00 00 3c   | IPv4 version 4, ihl 5, tos 0, tot_len 60 = 20 + 40 (no payload)
0004  00 00 40 00   | id 0, flags DF, fragment offset 0
0008  40 06 3c 9d   | ttl 64, protocol 6 (TCP), header checksum
000c  cb 00 71 14   | saddr 203.0.113.20 (target)
0010  c0 00 02 0a   | daddr 192.0.2.10 (replayed client)
0014  1f 90 9c 40   | TCP sport 8080, dport 40000
0018  3a 4b 5c 6d   | seq 0x3a4b5c6d (target ISN)
001c  11 22 33 45   | ack 0x11223345 (client ISN + 1)
0020  a0 12 fe 88   | doff 10 (40 bytes), flags SYN|ACK, window 65160
0024  a7 3d 00 00   | checksum, urgent pointer 0
0028  02 04 05 b4   | option MSS 1460
002c  04 02         | option SACK permitted
002e  08 0a 00 0a 0b 0c 00 01 02 03 | option timestamps TSval 0x000a0b0c TSecr 0x00010203
0038  01 03 03 07   | option NOP, window scale 7
003c  00*4          | zero padding to 64 bytes
`,
	"v6-combined-2": `
0000  00 02         | count 2 (big-endian)
0002  45 00 00 3c   | record 1: the SYN-ACK of v6-record-synack
0006  00 00 40 00   |
000a  40 06 3c 9d   |
000e  cb 00 71 14   |
0012  c0 00 02 0a   |
0016  1f 90 9c 40   |
001a  3a 4b 5c 6d   |
001e  11 22 33 45   |
0022  a0 12 fe 88   |
0026  a7 3d 00 00   |
002a  02 04 05 b4 04 02 08 0a 00 0a 0b 0c 00 01 02 03 01 03 03 07 |
003e  00*4          | padding
0042  45 00 02 34   | record 2: IPv4, tot_len 564 = 20 + 32 + 512 payload bytes (not carried)
0046  1c 46 40 00   | id 0x1c46, DF
004a  40 06 1e 5f   | ttl 64, TCP, header checksum
004e  cb 00 71 14   | saddr 203.0.113.20
0052  c0 00 02 0a   | daddr 192.0.2.10
0056  1f 90 9c 40   | TCP sport 8080, dport 40000
005a  3a 4b 5c 6e   | seq ISN + 1
005e  11 22 33 c5   | ack: 128 request bytes acknowledged
0062  80 18 01 f6   | doff 8 (32 bytes), flags PSH|ACK, window 502
0066  6e 32 00 00   | checksum (of the original segment), urgent pointer 0
006a  01 01 08 0a 00 0a 0b 50 00 01 02 40 | options NOP, NOP, timestamps
0076  00*12         | padding to 64 bytes
`,
	"v6-payload-record-http": `
0000  45 00 00 5d   | IPv4, tot_len 93 = 20 + 32 + 41
0004  1c 47 40 00   | id 0x1c47, DF
0008  40 06 20 35   | ttl 64, TCP, header checksum
000c  cb 00 71 14   | saddr 203.0.113.20
0010  c0 00 02 0a   | daddr 192.0.2.10
0014  1f 90 9c 40   | TCP sport 8080, dport 40000
0018  3a 4b 5c 6e   | seq
001c  11 22 33 c5   | ack
0020  80 18 01 f6   | doff 8, PSH|ACK, window 502
0024  0a de 00 00   | checksum (valid with the payload below), urgent 0
0028  01 01 08 0a 00 0a 0b 50 00 01 02 40 | options NOP, NOP, timestamps
0034  48 54 54 50 2f 31 2e 31 20 32 30 34 20 4e 6f 20 43 6f 6e 74 65 6e 74 0d 0a | payload at 20 + doff*4 = 52: "HTTP/1.1 204 No Content\r\n"
004d  53 65 72 76 65 72 3a 20 64 65 6d 6f 0d 0a 0d 0a | "Server: demo\r\n\r\n" (41 bytes: 0 < 41 <= 128, so carried)
005d  00*99         | zero padding to 192 bytes
`,
	"v6-record-long-options": `
0000  45 00 00 50   | IPv4, tot_len 80 = 20 + 60
0004  00 00 40 00   | id 0, DF
0008  40 06 3c 89   | ttl 64, TCP, header checksum
000c  cb 00 71 14   | saddr 203.0.113.20
0010  c0 00 02 0a   | daddr 192.0.2.10
0014  1f 90 9c 40   | TCP sport 8080, dport 40000
0018  3a 4b 5c 6d   | seq
001c  11 22 33 45   | ack
0020  f0 12 fe 88   | doff 15 (60 bytes, kept by C although only 44 are carried), SYN|ACK
0024  86 d2 00 00   | checksum, urgent 0
0028  02 04 05 b4 04 02 08 0a 00 0a 0b 0c 00 01 02 03 01 03 03 07 01 01 | MSS, SACK-perm, TS, NOP, WS 7, NOP, NOP
003e  13 12         | TCP-MD5 option kind 19 length 18: its 16 digest bytes are cut off
`,
	"v6-record-long-options-decoded": `
0000  45 00 00 40   | tot_len 64 = 20 + 44: reduced with doff so that tot_len - 20 - doff*4 = 0 still
0004  00 00 40 00   |
0008  40 06 3c 99   | header checksum recomputed
000c  cb 00 71 14   |
0010  c0 00 02 0a   |
0014  1f 90 9c 40   |
0018  3a 4b 5c 6d   |
001c  11 22 33 45   |
0020  b0 12 fe 88   | doff clamped to 11 (44 bytes), flag OptionsCut
0024  86 d2 00 00   |
0028  02 04 05 b4 04 02 08 0a 00 0a 0b 0c 00 01 02 03 01 03 03 07 01 01 13 12 |
`,
	"v6-record-ip-options-c": `
0000  46 00 00 9c   | IPv4 ihl 6 (Router Alert option), tot_len 156 = 24 + 32 + 100
0004  1c 48 40 00   | id 0x1c48, DF
0008  40 06 8a f0   | ttl 64, TCP, checksum over the 24-byte header
000c  cb 00 71 14   | saddr 203.0.113.20
0010  c0 00 02 0a   | daddr 192.0.2.10: the option 94 04 00 00 is NOT copied by C intercept
0014  1f 90 9c 40   | TCP at offset 20, where a C tcpcopy does not look (it uses ihl*4 = 24)
0018  3a 4b 5c 6e   | seq
001c  11 22 33 c5   | ack
0020  80 18 01 f6   | doff 8, PSH|ACK, window 502
0024  99 f8 00 00   | checksum, urgent 0
0028  01 01 08 0a 00 0a 0b 50 00 01 02 40 | options NOP, NOP, timestamps
0034  00*12         | padding
`,
	"v6-record-ip-options-ours": `
0000  45 00 00 98   | ihl 5, tot_len 152 = 156 - 4: payload length 152 - 20 - 32 = 100 still
0004  1c 48 40 00   |
0008  40 06 1f f9   | header checksum recomputed for the 20-byte header
000c  cb 00 71 14   |
0010  c0 00 02 0a   |
0014  1f 90 9c 40   | TCP at ihl*4 = 20: right for C and Go readers
0018  3a 4b 5c 6e   |
001c  11 22 33 c5   |
0020  80 18 01 f6   |
0024  99 f8 00 00   |
0028  01 01 08 0a 00 0a 0b 50 00 01 02 40 |
0034  00*12         |
`,
	"hello-v7": `
0000  00 00         | zero: never a C combined count (1..16) nor an IPv4 header byte
0002  54 43 47 4f   | magic "TCGO"
0006  00 10         | hello length 16 (a reader accepts 16..256 and ignores the rest)
0008  07            | version 7
0009  00            | flags (version-6 framing; unused with version 7)
000a  00 80         | longest payload prefix intercept will send: 128
000c  00 00         | comparison window 0: this intercept cannot compare responses (§4.5)
000e  00 00         | reserved, zero
`,
	"hello-v7-compare": `
0000  00 00         | zero
0002  54 43 47 4f   | magic "TCGO"
0006  00 10         | hello length 16
0008  07            | version 7
0009  00            | flags
000a  00 80         | longest payload prefix intercept will send: 128
000c  40 00         | longest response comparison window: 16384 (0: intercept cannot compare)
000e  00 00         | reserved, zero
`,
	"hello-v7-auth": `
0000  00 00         | zero
0002  54 43 47 4f   | magic "TCGO"
0006  00 10         | hello length 16
0008  07            | version 7
0009  04            | flags: bit 2 auth, a challenge follows and the link must authenticate
000a  00 80         | longest payload prefix intercept will send: 128
000c  00 00 00 00   | reserved
`,
	"v7-challenge": `
0000  00 28         | length 40
0002  82            | type 0x82 = challenge (intercept to tcpcopy)
0003  00            | flags (none defined)
0004  01            | algorithm 1 = HMAC-SHA-256, 32-byte nonces
0005  00 00 00      | reserved
0008  a0 a1 a2 a3 a4 a5 a6 a7 a8 a9 aa ab ac ad ae af | intercept's nonce Ni (32 bytes from crypto/rand; these are an example)
0018  b0 b1 b2 b3 b4 b5 b6 b7 b8 b9 ba bb bc bd be bf |
`,
	"v7-auth": `
0000  00 48         | length 72
0002  04            | type 4 = auth (tcpcopy to intercept)
0003  00            | flags (none defined)
0004  01            | algorithm 1 = HMAC-SHA-256
0005  00 00 00      | reserved
0008  c0 c1 c2 c3 c4 c5 c6 c7 c8 c9 ca cb cc cd ce cf | tcpcopy's nonce Nt (32 bytes from crypto/rand)
0018  d0 d1 d2 d3 d4 d5 d6 d7 d8 d9 da db dc dd de df |
0028  ab 88 8e e7 eb 2f 2a 8a 93 6b 25 9a 0e c1 36 f4 | HMAC-SHA-256(secret, "tcpcopy-go auth v7: tcpcopy" 00 Ni Nt)
0038  55 86 31 f2 bf 64 f1 29 0a 82 63 06 28 09 8e a3 |
`,
	"v7-auth-ok": `
0000  00 28         | length 40
0002  83            | type 0x83 = auth-ok (intercept to tcpcopy)
0003  00            | flags (none defined)
0004  01            | algorithm 1 = HMAC-SHA-256
0005  00 00 00      | reserved
0008  a2 cc f4 91 93 2f cb 77 94 96 09 c0 da 68 29 f9 | HMAC-SHA-256(secret, "tcpcopy-go auth v7: intercept" 00 Ni Nt)
0018  94 41 6b 67 aa 45 b6 f5 b0 ca ca 6e 83 3d d1 75 |
`,
	"hello-v6-combined": `
0000  00 00         | zero
0002  54 43 47 4f   | magic "TCGO"
0006  00 10         | hello length 16
0008  06            | version 6: intercept will not speak version 7 on this connection
0009  01            | flags: bit 0 combined, bit 1 192-byte payload records
000a  00 00         | prefix length (unused with version 6)
000c  00 00 00 00   | reserved
`,
	"v7-route-add-ipv4": `
0000  00 12         | length 18 (whole message)
0002  01            | type 1 = route add
0003  00            | flags (none defined)
0004  04            | family 4
0005  00            | reserved
0006  9c 40         | client port 40000
0008  1f 90         | target port 8080
000a  c0 00 02 0a   | client 192.0.2.10
000e  cb 00 71 14   | target 203.0.113.20
`,
	"v7-route-add-ipv6": `
0000  00 2a         | length 42
0002  01            | type 1 = route add
0003  00            | flags
0004  06            | family 6
0005  00            | reserved
0006  9c 40         | client port 40000
0008  1f 90         | target port 8080
000a  20 01 0d b8 00*10 00 0a | client 2001:db8::a
001a  20 01 0d b8 00*10 00 14 | target 2001:db8::14
`,
	"v7-config": `
0000  00 08         | length 8
0002  03            | type 3 = config
0003  00            | flags
0004  00 80         | payload prefix wanted: 128 bytes per record
0006  00 00         | compare window: 0, off (reserved before the response comparison)
`,
	"v7-config-compare": `
0000  00 08         | length 8
0002  03            | type 3 = config
0003  00            | flags
0004  00 00         | payload prefix wanted: none
0006  08 00         | compare responses: hash every payload, copy the first 2048 bytes of each response
`,
	"v7-record-ipv6-synack": `
0000  00 64         | length 100
0002  81            | type 0x81 = record
0003  00            | flags
0004  17 97 9c fe 3d 85 cd 15 | captured 1700000000123456789 ns (2023-11-14T22:13:20.123456789Z)
000c  00 00 00 00   | payload length 0
0010  00 50         | header length 80 = 40 + 40
0012  00 00         | prefix length 0
0014  60 00 00 00   | IPv6 version 6, traffic class 0, flow label 0
0018  00 28 06 40   | payload length 40, next header 6 (TCP), hop limit 64
001c  20 01 0d b8 00*10 00 14 | saddr 2001:db8::14 (target)
002c  20 01 0d b8 00*10 00 0a | daddr 2001:db8::a (replayed client)
003c  1f 90 9c 40   | TCP sport 8080, dport 40000
0040  3a 4b 5c 6d   | seq
0044  11 22 33 45   | ack
0048  a0 12 fd 20   | doff 10, SYN|ACK, window 64800
004c  4b 49 00 00   | checksum, urgent 0
0050  02 04 05 a0 04 02 08 0a 00 0a 0b 0c 00 01 02 03 01 03 03 07 | MSS 1440, SACK-perm, TS, NOP, WS 7
`,
	"v7-record-ipv4-options-prefix": `
0000  00 5c         | length 92
0002  81            | type 0x81 = record
0003  00            | flags
0004  17 97 9c fe 3d 95 0f 55 | captured 1700000000124456789 ns
000c  00 00 00 64   | payload length 100
0010  00 38         | header length 56 = 24 + 32
0012  00 10         | prefix length 16
0014  46 00 00 9c   | IPv4 ihl 6, tot_len 156: carried as captured
0018  1c 48 40 00   |
001c  40 06 8a f0   |
0020  cb 00 71 14   |
0024  c0 00 02 0a   |
0028  94 04 00 00   | IP option Router Alert
002c  1f 90 9c 40 3a 4b 5c 6e 11 22 33 c5 80 18 01 f6 99 f8 00 00 | TCP header
0040  01 01 08 0a 00 0a 0b 50 00 01 02 40 | TCP options
004c  62*16         | first 16 payload bytes ("bbbb...")
`,
	"v7-record-hashed": `
0000  00 64         | length 100 = 20 + 56 + 16 + 8
0002  81            | type 0x81 = record
0003  02            | flags: bit 1, the payload's hash follows the prefix
0004  17 97 9c fe 3d 95 0f 55 | captured 1700000000124456789 ns
000c  00 00 00 64   | payload length 100
0010  00 38         | header length 56 = 24 + 32
0012  00 10         | prefix length 16: the segment starts a response, window 16
0014  46 00 00 9c   | the IPv4 header with options and the TCP header, as in v7-record-ipv4-options-prefix
0018  1c 48 40 00   |
001c  40 06 8a f0   |
0020  cb 00 71 14   |
0024  c0 00 02 0a   |
0028  94 04 00 00   |
002c  1f 90 9c 40 3a 4b 5c 6e 11 22 33 c5 80 18 01 f6 99 f8 00 00 |
0040  01 01 08 0a 00 0a 0b 50 00 01 02 40 |
004c  62*16         | first 16 payload bytes
005c  05 c2 3a 68 f3 5b df 9f | streamhash of the whole 100-byte payload ("b" 100 times)
`,
	"hello-v7-udp": `
0000  00 00         | zero
0002  54 43 47 4f   | magic "TCGO"
0006  00 10         | hello length 16
0008  07            | version 7
0009  08            | flags: bit 3 UDP, intercept routes UDP answers (takes UDP routes, sends UDP records)
000a  00 80         | longest payload prefix intercept will send: 128
000c  40 00         | longest response comparison window: 16384
000e  00 00         | reserved, zero
`,
	"v7-route-add-udp": `
0000  00 12         | length 18
0002  01            | type 1 = route add
0003  01            | flags: bit 0 UDP, the route of a copied UDP flow (apart from TCP routes)
0004  04            | family 4
0005  00            | reserved
0006  9c 40         | client port 40000 (the copy's source port, as sent to the target)
0008  14 e9         | target port 5353
000a  c0 00 02 0a   | client 192.0.2.10
000e  cb 00 71 14   | target 203.0.113.20
`,
	"v7-record-udp-ipv4": `
0000  00 48         | length 72 = 20 + 28 + 16 + 8
0002  81            | type 0x81 = record
0003  06            | flags: bit 2 UDP (the header is IPv4 + UDP), bit 1 the payload's hash follows the prefix
0004  17 97 9c fe 3d 95 0f 55 | captured 1700000000124456789 ns
000c  00 00 00 2b   | payload length 43: the UDP payload, a DNS answer
0010  00 1c         | header length 28 = 20 + 8
0012  00 10         | prefix length 16: comparison window 16
0014  45 00 00 47   | IPv4, ihl 5, tot_len 71 = 20 + 8 + 43
0018  2b 3c 40 00   | id 0x2b3c, DF
001c  40 11 11 4b   | ttl 64, protocol 17 (UDP), header checksum
0020  cb 00 71 14   | saddr 203.0.113.20 (target)
0024  c0 00 02 0a   | daddr 192.0.2.10 (the copy's client endpoint)
0028  14 e9 9c 40   | UDP sport 5353, dport 40000
002c  00 33 0f 09   | UDP length 51 = 8 + 43, checksum
0030  12 34 81 80 00 01 00 01 00 00 00 00 01 61 07 65 | first 16 payload bytes: DNS ID 0x1234, flags 0x8180, 1 question, 1 answer, name "a.example" begins
0040  10 5b 59 e9 bd e1 e5 e9 | streamhash of the whole 43-byte payload
`,
	"v7-record-udp-ipv6": `
0000  00 44         | length 68 = 20 + 48
0002  81            | type 0x81 = record
0003  04            | flags: bit 2 UDP
0004  17 97 9c fe 3d 85 cd 15 | captured 1700000000123456789 ns
000c  00 00 00 2b   | payload length 43
0010  00 30         | header length 48 = 40 + 8
0012  00 00         | prefix length 0
0014  60 00 00 00   | IPv6 version 6, traffic class 0, flow label 0
0018  00 33 11 40   | payload length 51, next header 17 (UDP), hop limit 64
001c  20 01 0d b8 00*10 00 14 | saddr 2001:db8::14 (target)
002c  20 01 0d b8 00*10 00 0a | daddr 2001:db8::a (the copy's client endpoint)
003c  14 e9 9c 40   | UDP sport 5353, dport 40000
0040  00 33 b1 98   | UDP length 51, checksum
`,
}

// parseFixture decodes an annotated hex dump.
func parseFixture(s string) ([]byte, error) {
	var out []byte
	sc := bufio.NewScanner(strings.NewReader(s))
	for line := 1; sc.Scan(); line++ {
		text, _, _ := strings.Cut(sc.Text(), "|")
		f := strings.Fields(text)
		if len(f) == 0 {
			continue
		}
		off, err := strconv.ParseUint(f[0], 16, 32)
		if err != nil {
			return nil, fmt.Errorf("line %d: offset %q: %v", line, f[0], err)
		}
		if int(off) != len(out) {
			return nil, fmt.Errorf("line %d: offset %#04x, want %#04x", line, off, len(out))
		}
		for _, tok := range f[1:] {
			hexb, rep, ok := strings.Cut(tok, "*")
			n := 1
			if ok {
				if n, err = strconv.Atoi(rep); err != nil || n < 1 {
					return nil, fmt.Errorf("line %d: bad repeat %q", line, tok)
				}
			}
			v, err := strconv.ParseUint(hexb, 16, 8)
			if err != nil || len(hexb) != 2 {
				return nil, fmt.Errorf("line %d: bad byte %q", line, tok)
			}
			for range n {
				out = append(out, byte(v))
			}
		}
	}
	return out, nil
}

// fixture returns the bytes of a named fixture.
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	s, ok := fixtures[name]
	if !ok {
		t.Fatalf("no fixture %q", name)
	}
	b, err := parseFixture(s)
	if err != nil {
		t.Fatalf("fixture %q: %v", name, err)
	}
	return b
}

// Packets as captured by intercept (from the IP header on), built from the
// fixtures: the input side of the encoder tests.
func synAckPkt(t testing.TB) []byte { return fixture(t, "v6-record-synack")[:60] }

func dataPkt(t testing.TB) []byte { return fixture(t, "v6-combined-2")[2+64 : 2+64+52] }

func httpPkt(t testing.TB) []byte { return fixture(t, "v6-payload-record-http")[:93] }

func longOptPkt(t testing.TB) []byte {
	b := append([]byte(nil), fixture(t, "v6-record-long-options")...)
	return append(b, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff)
}

func ipOptPkt(t testing.TB) []byte {
	r := fixture(t, "v7-record-ipv4-options-prefix")
	return r[20 : 20+56]
}

func ipv6SynAckPkt(t testing.TB) []byte {
	r := fixture(t, "v7-record-ipv6-synack")
	return r[20 : 20+80]
}

func TestFixturesParse(t *testing.T) {
	sizes := map[string]int{
		"v6-handshake": 14, "v7-offer": 14, "v6-client-add": 14,
		"v6-record-synack": 64, "v6-combined-2": 2 + 2*64, "v6-payload-record-http": 192,
		"v6-record-long-options": 64, "v6-record-long-options-decoded": 64,
		"v6-record-ip-options-c": 64, "v6-record-ip-options-ours": 64,
		"hello-v7": 16, "hello-v6-combined": 16, "hello-v7-auth": 16,
		"v7-challenge": 40, "v7-auth": 72, "v7-auth-ok": 40,
		"v7-route-add-ipv4": 18, "v7-route-add-ipv6": 42, "v7-config": 8,
		"v7-record-ipv6-synack": 100, "v7-record-ipv4-options-prefix": 92,
		"hello-v7-compare": 16, "v7-config-compare": 8, "v7-record-hashed": 100,
		"hello-v7-udp": 16, "v7-route-add-udp": 18, "v7-record-udp-ipv4": 72, "v7-record-udp-ipv6": 68,
	}
	for name := range fixtures {
		want, ok := sizes[name]
		if !ok {
			t.Errorf("fixture %q has no expected size", name)
			continue
		}
		if got := len(fixture(t, name)); got != want {
			t.Errorf("fixture %q: %d bytes, want %d", name, got, want)
		}
	}
}

// TestFixturesChecksums checks that the packets in the fixtures are real:
// valid IPv4 header checksums and TCP checksums where the payload is known.
func TestFixturesChecksums(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pkt     []byte
		payload []byte
	}{
		{"synack", synAckPkt(t), nil},
		{"data", dataPkt(t), bytes.Repeat([]byte{'a'}, 512)},
		{"http", httpPkt(t)[:52], httpPkt(t)[52:]},
		{"long-options", longOptPkt(t), nil},
		{"ip-options", ipOptPkt(t), bytes.Repeat([]byte{'b'}, 100)},
		{"ipv6", ipv6SynAckPkt(t), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkPacket(t, tc.pkt, tc.payload)
		})
	}
}

// checkPacket verifies the checksums of an IP+TCP header (and payload).
func checkPacket(t *testing.T, hdr, payload []byte) {
	t.Helper()
	c, ok := parseCaptured(hdr)
	if !ok {
		t.Fatalf("not a valid IP+TCP header: % x", hdr)
	}
	seg := append(append([]byte(nil), hdr[c.tcpOff:c.tcpOff+c.tcpLen]...), payload...)
	var pseudo []byte
	if c.v6 {
		pseudo = append(pseudo, hdr[8:40]...)
		pseudo = be.AppendUint32(pseudo, uint32(len(seg)))
		pseudo = append(pseudo, 0, 0, 0, protoTCP)
	} else {
		ip := hdr[:c.ipLen]
		if got, want := be.Uint16(ip[ipv4ChecksumOff:]), ipChecksumFull(ip); got != want {
			t.Errorf("IPv4 header checksum %#04x, want %#04x", got, want)
		}
		pseudo = append(pseudo, ip[12:20]...)
		pseudo = append(pseudo, 0, protoTCP)
		pseudo = be.AppendUint16(pseudo, uint16(len(seg)))
	}
	if sum := onesSum(append(pseudo, seg...)); sum != 0xffff {
		t.Errorf("TCP checksum invalid (sum %#04x)", sum)
	}
}

// ipChecksumFull is a naive RFC 1071 reference over a whole IPv4 header.
func ipChecksumFull(h []byte) uint16 {
	c := append([]byte(nil), h...)
	c[10], c[11] = 0, 0
	return ^onesSum(c)
}

func onesSum(b []byte) uint16 {
	var s uint64
	for i := 0; i < len(b); i += 2 {
		w := uint64(b[i]) << 8
		if i+1 < len(b) {
			w |= uint64(b[i+1])
		}
		s += w
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// TestDocFixtures checks that every hex dump in docs/protocol.md marked
// "<!-- fixture NAME -->" is byte for byte the fixture of that name.
func TestDocFixtures(t *testing.T) {
	doc, err := os.ReadFile("../../docs/protocol.md")
	if os.IsNotExist(err) {
		t.Skip("docs/protocol.md not present")
	}
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	rest := string(doc)
	for {
		_, after, ok := strings.Cut(rest, "<!-- fixture ")
		if !ok {
			break
		}
		name, after, _ := strings.Cut(after, " -->")
		_, after, ok = strings.Cut(after, "```text\n")
		if !ok {
			t.Fatalf("fixture %q: no ```text block after the marker", name)
		}
		block, after, ok := strings.Cut(after, "```")
		if !ok {
			t.Fatalf("fixture %q: unterminated block", name)
		}
		rest = after
		got, err := parseFixture(block)
		if err != nil {
			t.Errorf("doc fixture %q: %v", name, err)
			continue
		}
		if want := fixture(t, name); !bytes.Equal(got, want) {
			t.Errorf("doc fixture %q differs from the test fixture:\n got % x\nwant % x", name, got, want)
		}
		seen++
	}
	if seen < 10 {
		t.Errorf("found %d fixtures in docs/protocol.md, want at least 10", seen)
	}
}
