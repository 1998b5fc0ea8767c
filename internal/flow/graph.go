package flow

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/switchboard-dev/switchboard/internal/ownership"
)

// OwnershipMap returns the ownership map for people (`check`).
func (p *Plan) OwnershipMap() ownership.Map {
	var m ownership.Map
	for _, name := range slices.Sorted(maps.Keys(p.Ownership.Entities)) {
		m = append(m, *p.Ownership.Entities[name])
	}
	return m
}

// SystemGraph returns the data-flow graph between systems: an edge from
// the system a flow's events come from (or its source, when the source
// names no system) to each system a step of the flow sends data to.
//
// A step that only reads (Step.Reads: a GET lookup) draws no edge: data
// flows from its system, not to it, and a lookup in the system whose
// event started the flow is no cycle. Every other step does, entity write
// or not: a request without writes: may still change something whose
// events come back (and neither echo suppression nor the hop limit sees
// such a write), and a notification (an SMS, a chat message) only makes
// a cycle if a source takes events from that same system.
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
			if st.Reads && st.Write == nil {
				continue
			}
			e := ownership.Edge{From: from, To: st.System, Flow: name, Step: st.ID}
			if st.Write != nil {
				e.Entity = st.Write.Entity
			}
			g.Edges = append(g.Edges, e)
		}
	}
	return g
}

// readsOnly reports whether a step calling action of a system of kind with
// the inputs with only reads: an http request whose method is GET or HEAD,
// given as a constant or left to its default (GET without a body). A
// method computed by a jq expression may write.
func readsOnly(kind, action string, with *yaml.Node) bool {
	if kind != "http" || action != "request" {
		return false
	}
	method, body := "", false
	if with != nil && with.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(with.Content); i += 2 {
			switch v := with.Content[i+1]; with.Content[i].Value {
			case "method":
				m, err := strconv.Unquote(strings.TrimSpace(v.Value))
				if err != nil || v.Kind != yaml.ScalarNode {
					return false // computed: it may be a write
				}
				method = strings.ToUpper(m)
			case "body":
				body = v.ShortTag() != "!!null"
			}
		}
	}
	switch method {
	case "":
		return !body // the connector's default: POST with a body, else GET
	case "GET", "HEAD":
		return true
	}
	return false
}
