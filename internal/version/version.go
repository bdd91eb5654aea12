// Package version reports the program version, set at link time with
// -ldflags "-X github.com/tcpcopy-go/tcpcopy/internal/version.Version=..."
// or taken from the module's build information.
package version

import "runtime/debug"

// Version is set at link time; empty means "read the build info".
var Version = ""

// String returns the version and, when known, the VCS revision.
func String() string {
	if Version != "" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	v := bi.Main.Version
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += "+" + s.Value[:12]
		}
	}
	return v
}
