package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/switchboard-dev/switchboard/internal/flow"
	"github.com/switchboard-dev/switchboard/internal/store"
)

// printLineage prints an event's outcome and causal chain, for `events
// show`, when it has one.
func printLineage(ctx context.Context, w io.Writer, st store.Store, eventID string) error {
	l, err := st.GetLineage(ctx, eventID)
	if err != nil {
		return err
	}
	if l.Outcome != store.EventProcessed {
		fmt.Fprintf(w, "outcome  %s (no runs for it)\n", l.Outcome)
	}
	if l.Hop > 0 {
		fmt.Fprintf(w, "hop      %d, caused by run %s\nchain    %s\n", l.Hop, l.ParentRun, l.Chain)
	}
	return nil
}

// printOwnership prints the ownership map and the data-flow graph between
// systems, for `check`.
func printOwnership(w io.Writer, plan *flow.Plan) {
	if m := plan.OwnershipMap(); len(m) > 0 {
		o := plan.Ownership
		suppress := "suppressed"
		if !o.SuppressEchoes {
			suppress = "counted, not suppressed"
		}
		fmt.Fprintf(w, "\nentities (%d; echoes within %s %s, at most %d hops):\n", len(m), o.EchoWindow, suppress, o.MaxHops)
		_ = m.Render(w)
	}
	if g := plan.SystemGraph(); len(g.Edges) > 0 {
		fmt.Fprintf(w, "\ndata flow (events of → writes in; --format dot or mermaid to draw it):\n")
		_ = g.Render(w, "text")
	}
}
