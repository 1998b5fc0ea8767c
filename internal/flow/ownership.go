package flow

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/switchboard-dev/switchboard/internal/config"
	"github.com/switchboard-dev/switchboard/internal/ownership"
	"github.com/switchboard-dev/switchboard/internal/transform"
)

// Defaults of the loops: section.
const (
	DefaultEchoWindow = 10 * time.Minute
	DefaultMaxHops    = 5
)

// OnConflictDrop is the default conflict policy: the change is dropped
// with a logged reason.
const OnConflictDrop = "drop"

// Ownership is the compiled systems-of-record model: who owns each entity,
// which systems mirror it, and how echoes and loops are stopped.
type Ownership struct {
	// Entities are the entities by name: those entities: declares, and
	// those only steps write (Declared false; their one system is taken
	// as the owner).
	Entities map[string]*Entity
	// EchoWindow is how long a write's fingerprint matches its echo.
	EchoWindow time.Duration
	// SuppressEchoes reports whether echoes start no runs (else they are
	// only counted as hops).
	SuppressEchoes bool
	// MaxHops is the longest causal chain of writes a run may extend.
	MaxHops int
}

// Entity is one entity type and its systems (the ownership map's row).
type Entity = ownership.Entity

// Origin says where a source's events come from and what they are about.
type Origin struct {
	// System is the system the events come from ("" if not said).
	System string
	// Entity is the entity the events are about ("" if not said).
	Entity string
	// RecordID gives the record's id from the payload; nil if not said.
	RecordID *transform.Expr
	// Record gives the record's fields from the payload; nil means the
	// payload itself.
	Record *transform.Expr
}

// Write is what a step writes: an entity in the step's system.
type Write struct {
	Entity string
	// RecordID gives the written record's id; nil if not said. It sees
	// the payload as ., $steps (with this step's output once the call
	// answered) and $event.
	RecordID *transform.Expr
	// Fields builds the written fields; nil means the action's inputs (an
	// http request's body when it is an object).
	Fields *Template
	// FieldNames are the written fields' names when the config shows them;
	// nil when they are only known at run time.
	FieldNames []string
	// Echoable reports whether a source receives events about Entity from
	// the step's system: only then is the write fingerprinted.
	Echoable bool
	// generic reports that the action declares no entity of its own.
	generic bool
}

// WrittenFields returns the fields a step wrote, given its evaluated
// inputs, for the write's fingerprint.
func (w *Write) WrittenFields(ctx context.Context, input map[string]any, payload any, steps, event map[string]any) (map[string]any, error) {
	if w.Fields != nil {
		v, err := w.Fields.Eval(ctx, payload, steps, event)
		if err != nil {
			return nil, err
		}
		m, _ := v.(map[string]any)
		return m, nil
	}
	if body, ok := input["body"].(map[string]any); ok && w.generic {
		return body, nil
	}
	return input, nil
}

// Conflict describes a flow that writes a mirror's change back over fields
// the owner holds.
type Conflict struct {
	Entity string
	// Step is the conflicting step's id.
	Step string
	// Owner is the system the step writes, which owns Fields.
	Owner string
	// From is the mirror the flow's events come from.
	From string
	// Fields are the owner-held fields written; nil means the whole entity.
	Fields []string
}

// Reason explains the conflict in one sentence, for logs and `check`.
func (c *Conflict) Reason() string {
	what := c.Entity
	if len(c.Fields) > 0 {
		what = c.Entity + "." + strings.Join(c.Fields, ", ")
	}
	return fmt.Sprintf("step %s would write %s to %s, its owner, from a change made in %s, a mirror", c.Step, what, c.Owner, c.From)
}

// conflictFlow reports whether an entity's on_conflict names flow.
func (cp *compiler) conflictFlow(flow string) bool {
	for _, e := range cp.c.Entities {
		if e.OnConflict == flow {
			return true
		}
	}
	return false
}

// ownership compiles entities:, loops:, the sources' origins and the
// steps' writes, and checks that every entity has one owner and is written
// only where it is kept.
func (cp *compiler) ownership(p *Plan) {
	o := Ownership{Entities: map[string]*Entity{}, EchoWindow: DefaultEchoWindow, SuppressEchoes: true, MaxHops: DefaultMaxHops}
	if l := cp.c.Loops; l != nil {
		cp.positive("loops.echo_window", l.EchoWindow)
		o.EchoWindow = defaultDur(l.EchoWindow, DefaultEchoWindow)
		if l.SuppressEchoes != nil {
			o.SuppressEchoes = *l.SuppressEchoes
		}
		if l.MaxHops < 0 {
			cp.errorf(cp.node("loops.max_hops"), "loops.max_hops", "must be positive")
		}
		o.MaxHops = defaultInt(l.MaxHops, DefaultMaxHops)
	}
	for _, name := range slices.Sorted(maps.Keys(cp.c.Entities)) {
		if e := cp.entity(name, cp.c.Entities[name]); e != nil {
			o.Entities[name] = e
		}
	}
	for _, name := range slices.Sorted(maps.Keys(p.Sources)) {
		p.Sources[name].Origin = cp.origin(name, cp.c.Sources[name], o.Entities)
		cp.reconcileSides(name, p.Sources[name], cp.c.Sources[name].Entity, o.Entities)
	}
	// Entities no entities: entry names, by the systems steps write them to.
	undeclared := map[string][]string{}
	firstWrite := map[string]string{} // entity -> path of its first step
	for _, name := range slices.Sorted(maps.Keys(p.Flows)) {
		f := p.Flows[name]
		var origin *Origin
		if src := p.Sources[f.Source]; src != nil {
			origin = src.Origin
		}
		for i, st := range f.Steps {
			path := fmt.Sprintf("flows.%s.steps[%d]", name, i)
			st.Write = cp.write(path, st, cp.c.Flows[name].Steps[i], p)
			if st.Write == nil {
				continue
			}
			ent := st.Write.Entity
			e, declared := o.Entities[ent]
			if !declared {
				if !slices.Contains(undeclared[ent], st.System) {
					undeclared[ent] = append(undeclared[ent], st.System)
				}
				if firstWrite[ent] == "" {
					firstWrite[ent] = path
				}
				continue
			}
			cp.checkWrite(path, f, st, e, origin)
		}
	}
	for _, ent := range slices.Sorted(maps.Keys(undeclared)) {
		systems := undeclared[ent]
		if len(systems) > 1 {
			slices.Sort(systems)
			cp.errorf(cp.node(firstWrite[ent]+".do"), firstWrite[ent],
				"entity %s is written to %s, but entities: names no owner for it: each would hold a master copy; declare entities.%s with one owner and the others as mirrors",
				ent, strings.Join(systems, " and "), ent)
			continue
		}
		o.Entities[ent] = &Entity{Name: ent, Owner: systems[0], OnConflict: OnConflictDrop}
	}
	// Writes are fingerprinted only where an echo can come back. In name
	// order, so check prints its warnings the same way each time.
	for _, name := range slices.Sorted(maps.Keys(p.Flows)) {
		f := p.Flows[name]
		for i, st := range f.Steps {
			w := st.Write
			if w == nil {
				continue
			}
			w.Echoable = slices.ContainsFunc(slices.Collect(maps.Values(p.Sources)), func(src *Source) bool {
				org := src.Origin
				return org != nil && org.System == st.System && org.Entity == w.Entity && org.RecordID != nil
			})
			if w.Echoable && w.RecordID == nil {
				cp.warnf(cp.node(fmt.Sprintf("flows.%s.steps[%d]", f.Name, i)),
					"flows.%s.steps[%d]: writes %s to %s, whose events about %s come back, but has no record_id: its echoes are matched by the written fields alone",
					f.Name, i, w.Entity, st.System, w.Entity)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(p.Flows)) {
		f := p.Flows[name]
		if c := f.Conflict; c != nil {
			policy := "dropped"
			if e := o.Entities[c.Entity]; e != nil && e.OnConflict != OnConflictDrop {
				policy = "handed to flow " + e.OnConflict
			}
			cp.warnf(cp.node("flows."+name), "flows.%s: %s; such changes are not written back: they are %s (entities.%s.on_conflict)",
				name, c.Reason(), policy, c.Entity)
		}
	}
	p.Ownership = o
	g := p.SystemGraph()
	for _, c := range g.Cycles() {
		if open := unguarded(p, g, c); len(open) > 0 {
			cp.warnf(nil, "cycle %s; NOT STOPPED: the writes of %s are not fingerprinted (no entity whose events come back), so neither echo suppression nor max_hops sees them, and a change can go round this cycle for ever (declare the entity each writes with writes:, and a source with system:, entity: and record_id: for its system)",
				g.DescribeCycle(c), strings.Join(open, ", "))
			continue
		}
		cp.warnf(nil, "cycle %s; echo suppression stops our own writes coming back, and a chain longer than max_hops (%d) is dead-lettered",
			g.DescribeCycle(c), o.MaxHops)
	}
}

// unguarded returns the steps on cycle (flow.step) whose writes are not
// fingerprinted: their echoes are not recognised and the events they
// cause start a new causal chain at hop 0, so a change going round the
// cycle through one of them is neither suppressed nor counted.
func unguarded(p *Plan, g *ownership.Graph, cycle []string) []string {
	var out []string
	for _, edges := range g.CycleEdges(cycle) {
		for _, e := range edges {
			f := p.Flows[e.Flow]
			if f == nil {
				continue
			}
			i := slices.IndexFunc(f.Steps, func(st *Step) bool { return st.ID == e.Step })
			if i < 0 || f.Steps[i].Write == nil || !f.Steps[i].Write.Echoable {
				if l := e.Flow + "." + e.Step; !slices.Contains(out, l) {
					out = append(out, l)
				}
			}
		}
	}
	return out
}

// entity compiles one entities: entry.
func (cp *compiler) entity(name string, ce config.Entity) *Entity {
	path := "entities." + name
	if !nameRe.MatchString(name) {
		cp.errorf(cp.node(path), path, "entity names use lowercase letters, digits and _")
	}
	e := &Entity{Name: name, Fields: map[string]string{}, OnConflict: OnConflictDrop, Declared: true}
	switch n := ce.Owner; {
	case n == nil:
		cp.errorf(cp.node(path), path+".owner", "required: the one system of record")
		return nil
	case n.Kind == yaml.SequenceNode && len(n.Content) > 1:
		var names []string
		for _, c := range n.Content {
			names = append(names, c.Value)
		}
		cp.errorf(n, path+".owner", "entity %s has %d owners (%s): an entity has one system of record; list the others under mirrors (or give them single fields with fields:)",
			name, len(names), strings.Join(names, ", "))
		return nil
	case n.Kind == yaml.SequenceNode && len(n.Content) == 1 && n.Content[0].Kind == yaml.ScalarNode:
		e.Owner = n.Content[0].Value
	case n.Kind == yaml.ScalarNode && n.Value != "":
		e.Owner = n.Value
	default:
		cp.errorf(n, path+".owner", "want the name of one system")
		return nil
	}
	cp.knownSystem(path+".owner", e.Owner)
	seen := map[string]bool{e.Owner: true}
	for i, m := range ce.Mirrors {
		mp := fmt.Sprintf("%s.mirrors[%d]", path, i)
		switch {
		case m == e.Owner:
			cp.errorf(cp.node(mp), mp, "%s owns %s; it cannot also be a mirror (two masters)", m, name)
		case seen[m]:
			cp.errorf(cp.node(mp), mp, "%s is listed twice", m)
		default:
			cp.knownSystem(mp, m)
			e.Mirrors = append(e.Mirrors, m)
		}
		seen[m] = true
	}
	slices.Sort(e.Mirrors)
	for _, f := range slices.Sorted(maps.Keys(ce.Fields)) {
		sys := ce.Fields[f]
		if sys == e.Owner {
			continue // owned with the rest of the entity
		}
		cp.knownSystem(path+".fields."+f, sys)
		e.Fields[f] = sys
	}
	switch ce.OnConflict {
	case "", OnConflictDrop:
	default:
		if !hasKey(cp.c.Flows, ce.OnConflict) {
			cp.errorf(cp.node(path+".on_conflict"), path+".on_conflict", "want drop or the name of a flow; no flow is named %q%s",
				ce.OnConflict, known(slices.Sorted(maps.Keys(cp.c.Flows))))
		}
		e.OnConflict = ce.OnConflict
	}
	return e
}

func (cp *compiler) knownSystem(path, name string) {
	if !hasKey(cp.c.Systems, name) {
		cp.errorf(cp.node(path), path, "unknown system %q%s", name, known(slices.Sorted(maps.Keys(cp.c.Systems))))
	}
}

// origin compiles a source's system, entity, record_id and record keys.
func (cp *compiler) origin(name string, s config.Source, entities map[string]*Entity) *Origin {
	path := "sources." + name
	// A poll source about an entity comes from the system it polls, and
	// its records are identified by its id:.
	if s.Poll != nil && s.Entity != "" {
		s.System = cmp.Or(s.System, s.Poll.System)
		s.RecordID = cmp.Or(s.RecordID, s.Poll.ID)
	}
	// record_id alone (with version:) keys a webhook source a poll backs
	// up; it says nothing about where the events come from.
	if s.System == "" && s.Entity == "" && s.Record == "" {
		return nil
	}
	o := &Origin{System: s.System, Entity: s.Entity}
	if s.Entity != "" && len(cp.c.Entities) > 0 {
		if _, ok := entities[s.Entity]; !ok {
			cp.errorf(cp.node(path+".entity"), path+".entity", "unknown entity %q%s", s.Entity, known(slices.Sorted(maps.Keys(entities))))
		}
	}
	if s.System != "" {
		cp.knownSystem(path+".system", s.System)
		if e := entities[s.Entity]; e != nil && !e.Holds(s.System) {
			cp.errorf(cp.node(path+".system"), path+".system", "%s does not keep %s (owner %s%s): its events cannot be about it",
				s.System, s.Entity, e.Owner, mirrorList(e))
		}
	}
	if s.Record != "" && (s.System == "" || s.Entity == "") {
		cp.errorf(cp.node(path), path, "record needs system: and entity: (which system's records they are)")
	}
	if s.RecordID != "" {
		o.RecordID = cp.expr(path+".record_id", s.RecordID)
	} else if s.System != "" && s.Entity != "" {
		cp.warnf(cp.node(path), "sources.%s: without record_id the echoes of our writes to %s cannot be recognised", name, s.System)
	}
	if s.Record != "" {
		o.Record = cp.expr(path+".record", s.Record)
	}
	return o
}

func mirrorList(e *Entity) string {
	if len(e.Mirrors) == 0 {
		return ", no mirrors"
	}
	return ", mirrors " + strings.Join(e.Mirrors, ", ")
}

// write compiles what a step writes: the action's entity, or the step's
// writes: for an action that declares none.
func (cp *compiler) write(path string, st *Step, cs config.Step, p *Plan) *Write {
	if st.Call == nil {
		return nil // the step did not compile; that is reported
	}
	kind, _ := cp.reg.Kind(p.Systems[st.System].Kind)
	spec, _ := kind.Action(st.Action)
	ent := spec.Writes
	switch {
	case cs.Writes != "" && spec.Writes != "" && cs.Writes != spec.Writes:
		cp.errorf(cp.node(path+".writes"), path+".writes", "%s.%s writes %s; writes: %s contradicts it", kind.Name, st.Action, spec.Writes, cs.Writes)
		return nil
	case cs.Writes != "":
		ent = cs.Writes
	}
	if ent == "" {
		if cs.RecordID != "" || cs.Fields != nil {
			cp.errorf(cp.node(path), path+".writes", "record_id and fields describe a write: say which entity the step writes with writes:")
		}
		return nil
	}
	w := &Write{Entity: ent, generic: spec.Writes == ""}
	if cs.RecordID != "" {
		w.RecordID = cp.expr(path+".record_id", cs.RecordID, StepVars...)
	}
	switch {
	case cs.Fields != nil && cs.Fields.Kind != yaml.MappingNode:
		cp.errorf(cs.Fields, path+".fields", "want a mapping of field names to jq expressions")
	case cs.Fields != nil:
		w.Fields = cp.template(path+".fields", cs.Fields)
		for i := 0; i+1 < len(cs.Fields.Content); i += 2 {
			w.FieldNames = append(w.FieldNames, cs.Fields.Content[i].Value)
		}
	case !w.generic && cs.With != nil && cs.With.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(cs.With.Content); i += 2 {
			w.FieldNames = append(w.FieldNames, cs.With.Content[i].Value)
		}
	}
	slices.Sort(w.FieldNames)
	return w
}

// checkWrite checks one step's write of a declared entity against its
// owner and mirrors, and marks the flow when it writes a mirror's change
// over the owner.
func (cp *compiler) checkWrite(path string, f *Flow, st *Step, e *Entity, origin *Origin) {
	if !e.Holds(st.System) {
		cp.errorf(cp.node(path+".do"), path+".do",
			"writes %s to %s, which is neither its owner (%s) nor a mirror%s: add %s to entities.%s.mirrors, or write to %s",
			e.Name, st.System, e.Owner, mirrorNames(e), st.System, e.Name, e.Owner)
		return
	}
	from := ""
	if origin != nil {
		from = origin.System
	}
	at := path + ".fields"
	if cp.node(at) == nil {
		at = path + ".with"
	}
	// A mirror takes a field's value only from the field's owner. A field
	// given its own owner (fields:) is checked whatever the source; any
	// other field when the source names a system other than the one
	// written: a source without system: brings new data (a form), and a
	// flow on a system's events that writes back to that same system is
	// not copying between systems.
	copied := from != "" && from != st.System
	for _, field := range st.Write.FieldNames {
		owner := e.OwnerOf(field)
		if owner == st.System || from == owner || (!hasKey(e.Fields, field) && !copied) {
			continue
		}
		src := "a source that names no system"
		if from != "" {
			src = from
		}
		cp.errorf(cp.node(at+"."+field), path,
			"writes %s.%s to %s, a mirror of that field, from %s: %s owns %s; write it to %s and let a flow on %s's events copy it to the mirrors",
			e.Name, field, st.System, src, owner, field, owner, owner)
	}
	// A write without fields: counts as the whole entity, the owner's
	// fields included: to a mirror, it must come from the owner.
	if st.Write.FieldNames == nil && copied && st.System != e.Owner && from != e.Owner {
		cp.errorf(cp.node(path+".do"), path,
			"writes all of %s to %s, a mirror, from %s: %s owns %s; name what it writes with fields: (only fields %s owns may come from it), or write to %s and let a flow on %s's events copy it to the mirrors",
			e.Name, st.System, from, e.Owner, e.Name, from, e.Owner, e.Owner)
	}
	// A mirror's change written back to the owner is a conflict. Events
	// from a system that does not keep this entity (a job's status moving a
	// deal) are business logic, not a copy coming back.
	if from == "" || from == st.System || f.Conflict != nil || !e.Holds(from) {
		return
	}
	var held []string // nil: the whole entity
	if st.Write.FieldNames == nil {
		if st.System != e.Owner {
			return
		}
	} else {
		for _, field := range st.Write.FieldNames {
			if owner := e.OwnerOf(field); owner == st.System && owner != from {
				held = append(held, field)
			}
		}
		if len(held) == 0 {
			return
		}
	}
	f.Conflict = &Conflict{Entity: e.Name, Step: st.ID, Owner: st.System, From: from, Fields: held}
}

func mirrorNames(e *Entity) string {
	if len(e.Mirrors) == 0 {
		return " (it has none)"
	}
	return " (" + strings.Join(e.Mirrors, ", ") + ")"
}

// reconcileSides checks that a reconcile source about a declared entity
// compares the entity's owner with one of its mirrors: the differences it
// reports are repaired from the owner, so the owner side must be the
// system of record.
func (cp *compiler) reconcileSides(name string, src *Source, entity string, entities map[string]*Entity) {
	e := entities[entity]
	if src.Reconcile == nil || e == nil {
		return
	}
	path := "sources." + name + ".reconcile"
	if owner := src.Reconcile.Owner.System; owner != "" && owner != e.Owner {
		cp.errorf(cp.node(path+".owner.system"), path+".owner.system", "%s is not the owner of %s (%s is): the owner side must be the system of record", owner, entity, e.Owner)
	}
	if mirror := src.Reconcile.Mirror.System; mirror != "" && !slices.Contains(e.Mirrors, mirror) {
		cp.errorf(cp.node(path+".mirror.system"), path+".mirror.system", "%s is not a mirror of %s (its mirrors: %s); add it to entities.%s.mirrors", mirror, entity, strings.Join(e.Mirrors, ", "), entity)
	}
}
