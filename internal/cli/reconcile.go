package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/switchboard-dev/switchboard/internal/app"
	"github.com/switchboard-dev/switchboard/internal/delivery"
	"github.com/switchboard-dev/switchboard/internal/engine"
	"github.com/switchboard-dev/switchboard/internal/flow"
	"github.com/switchboard-dev/switchboard/internal/poll"
	"github.com/switchboard-dev/switchboard/internal/store"
)

// cellWidth bounds the KEY, OWNER and MIRROR cells of the difference table.
const cellWidth = 40

// runReconcile runs one reconciliation of a reconcile source now and
// prints its differences. With --dry-run it only reads the two systems
// (and the store's paused systems); without, it emits the events as a
// scheduled run would, named "manual-TIME", for the serving nodes to run
// their flows. It does not start while either system is paused, and stops
// when one is paused while it runs (see watchPauses).
func runReconcile(ctx context.Context, e env, args []string) error {
	fs := flags("reconcile", e)
	cfgPath := fs.String("config", "switchboard.yaml", "config file")
	dry := fs.Bool("dry-run", false, "print the differences; emit nothing")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"SOURCE is required: reconcile SOURCE [--dry-run] --config FILE"}
	}
	name := fs.Arg(0)
	plan, err := loadPlan(e, *cfgPath)
	if err != nil {
		return err
	}
	src, ok := plan.Sources[name]
	if !ok || src.Reconcile == nil {
		return usageError{fmt.Sprintf("%q is not a reconcile source of %s", name, *cfgPath)}
	}
	fmt.Fprintf(e.stderr, "reconciling %s: %s\n", name, describeReconcile(src.Reconcile))
	cfg := poll.Config{Plan: plan, Gates: delivery.NewGates(plan, nil)}
	// A dry run reads the store's paused systems too (a paused system is
	// not called), but it writes nothing: it does not create a store that
	// is not there, where no system can be paused.
	var st store.Store
	if !*dry || plan.StorePath == "" || fileExists(plan.StorePath) {
		if st, err = app.OpenStore(ctx, plan, false); err != nil {
			return err
		}
		defer st.Close()
		pauses, err := watchPauses(ctx, e, st, *cfgPath, cfg.Gates, src.Systems()...)
		if err != nil {
			return err
		}
		defer pauses.stop()
		cfg.StopFunc = pauses.check
	}
	if *dry {
		rep, err := poll.New(cfg).Reconcile(ctx, src, poll.ReconcileOptions{DryRun: true})
		if errors.As(err, new(*stoppedByPause)) {
			return fmt.Errorf("stopped: %w", err)
		}
		if err != nil {
			return err
		}
		printReport(e.stdout, src, rep)
		fmt.Fprintln(e.stdout, "dry run: nothing emitted")
		return nil
	}
	// The events' runs are executed by the serving nodes; this process
	// only stores them (on SQLite beside a running serve, through WAL).
	eng := engine.New(engine.Config{Store: st, Plan: plan, Fingerprints: st, Logger: commandLogger(e)})
	engCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { defer close(done); _ = eng.Run(engCtx) }()
	defer func() { stop(); <-done }()
	cfg.Store, cfg.Engine = st, eng
	rep, err := poll.New(cfg).Reconcile(ctx, src, poll.ReconcileOptions{})
	if !rep.FinishedAt.IsZero() { // both sides were read and compared
		printReport(e.stdout, src, rep)
	}
	if errors.As(err, new(*stoppedByPause)) {
		return fmt.Errorf("stopped, nothing emitted: %w", err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "run %s: %d events emitted\n", rep.Run, rep.Emitted)
	return nil
}

// fileExists reports whether path names a file (or anything else).
func fileExists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, os.ErrNotExist)
}

// printReport writes the differences as a table, one row per differing
// field, and a summary line.
func printReport(w io.Writer, src *flow.Source, rep poll.Report) {
	if len(rep.Differences) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KIND\tKEY\tFIELD\tOWNER\tMIRROR")
		for _, d := range rep.Differences {
			key := cell(d.Key)
			switch d.Type {
			case poll.FieldMismatch:
				for _, f := range d.Fields {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.Type, key, f, value(d.OwnerValues[f]), value(d.MirrorValues[f]))
				}
			case poll.MissingInMirror:
				fmt.Fprintf(tw, "%s\t%s\t-\t%s\t-\n", d.Type, key, value(d.OwnerValues))
			case poll.MissingInOwner:
				fmt.Fprintf(tw, "%s\t%s\t-\t-\t%s\n", d.Type, key, value(d.MirrorValues))
			case poll.DuplicateKey:
				n := fmt.Sprintf("%d records", len(d.Records))
				if d.Side == "owner" {
					fmt.Fprintf(tw, "%s\t%s\t-\t%s\t-\n", d.Type, key, n)
				} else {
					fmt.Fprintf(tw, "%s\t%s\t-\t-\t%s\n", d.Type, key, n)
				}
			}
		}
		_ = tw.Flush()
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "%s: owner %s %d records, mirror %s %d records", src.Name, src.Reconcile.Owner.System, rep.OwnerCount, src.Reconcile.Mirror.System, rep.MirrorCount)
	if rep.OwnerUnkeyed+rep.MirrorUnkeyed > 0 {
		fmt.Fprintf(w, " (without a key, not compared: %d owner, %d mirror)", rep.OwnerUnkeyed, rep.MirrorUnkeyed)
	}
	fmt.Fprintf(w, "; %d matched", rep.Matched)
	for _, t := range poll.DifferenceTypes {
		fmt.Fprintf(w, ", %d %s", rep.Count(t), t)
	}
	fmt.Fprintf(w, "; %s\n", rep.FinishedAt.Sub(rep.StartedAt).Round(time.Millisecond))
}

// value renders a jq value as compact JSON (strings quoted, so "5" and 5
// are told apart), cut to cellWidth.
func value(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return cell(fmt.Sprint(v))
	}
	return cell(string(b))
}

// cell keeps a table cell on one line and within cellWidth.
func cell(s string) string {
	return short(strings.NewReplacer("\t", " ", "\r", " ").Replace(s), cellWidth)
}

// describeReconcile says in one line what a reconcile source compares:
// for this command and for `check`.
func describeReconcile(r *flow.Reconcile) string {
	fields := make([]string, len(r.Fields))
	for i, f := range r.Fields {
		fields[i] = f.Name
	}
	return fmt.Sprintf("reconcile %s GET %s (key %s) with %s GET %s (key %s) %s, fields: %s",
		r.Owner.System, r.Owner.Path, r.Owner.Key, r.Mirror.System, r.Mirror.Path, r.Mirror.Key, r.Schedule, strings.Join(fields, ", "))
}
