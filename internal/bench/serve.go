package bench

import (
	"context"
	"time"
)

// rss is a process's resident set size and its two main parts, in bytes:
// anonymous memory (heaps, stacks) and file-backed pages (the mapped binary
// and shared libraries, of which only the touched pages count); and its
// peak since start or the last reset (see trackPeakRSS).
type rss struct{ Total, Anon, File, Peak int64 }

// measureServe starts `switchboard serve` on storeRef as a separate
// process, as an operator would, and returns how long it took to answer
// /readyz and its resident memory once idle. The node does not execute:
// the ingest store's runs are all pending, and a node working through them
// would not be idle.
func measureServe(ctx context.Context, cfg Config, storeRef string) (time.Duration, rss, error) {
	text := nodeConfig(cfg, storeRef, "http://127.0.0.1:9/")
	n, err := startServe(ctx, cfg.Self, text, true, "error", false)
	if err != nil {
		return 0, rss{}, err
	}
	defer n.stop()
	time.Sleep(time.Second) // idle: nothing is sent to it
	return n.ready, processRSS(n.pid), nil
}
