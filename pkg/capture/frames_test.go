package capture_test

import "github.com/tcpcopy-go/tcpcopy/internal/testframes"

// frame is the Ethernet frame builder these tests share with the other
// filter and capture packages.
type frame = testframes.Frame
