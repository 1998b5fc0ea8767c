package cli

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/switchboard-dev/switchboard/internal/store"
)

// runSystems lists, pauses and resumes systems. A system is paused by the
// executor when it refuses our credentials (401/403); its runs wait
// instead of failing until a probe succeeds or an operator resumes it.
func runSystems(ctx context.Context, e env, args []string) error {
	if len(args) == 0 {
		return usageError{"want: systems list | systems pause NAME | systems resume NAME"}
	}
	sub := args[0]
	fs := flags("systems "+sub, e)
	cfgPath := fs.String("config", "switchboard.yaml", "config file")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	plan, st, err := openStore(ctx, e, *cfgPath)
	if err != nil {
		return err
	}
	defer st.Close()
	switch sub {
	case "list":
		paused, err := pausesBySystem(ctx, st)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SYSTEM\tKIND\tSTATE\tSINCE\tREASON")
		for _, name := range slices.Sorted(maps.Keys(plan.Systems)) {
			p, ok := paused[name]
			if !ok {
				fmt.Fprintf(tw, "%s\t%s\tactive\t\t\n", name, plan.Systems[name].Kind)
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\tPAUSED\t%s\t%s\n", name, plan.Systems[name].Kind, p.PausedAt.Format(time.RFC3339), p.Reason)
		}
		return tw.Flush()
	case "pause", "resume":
		if fs.NArg() != 1 {
			return usageError{"NAME is required"}
		}
		name := fs.Arg(0)
		if _, ok := plan.Systems[name]; !ok {
			return fmt.Errorf("no system %q in %s (defined: %v)", name, *cfgPath, slices.Sorted(maps.Keys(plan.Systems)))
		}
		if sub == "pause" {
			if _, err := st.PauseSystem(ctx, store.PauseParams{System: name, Reason: store.OperatorPause, Now: time.Now()}); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "system %s paused: its runs wait until `switchboard systems resume %s` (nodes apply it within seconds)\n", name, name)
			return nil
		}
		ok, err := st.ResumeSystem(ctx, name)
		if err != nil {
			return err
		}
		if !ok {
			fmt.Fprintf(e.stdout, "system %s was not paused\n", name)
			return nil
		}
		n, err := st.WakeHeld(ctx, name, time.Now())
		if err != nil {
			return fmt.Errorf("system %s resumed, but its held runs were not woken (they go at their next check): %w", name, err)
		}
		fmt.Fprintf(e.stdout, "system %s resumed: %d held run(s) go now\n", name, n)
		return nil
	}
	return usageError{fmt.Sprintf("unknown subcommand %q (want list, pause or resume)", sub)}
}

// pausesBySystem reads the store's paused systems, by name.
func pausesBySystem(ctx context.Context, st store.Store) (map[string]store.SystemPause, error) {
	list, err := st.ListPauses(ctx)
	if err != nil {
		return nil, fmt.Errorf("read paused systems: %w", err)
	}
	pauses := make(map[string]store.SystemPause, len(list))
	for _, p := range list {
		pauses[p.System] = p
	}
	return pauses, nil
}
