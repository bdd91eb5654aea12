//go:build cgo

package pcapfilter

/*
#cgo LDFLAGS: -lpcap
#include <stdlib.h>
#include <string.h>
#include <pcap/pcap.h>

// tcg_compile compiles expr into out (freed by the caller with
// pcap_freecode) and copies libpcap's error message into errbuf on failure.
static int tcg_compile(int linktype, int snaplen, const char *expr,
		struct bpf_program *out, char *errbuf, size_t errlen) {
	pcap_t *p = pcap_open_dead(linktype, snaplen);
	if (p == NULL) {
		strncpy(errbuf, "pcap_open_dead failed", errlen - 1);
		errbuf[errlen - 1] = 0;
		return -1;
	}
	int rc = pcap_compile(p, out, expr, 1, PCAP_NETMASK_UNKNOWN);
	if (rc != 0) {
		strncpy(errbuf, pcap_geterr(p), errlen - 1);
		errbuf[errlen - 1] = 0;
	}
	pcap_close(p);
	return rc;
}
*/
import "C"

import (
	"fmt"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/net/bpf"
)

// mu serialises libpcap's parser: releases before 1.8 kept it in globals.
var mu sync.Mutex

func compile(linkType, snaplen int, expr string) ([]bpf.RawInstruction, error) {
	cexpr := C.CString(expr)
	defer C.free(unsafe.Pointer(cexpr))
	var errbuf [C.PCAP_ERRBUF_SIZE]C.char
	var prog C.struct_bpf_program

	mu.Lock()
	rc := C.tcg_compile(C.int(linkType), C.int(snaplen), cexpr, &prog, &errbuf[0], C.size_t(len(errbuf)))
	mu.Unlock()
	if rc != 0 {
		// libpcap 1.10 prefixes parser errors with "can't parse filter
		// expression: "; the filter is already named in our message.
		msg := strings.TrimPrefix(C.GoString(&errbuf[0]), "can't parse filter expression: ")
		return nil, fmt.Errorf("pcapfilter: filter %q: %s", expr, msg)
	}
	defer C.pcap_freecode(&prog)

	n := int(prog.bf_len)
	if n == 0 || prog.bf_insns == nil {
		return nil, fmt.Errorf("pcapfilter: filter %q: libpcap returned an empty program", expr)
	}
	insns := unsafe.Slice(prog.bf_insns, n)
	out := make([]bpf.RawInstruction, n)
	for i, in := range insns {
		out[i] = bpf.RawInstruction{Op: uint16(in.code), Jt: uint8(in.jt), Jf: uint8(in.jf), K: uint32(in.k)}
	}
	return out, nil
}
