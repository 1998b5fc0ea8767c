// Package ownership draws the systems-of-record model for people: the
// ownership map (each entity's owner, mirrors and field owners) and the
// data-flow graph between systems with its cycles, as text, Graphviz dot
// or Mermaid. It only renders; the flow package compiles and checks.
package ownership

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// Formats accepted by Graph.Render.
const (
	FormatText    = "text"
	FormatDot     = "dot"
	FormatMermaid = "mermaid"
)

// Edge is data flowing from one node to another: events of From start a
// flow whose step writes (or sends) to To.
type Edge struct {
	// From is a system, or "source NAME" for a source that names no system.
	From string
	To   string
	// Flow and Step name the step that writes.
	Flow, Step string
	// Entity is what the step writes ("" when it writes no entity).
	Entity string
}

// Label is the edge's caption: flow.step and the entity written.
func (e Edge) Label() string {
	l := e.Flow + "." + e.Step
	if e.Entity != "" {
		l += " (" + e.Entity + ")"
	}
	return l
}

// Graph is the data-flow graph between systems.
type Graph struct {
	Edges []Edge
}

// Nodes returns every node, sorted.
func (g *Graph) Nodes() []string {
	set := map[string]bool{}
	for _, e := range g.Edges {
		set[e.From], set[e.To] = true, true
	}
	return slices.Sorted(maps.Keys(set))
}

// Cycles returns every elementary cycle of the graph, each as its nodes in
// order starting from its smallest, the cycles sorted. A cycle means that
// a change in its first system can come back to it through our writes.
func (g *Graph) Cycles() [][]string {
	next := map[string][]string{}
	for _, e := range g.Edges {
		if !slices.Contains(next[e.From], e.To) {
			next[e.From] = append(next[e.From], e.To)
		}
	}
	for k := range next {
		slices.Sort(next[k])
	}
	var out [][]string
	// Each cycle is found once, from its smallest node, by walking only
	// through larger nodes (the graphs are small: a handful of systems).
	for _, start := range g.Nodes() {
		var path []string
		onPath := map[string]bool{}
		var walk func(n string)
		walk = func(n string) {
			path = append(path, n)
			onPath[n] = true
			for _, m := range next[n] {
				switch {
				case m == start:
					out = append(out, slices.Clone(path))
				case m > start && !onPath[m]:
					walk(m)
				}
			}
			path = path[:len(path)-1]
			onPath[n] = false
		}
		walk(start)
	}
	slices.SortFunc(out, func(a, b []string) int {
		return cmp.Or(cmp.Compare(len(a), len(b)), slices.Compare(a, b))
	})
	return out
}

// CycleEdges returns, for each hop of cycle, the edges that make it.
func (g *Graph) CycleEdges(cycle []string) [][]Edge {
	out := make([][]Edge, len(cycle))
	for i, from := range cycle {
		to := cycle[(i+1)%len(cycle)]
		for _, e := range g.Edges {
			if e.From == from && e.To == to {
				out[i] = append(out[i], e)
			}
		}
	}
	return out
}

// DescribeCycle explains a cycle in one line: which steps carry each hop.
func (g *Graph) DescribeCycle(cycle []string) string {
	var hops []string
	for i, edges := range g.CycleEdges(cycle) {
		var labels []string
		for _, e := range edges {
			labels = append(labels, e.Label())
		}
		hops = append(hops, fmt.Sprintf("%s's events lead to writes in %s (%s)", cycle[i], cycle[(i+1)%len(cycle)], strings.Join(labels, ", ")))
	}
	return strings.Join(append(slices.Clone(cycle), cycle[0]), " → ") + ": " + strings.Join(hops, ", ")
}

// Render writes the graph in format (FormatText, FormatDot or
// FormatMermaid).
func (g *Graph) Render(w io.Writer, format string) error {
	switch format {
	case FormatText, "":
		return g.text(w)
	case FormatDot:
		return g.dot(w)
	case FormatMermaid:
		return g.mermaid(w)
	}
	return fmt.Errorf("unknown format %q (want %s, %s or %s)", format, FormatText, FormatDot, FormatMermaid)
}

func (g *Graph) text(w io.Writer) error {
	var b strings.Builder
	for _, e := range g.sortedEdges() {
		fmt.Fprintf(&b, "  %s → %s  %s\n", e.From, e.To, e.Label())
	}
	for _, c := range g.Cycles() {
		fmt.Fprintf(&b, "  CYCLE %s\n", strings.Join(append(slices.Clone(c), c[0]), " → "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func (g *Graph) dot(w io.Writer) error {
	var b strings.Builder
	b.WriteString("digraph switchboard {\n  rankdir=LR;\n  node [shape=box];\n")
	inCycle := g.cycleEdgeSet()
	for _, n := range g.Nodes() {
		shape := ""
		if strings.HasPrefix(n, "source ") {
			shape = " shape=ellipse"
		}
		fmt.Fprintf(&b, "  %q [label=%q%s];\n", n, n, shape)
	}
	for _, e := range g.sortedEdges() {
		attr := ""
		if inCycle[[2]string{e.From, e.To}] {
			attr = " color=red"
		}
		fmt.Fprintf(&b, "  %q -> %q [label=%q%s];\n", e.From, e.To, e.Label(), attr)
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func (g *Graph) mermaid(w io.Writer) error {
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	ids := map[string]string{}
	for i, n := range g.Nodes() {
		ids[n] = fmt.Sprintf("n%d", i)
		open, closing := "[", "]"
		if strings.HasPrefix(n, "source ") {
			open, closing = "([", "])"
		}
		fmt.Fprintf(&b, "  %s%s\"%s\"%s\n", ids[n], open, mermaidText(n), closing)
	}
	inCycle := g.cycleEdgeSet()
	var red []string
	for i, e := range g.sortedEdges() {
		fmt.Fprintf(&b, "  %s -->|\"%s\"| %s\n", ids[e.From], mermaidText(e.Label()), ids[e.To])
		if inCycle[[2]string{e.From, e.To}] {
			red = append(red, fmt.Sprint(i))
		}
	}
	if len(red) > 0 {
		fmt.Fprintf(&b, "  linkStyle %s stroke:red\n", strings.Join(red, ","))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// mermaidText escapes a label for a quoted Mermaid string.
func mermaidText(s string) string { return strings.ReplaceAll(s, `"`, "#quot;") }

func (g *Graph) sortedEdges() []Edge {
	out := slices.Clone(g.Edges)
	slices.SortFunc(out, func(a, b Edge) int {
		return cmp.Or(cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To), cmp.Compare(a.Flow, b.Flow), cmp.Compare(a.Step, b.Step))
	})
	return out
}

func (g *Graph) cycleEdgeSet() map[[2]string]bool {
	set := map[[2]string]bool{}
	for _, c := range g.Cycles() {
		for i, from := range c {
			set[[2]string{from, c[(i+1)%len(c)]}] = true
		}
	}
	return set
}
