package leakwatch

import (
	"context"
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestArgs(t *testing.T) {
	o := Options{From: []netip.Addr{netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("2001:db8:2::2")}, Ports: []uint16{8080}, Out: "/x/leaks.json"}
	got := strings.Join(Args(o), " ")
	if want := "watch --out /x/leaks.json --from 198.51.100.2 --from 2001:db8:2::2 --port 8080"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, want := len(o.matches()), 3; got != want {
		t.Errorf("%d matches, want %d", got, want)
	}
}

func TestRunRefusesBadOptions(t *testing.T) {
	if _, err := Run(context.Background(), Options{From: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}); err == nil {
		t.Error("no output file: want an error")
	}
	if _, err := Run(context.Background(), Options{Out: filepath.Join(t.TempDir(), "x")}); err == nil {
		t.Error("nothing to watch: want an error")
	}
}

func TestResultRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leaks.json")
	want := Result{Ready: true, Done: true, Packets: 2, First: []string{"a", "b"}, Since: time.Unix(1, 0).UTC(), Until: time.Unix(2, 0).UTC()}
	if err := write(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadResult(path)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, %v; want %+v", got, err, want)
	}
	if matches, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".leakwatch-*")); len(matches) != 0 {
		t.Errorf("temporary files left: %v", matches)
	}
}
