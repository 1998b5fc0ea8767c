package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/switchboard-dev/switchboard/internal/app"
	"github.com/switchboard-dev/switchboard/internal/flow"
	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/transform"
)

// openStore loads the config and opens its store for operator commands.
// These commands may run beside `serve`: SQLite's WAL lets them read and
// write while the server runs, and they never migrate a PostgreSQL schema
// (that is `migrate`'s job). The caller closes the store.
func openStore(ctx context.Context, e env, cfgPath string) (*flow.Plan, store.Store, error) {
	plan, err := loadPlan(e, cfgPath)
	if err != nil {
		return nil, nil, err
	}
	st, err := app.OpenStore(ctx, plan, false)
	if err != nil {
		return nil, nil, err
	}
	return plan, st, nil
}

// parseWithID parses a command that takes one ID argument and --config.
func parseWithID(e env, name, idName string, args []string) (cfgPath, id string, err error) {
	fs := flags(name, e)
	cfg := fs.String("config", "switchboard.yaml", "config file")
	if err := parse(fs, args); err != nil {
		return "", "", err
	}
	if fs.NArg() != 1 {
		return "", "", usageError{idName + " is required"}
	}
	return *cfg, fs.Arg(0), nil
}

func runEvents(ctx context.Context, e env, args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return usageError{"want: events list|show"}
	}
	switch args[0] {
	case "list":
		return eventsList(ctx, e, args[1:])
	case "show":
		return eventsShow(ctx, e, args[1:])
	}
	return usageError{fmt.Sprintf("unknown subcommand %q (want list or show)", args[0])}
}

func eventsList(ctx context.Context, e env, args []string) error {
	fs := flags("events list", e)
	cfgPath := fs.String("config", "switchboard.yaml", "config file")
	source := fs.String("source", "", "only events from this source")
	state := fs.String("state", "", "only events with a run in this state (pending, running, retrying, succeeded, dead)")
	limit := fs.Int("limit", 50, "how many events")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *state != "" && !store.RunState(*state).Valid() {
		return usageError{fmt.Sprintf("--state %q: want pending, running, retrying, succeeded or dead", *state)}
	}
	_, st, err := openStore(ctx, e, *cfgPath)
	if err != nil {
		return err
	}
	defer st.Close()
	evs, err := st.ListEvents(ctx, store.ListEventsParams{Source: *source, State: store.RunState(*state), Limit: *limit})
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EVENT\tSOURCE\tRECEIVED\tKEY\tRUNS")
	for _, ev := range evs {
		runs, err := st.ListRuns(ctx, store.ListRunsParams{EventID: ev.ID})
		if err != nil {
			return err
		}
		var states []string
		for _, r := range runs {
			states = append(states, r.Flow+":"+string(r.State))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ev.ID, ev.Source, ev.ReceivedAt.Format(time.RFC3339), short(ev.Key, 40), strings.Join(states, " "))
	}
	return tw.Flush()
}

func eventsShow(ctx context.Context, e env, args []string) error {
	cfgPath, id, err := parseWithID(e, "events show", "EVENT_ID", args)
	if err != nil {
		return err
	}
	_, st, err := openStore(ctx, e, cfgPath)
	if err != nil {
		return err
	}
	defer st.Close()
	ev, err := st.GetEvent(ctx, id)
	if err != nil {
		return err
	}
	w := e.stdout
	fmt.Fprintf(w, "event    %s\nsource   %s\nkey      %s\nreceived %s\n", ev.ID, ev.Source, ev.Key,
		ev.ReceivedAt.Format(time.RFC3339Nano))
	// traceparent is version-traceid-spanid-flags: the trace id is what
	// a tracing UI searches by.
	if parts := strings.Split(ev.TraceParent, "-"); len(parts) == 4 {
		fmt.Fprintf(w, "trace    %s\n", parts[1])
	}
	fmt.Fprintf(w, "payload  %s\n", ev.Payload)
	if err := printLineage(ctx, w, st, ev.ID); err != nil {
		return err
	}
	runs, err := st.ListRuns(ctx, store.ListRunsParams{EventID: ev.ID})
	if err != nil {
		return err
	}
	for i := len(runs) - 1; i >= 0; i-- {
		r := runs[i]
		fmt.Fprintf(w, "\nrun %s  flow %s  generation %d  state %s  step %s\n", r.ID, r.Flow, r.Generation, r.State, r.StepID)
		if r.LastError != "" {
			fmt.Fprintf(w, "  last error: %s\n", r.LastError)
		}
		attempts, err := st.ListAttempts(ctx, r.ID)
		if err != nil {
			return err
		}
		for _, a := range attempts {
			line := fmt.Sprintf("  %s  %s #%d  %s", a.StartedAt.Format("15:04:05.000"), a.StepID, a.Number, a.Outcome)
			if a.Status != 0 {
				line += fmt.Sprintf("  HTTP %d", a.Status)
			}
			line += fmt.Sprintf("  %s", a.Duration.Round(time.Millisecond))
			if a.Error != "" {
				line += "  " + short(a.Error, 200)
			}
			fmt.Fprintln(w, line)
		}
	}
	return nil
}

func runDLQ(ctx context.Context, e env, args []string) error {
	if len(args) == 0 || args[0] != "list" {
		return usageError{"want: dlq list --config FILE"}
	}
	fs := flags("dlq list", e)
	cfgPath := fs.String("config", "switchboard.yaml", "config file")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	_, st, err := openStore(ctx, e, *cfgPath)
	if err != nil {
		return err
	}
	defer st.Close()
	runs, err := st.ListRuns(ctx, store.ListRunsParams{State: store.RunDead, Limit: dlqLimit})
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tEVENT\tSOURCE\tFLOW\tSTEP\tDIED\tLAST ERROR")
	for _, r := range runs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.EventID, r.Source, r.Flow, r.StepID,
			r.UpdatedAt.Format(time.RFC3339), short(r.LastError, 120))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(runs) == dlqLimit {
		fmt.Fprintf(e.stderr, "the newest %d dead runs (there may be more)\n", len(runs))
		return nil
	}
	fmt.Fprintf(e.stderr, "%d dead run(s)\n", len(runs))
	return nil
}

func runReplay(ctx context.Context, e env, args []string) error {
	fs := flags("replay", e)
	cfgPath := fs.String("config", "switchboard.yaml", "config file")
	flowName := fs.String("flow", "", "replay only this flow (default: every flow of the event's source)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"EVENT_ID is required"}
	}
	plan, st, err := openStore(ctx, e, *cfgPath)
	if err != nil {
		return err
	}
	defer st.Close()
	ev, err := st.GetEvent(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	src, ok := plan.Sources[ev.Source]
	if !ok {
		return fmt.Errorf("event %s came from source %q, which the config no longer defines", ev.ID, ev.Source)
	}
	now := time.Now()
	var payload any
	if *flowName == "" {
		l, err := st.GetLineage(ctx, ev.ID)
		if err != nil {
			return err
		}
		if l.Outcome == store.EventEcho {
			// Its flows would send our own write back where it came from.
			return fmt.Errorf("event %s is the echo of our own write (run %s): no flow ran for it; name one with --flow to replay it anyway", ev.ID, l.ParentRun)
		}
		if payload, err = transform.Decode(ev.Payload); err != nil {
			return fmt.Errorf("event %s: decode stored payload: %w", ev.ID, err)
		}
	}
	var runs []store.NewRun
	for _, f := range src.Flows {
		if f.Conflict != nil && *flowName == "" {
			// The engine never ran it: it would write a mirror's change
			// over the owner. Only an operator who names it replays it.
			fmt.Fprintf(e.stderr, "not replaying flow %s: %s (name it with --flow to replay it anyway)\n", f.Name, f.Conflict.Reason())
			continue
		}
		if f.When != nil && *flowName == "" {
			// The flow is for other events (the executor does not look at
			// the condition again): replaying it would do to this event
			// what was never meant for it. A condition that fails to
			// evaluate keeps its run, as in the engine: it dies with the
			// error.
			v, err := f.When.Eval(ctx, payload)
			if transform.CutOff(ctx, err) {
				// Cut off (jq's time limit, an interrupt): the answer is
				// unknown, and a run kept for it would go ahead whatever
				// the condition says. Nothing is queued.
				return fmt.Errorf("flow %s: when: %w; nothing replayed: try again, or name the flow with --flow", f.Name, err)
			}
			if err == nil && v != true {
				fmt.Fprintf(e.stderr, "not replaying flow %s: its when: is false for this event (name it with --flow to replay it anyway)\n", f.Name)
				continue
			}
		}
		if *flowName == "" || f.Name == *flowName {
			runs = append(runs, store.NewRun{ID: store.NewID("run_", now), Flow: f.Name, StepID: f.Steps[0].ID})
		}
	}
	if len(runs) == 0 {
		if *flowName != "" {
			return fmt.Errorf("no flow to replay: source %q has no flow named %s", ev.Source, *flowName)
		}
		if len(src.Flows) > 0 {
			return fmt.Errorf("no flow to replay: none of source %q's flows would run for this event (name one with --flow to replay it anyway)", ev.Source)
		}
		return fmt.Errorf("no flow to replay: source %q has no flow", ev.Source)
	}
	created, err := st.ReplayEvent(ctx, store.ReplayParams{EventID: ev.ID, Runs: runs, Now: now})
	if err != nil {
		return err
	}
	for _, r := range created {
		fmt.Fprintf(e.stdout, "queued run %s (flow %s, generation %d)\n", r.ID, r.Flow, r.Generation)
	}
	return nil
}

func runRetry(ctx context.Context, e env, args []string) error {
	cfgPath, id, err := parseWithID(e, "retry", "RUN_ID", args)
	if err != nil {
		return err
	}
	_, st, err := openStore(ctx, e, cfgPath)
	if err != nil {
		return err
	}
	defer st.Close()
	r, err := st.RetryRun(ctx, store.RetryParams{RunID: id, Now: time.Now()})
	if errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("%w; only dead runs can be retried", err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "run %s queued again at step %s\n", r.ID, r.StepID)
	return nil
}

// dlqLimit is how many dead runs `dlq list` shows.
const dlqLimit = 1000

func short(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) <= n {
		return s
	}
	cut := n - 1
	for cut > 0 && !utf8.RuneStart(s[cut]) { // never split a character
		cut--
	}
	return s[:cut] + "…"
}
