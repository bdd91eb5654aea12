package main

import (
	"context"
	"testing"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/tcpcopy-go/tcpcopy/internal/cliutil"
	"github.com/tcpcopy-go/tcpcopy/internal/intercept"
)

// parse runs the command line through the real flags and configFrom,
// without starting intercept.
func parse(t *testing.T, args ...string) (intercept.Config, error) {
	t.Helper()
	cmd := newCommand()
	var (
		cfg  intercept.Config
		perr error
	)
	cmd.Action = func(_ context.Context, c *cli.Command) error {
		cfg, perr = configFrom(c)
		return nil
	}
	argv := cliutil.Normalize(append([]string{"intercept"}, args...), valueOpts, plainOpts)
	if err := cmd.Run(context.Background(), argv); err != nil {
		return cfg, err
	}
	return cfg, perr
}

func TestCaptureTimeout(t *testing.T) {
	f := []string{"-F", "tcp and src port 8080"}
	tests := []struct {
		name    string
		args    []string
		want    time.Duration
		wantErr string
	}{
		{"default", f, time.Millisecond, ""},
		{"set", append(f, "--capture-timeout", "4ms"), 4 * time.Millisecond, ""},
		{"zero", append(f, "--capture-timeout", "0"), 0, "option --capture-timeout: 0s is out of range 1ms..1s"},
		{"too long", append(f, "--capture-timeout", "2s"), 0, "option --capture-timeout: 2s is out of range 1ms..1s"},
		{"fraction", append(f, "--capture-timeout", "1.5ms"), 0, "option --capture-timeout: 1.5ms is not a whole number of milliseconds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parse(t, tt.args...)
			switch {
			case tt.wantErr != "":
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
			case err != nil:
				t.Fatalf("error = %v", err)
			case cfg.CaptureTimeout != tt.want:
				t.Errorf("CaptureTimeout = %v, want %v", cfg.CaptureTimeout, tt.want)
			}
		})
	}
}
