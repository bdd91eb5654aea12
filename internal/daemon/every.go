package daemon

import (
	"context"
	"time"
)

// Every calls fn with the tick time every d until ctx ends; with d <= 0
// it returns at once. It is the loop of the daemons' periodic jobs (stats
// line, warnings, expiry, memory budget).
func Every(ctx context.Context, d time.Duration, fn func(now time.Time)) {
	if d <= 0 {
		return
	}
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			fn(now)
		}
	}
}
