package flow

import (
	"maps"
	"slices"

	"github.com/switchboard-dev/switchboard/internal/ownership"
)

// OwnershipMap returns the ownership map for people (`check`).
func (p *Plan) OwnershipMap() ownership.Map {
	var m ownership.Map
	for _, name := range slices.Sorted(maps.Keys(p.Ownership.Entities)) {
		e := p.Ownership.Entities[name]
		m = append(m, ownership.Entity{
			Name: e.Name, Owner: e.Owner, Mirrors: e.Mirrors, Fields: e.Fields, OnConflict: e.OnConflict, Declared: e.Declared,
		})
	}
	return m
}

// SystemGraph returns the data-flow graph between systems: an edge from
// the system a flow's events come from (or its source, when the source
// names no system) to each system a step of the flow calls.
func (p *Plan) SystemGraph() *ownership.Graph {
	g := &ownership.Graph{}
	for _, name := range slices.Sorted(maps.Keys(p.Flows)) {
		f := p.Flows[name]
		from := "source " + f.Source
		if f.Source == "" {
			from = "conflicts"
		}
		if src := p.Sources[f.Source]; src != nil && src.Origin != nil && src.Origin.System != "" {
			from = src.Origin.System
		}
		for _, st := range f.Steps {
			e := ownership.Edge{From: from, To: st.System, Flow: name, Step: st.ID}
			if st.Write != nil {
				e.Entity = st.Write.Entity
			}
			g.Edges = append(g.Edges, e)
		}
	}
	return g
}
