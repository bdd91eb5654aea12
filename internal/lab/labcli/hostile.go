package labcli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/hostile"
)

func hostileCommand() *cli.Command {
	return &cli.Command{
		Name: "hostile",
		Usage: "attack intercept's link port for a while: garbage, malformed version-6 and version-7 messages, floods of connects and routes, " +
			"idle links, slow readers; print what was done as JSON (inside the online namespace, beside a real tcpcopy)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "intercept", Required: true, Usage: "intercept's link address ADDR:PORT"},
			&cli.StringFlag{Name: "source", Usage: "local address of the connections (default: the kernel's choice)"},
			&cli.DurationFlag{Name: "duration", Value: 5 * time.Second, Usage: "attack for this long"},
			&cli.StringFlag{Name: "scenarios", Usage: "comma-separated, of " + strings.Join(hostile.All, ", ") + " (default: all)"},
			&cli.IntFlag{Name: "workers", Value: 4, Usage: "parallel connections of each flood"},
			&cli.IntFlag{Name: "rate", Value: 500, Usage: "most connects per second of each flood, and of the holders' re-dials"},
			&cli.IntFlag{Name: "holders", Value: 16, Usage: "idle links held (re-dialled when intercept closes them)"},
			&cli.IntFlag{Name: "routes", Value: 200000, Usage: "routes sent by each route-flood link"},
			&cli.IntFlag{Name: "slow-links", Value: 2, Usage: "slow readers"},
			&cli.IntFlag{Name: "slow-syns", Value: 2000, Usage: "SYNs (and routes) of each slow reader"},
			&cli.StringFlag{Name: "slow-client", Usage: "source address of the slow readers' SYNs: a client address routed via the assistant (e.g. 192.0.2.250)"},
			&cli.StringFlag{Name: "slow-target", Usage: "the target's server ADDR:PORT the slow readers' SYNs go to"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			o := hostile.Options{
				Duration: cmd.Duration("duration"), Workers: int(cmd.Int("workers")), Rate: int(cmd.Int("rate")), Holders: int(cmd.Int("holders")),
				Routes: int(cmd.Int("routes")), SlowLinks: int(cmd.Int("slow-links")), SlowSYNs: int(cmd.Int("slow-syns")),
			}
			var err error
			if o.Intercept, err = netip.ParseAddrPort(cmd.String("intercept")); err != nil {
				return &exitError{ExitSetup, fmt.Errorf("--intercept: %w", err)}
			}
			if s := cmd.String("source"); s != "" {
				if o.Source, err = netip.ParseAddr(s); err != nil {
					return &exitError{ExitSetup, fmt.Errorf("--source: %w", err)}
				}
			}
			if s := cmd.String("slow-client"); s != "" {
				if o.SlowClient, err = netip.ParseAddr(s); err != nil {
					return &exitError{ExitSetup, fmt.Errorf("--slow-client: %w", err)}
				}
			}
			if s := cmd.String("slow-target"); s != "" {
				if o.SlowTarget, err = netip.ParseAddrPort(s); err != nil {
					return &exitError{ExitSetup, fmt.Errorf("--slow-target: %w", err)}
				}
			}
			if s := cmd.String("scenarios"); s != "" {
				o.Scenarios = strings.Split(s, ",")
			}
			rep, err := hostile.Run(ctx, o)
			if rep == nil {
				return &exitError{ExitSetup, err}
			}
			if jerr := json.NewEncoder(cmd.Root().Writer).Encode(rep); jerr != nil {
				return &exitError{ExitFailure, jerr}
			}
			if err != nil {
				return &exitError{ExitFailure, err}
			}
			return nil
		},
	}
}
