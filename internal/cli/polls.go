package cli

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"text/tabwriter"
	"time"
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
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tSCHEDULE\tNEXT RUN\tLAST OK\tCURSOR\tCURSOR MOVED\tFAILURES\tLAST ERROR")
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
		if !ok {
			fmt.Fprintf(tw, "%s\t%s\tnot run yet\t-\t-\t-\t0\t\n", name, sched)
			continue
		}
		cursor := "-"
		if ps.HasCursor {
			cursor = short(ps.Cursor, 32)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", name, sched, stamp(ps.NextRunAt), stamp(ps.LastOKAt),
			cursor, stamp(ps.CursorMovedAt), ps.Failures, short(ps.LastError, 80))
	}
	return tw.Flush()
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}
