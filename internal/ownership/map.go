package ownership

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// Entity is one row of the ownership map: an entity type and its systems.
type Entity struct {
	Name  string
	Owner string
	// Mirrors are the systems that keep copies, sorted.
	Mirrors []string
	// Fields maps a field to its owner where that is not Owner.
	Fields map[string]string
	// OnConflict is "drop" or the name of the flow that proposes a
	// mirror's change to the owner.
	OnConflict string
	// Declared reports whether the config declares the entity; an
	// undeclared one is written to a single system, taken as its owner.
	Declared bool
}

// OwnerOf returns the system that owns field f.
func (e *Entity) OwnerOf(f string) string {
	if o, ok := e.Fields[f]; ok {
		return o
	}
	return e.Owner
}

// Holds reports whether system keeps the entity: as its owner, a mirror,
// or the owner of some of its fields.
func (e *Entity) Holds(system string) bool {
	return system == e.Owner || slices.Contains(e.Mirrors, system) || slices.Contains(slices.Collect(maps.Values(e.Fields)), system)
}

// Map is the ownership map: every entity, by name.
type Map []Entity

// Render writes the map as text, one entity per line.
func (m Map) Render(w io.Writer) error {
	var b strings.Builder
	rows := slices.Clone(m)
	slices.SortFunc(rows, func(a, b Entity) int { return strings.Compare(a.Name, b.Name) })
	for _, e := range rows {
		fmt.Fprintf(&b, "  %-16s owner %s", e.Name, e.Owner)
		if len(e.Mirrors) > 0 {
			fmt.Fprintf(&b, ", mirrors %s", strings.Join(e.Mirrors, ", "))
		}
		for _, f := range slices.Sorted(maps.Keys(e.Fields)) {
			fmt.Fprintf(&b, ", %s owned by %s", f, e.Fields[f])
		}
		switch {
		case !e.Declared:
			b.WriteString(" (not declared: the only system it is written to)")
		case e.OnConflict != "" && e.OnConflict != "drop":
			fmt.Fprintf(&b, "; conflicts go to flow %s", e.OnConflict)
		default:
			b.WriteString("; conflicts are dropped")
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
