package cli

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/switchboard-dev/switchboard/internal/flow"
	"github.com/switchboard-dev/switchboard/internal/store"
)

// runPolls lists the timed sources with their stored state: what an
// operator looks at when a poll seems stuck.
func runPolls(ctx context.Context, e env, args []string) error {
	fs := flags("polls", e)
	cfgPath := fs.String("config", "switchboard.yaml", "config file")
	if err := parse(fs, args); err != nil {
		return err
	}
	plan, st, err := openStore(ctx, e, *cfgPath)
	if err != nil {
		return err
	}
	defer st.Close()
	pauses, err := pausesBySystem(ctx, st)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tSCHEDULE\tNEXT RUN\tLAST OK\tCURSOR\tCURSOR MOVED\tFAILURES\tPAUSED\tLAST ERROR")
	for _, name := range slices.Sorted(maps.Keys(plan.Sources)) {
		src := plan.Sources[name]
		sched := src.Timed()
		if sched == nil {
			continue
		}
		ps, ok, err := st.GetPollState(ctx, name)
		if err != nil {
			return err
		}
		paused := pausedNote(src, pauses)
		if !ok {
			fmt.Fprintf(tw, "%s\t%s\tnot run yet\t-\t-\t-\t0\t%s\t\n", name, sched, paused)
			continue
		}
		cursor := "-"
		if ps.HasCursor {
			cursor = short(ps.Cursor, 32)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", name, sched, stamp(ps.NextRunAt), stamp(ps.LastOKAt),
			cursor, stamp(ps.CursorMovedAt), ps.Failures, paused, short(ps.LastError, 80))
	}
	return tw.Flush()
}

// pausedNote says which systems src reads are paused and what that does
// to its runs: at an operator's pause they are skipped (no failure
// counted; NEXT RUN is the schedule's), at a credential pause they wait
// for its probe. "-" when none is.
func pausedNote(src *flow.Source, pauses map[string]store.SystemPause) string {
	var notes []string
	for _, sys := range src.Systems() {
		p, ok := pauses[sys]
		switch {
		case !ok:
		case p.Reason == store.OperatorPause:
			notes = append(notes, fmt.Sprintf("%s by an operator since %s: runs skipped", sys, stamp(p.PausedAt)))
		default:
			notes = append(notes, fmt.Sprintf("%s, credentials refused since %s: runs wait for its probe", sys, stamp(p.PausedAt)))
		}
	}
	if len(notes) == 0 {
		return "-"
	}
	return strings.Join(notes, "; ")
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}
