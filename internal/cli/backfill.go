package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/switchboard-dev/switchboard/internal/delivery"
	"github.com/switchboard-dev/switchboard/internal/engine"
	"github.com/switchboard-dev/switchboard/internal/poll"
	"github.com/switchboard-dev/switchboard/internal/store"
)

// runBackfill walks a poll source's history from --since. It keeps its own
// cursor ("backfill:SOURCE"), so an interrupted backfill resumes where it
// stopped when run again without --since, and the scheduled poll's cursor
// is left alone. Records already stored (by the poll or its webhooks) are
// not emitted twice: the same seen-versions and event keys apply. It does
// not start while the source's system is paused, and stops, cursor saved,
// when the system is paused while it runs (see watchPauses).
func runBackfill(ctx context.Context, e env, args []string) error {
	fs := flags("backfill", e)
	cfgPath := fs.String("config", "switchboard.yaml", "config file")
	since := fs.String("since", "", "the cursor to start from, in the source's cursor format (e.g. 2026-01-01T00:00:00Z)")
	quiet := fs.Bool("quiet", false, "no progress bar")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"SOURCE is required: backfill SOURCE --since CURSOR"}
	}
	name := fs.Arg(0)
	plan, st, err := openStore(ctx, e, *cfgPath)
	if err != nil {
		return err
	}
	defer st.Close()
	src, ok := plan.Sources[name]
	if !ok || src.Poll == nil {
		return usageError{fmt.Sprintf("%q is not a poll source of %s", name, *cfgPath)}
	}
	key := "backfill:" + name
	opts := poll.Options{StateKey: key, MaxPages: -1}
	switch {
	case *since != "":
		opts.Cursor = since
	case src.Poll.Cursor != nil:
		prev, ok, err := st.GetPollState(ctx, key)
		if err != nil {
			return err
		}
		if !ok || !prev.HasCursor {
			return usageError{"--since is required (no interrupted backfill of " + name + " to resume)"}
		}
		fmt.Fprintf(e.stderr, "resuming the backfill of %s from %s\n", name, prev.Cursor)
	}
	gates := delivery.NewGates(plan, nil)
	pauses, err := watchPauses(ctx, e, st, *cfgPath, gates, src.Systems()...)
	if err != nil {
		return err
	}
	defer pauses.stop()
	// The events' runs are executed by the serving nodes; this process
	// only stores them (on SQLite beside a running serve, through WAL).
	eng := engine.New(engine.Config{Store: st, Plan: plan, Fingerprints: st, Logger: commandLogger(e)})
	p := poll.New(poll.Config{Plan: plan, Store: st, Engine: eng, Gates: gates, StopFunc: pauses.check})
	bar := progressbar.NewOptions(-1,
		progressbar.OptionSetWriter(e.stderr),
		progressbar.OptionSetDescription("backfill "+name),
		progressbar.OptionShowCount(),
		progressbar.OptionSetItsString("records"),
		progressbar.OptionShowIts(),
		progressbar.OptionSpinnerType(14),
		progressbar.OptionSetVisibility(!*quiet),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
	opts.Progress = func(s poll.Stats) {
		bar.Describe(fmt.Sprintf("backfill %s: page %d, %d new, cursor %s", name, s.Pages, s.Emitted, s.Cursor))
		_ = bar.Set(s.Records)
	}
	started := time.Now()
	stats, err := p.Poll(ctx, src, opts)
	_ = bar.Finish()
	fmt.Fprintf(e.stdout, "backfill %s: %d pages, %d records: %d emitted, %d unchanged, %d already stored; cursor %s; %s\n",
		name, stats.Pages, stats.Records, stats.Emitted, stats.Unchanged, stats.Known, orNone(stats.Cursor), time.Since(started).Round(time.Millisecond))
	if err != nil {
		return fmt.Errorf("stopped: %w (run again without --since to resume from %s)", err, orNone(stats.Cursor))
	}
	return st.FinishPoll(ctx, store.PollRun{Source: key, Now: time.Now(), NextRunAt: time.Now()})
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
