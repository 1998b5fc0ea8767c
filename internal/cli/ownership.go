package cli

import (
	"fmt"
	"io"

	"github.com/switchboard-dev/switchboard/internal/flow"
)

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
