package flow

import (
	"maps"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/switchboard-dev/switchboard/internal/config"
	"github.com/switchboard-dev/switchboard/internal/transform"
)

// DefaultMaxDifferences bounds the differences one reconciliation emits.
const DefaultMaxDifferences = 1000

// Reconcile is a compiled reconcile source: two full listings matched by
// key and compared field by field.
type Reconcile struct {
	Schedule Schedule
	// Owner is the system of record; Mirror the copy checked against it.
	Owner, Mirror Side
	// Fields are the compared fields, sorted by name.
	Fields []Field
	// MaxDifferences bounds the differences a run emits; 0 means no limit.
	MaxDifferences int
}

// Side is one side of a reconciliation: a listing read to its end (its
// $cursor is null) and the key that pairs its records with the other's.
type Side struct {
	Listing
	Key *transform.Expr
}

// Field is one compared field: jq over an owner record and over a mirror
// record (the same expression unless the config maps them).
type Field struct {
	Name          string
	Owner, Mirror *transform.Expr
}

// reconcile compiles a reconcile source.
func (cp *compiler) reconcile(path string, s config.Source, p *Plan) *Reconcile {
	rp := path + ".reconcile"
	c := s.Reconcile
	out := &Reconcile{Schedule: cp.schedule(rp, c.Timing), MaxDifferences: c.MaxDifferences}
	out.Owner = cp.side(rp, "owner", c.Owner, p)
	out.Mirror = cp.side(rp, "mirror", c.Mirror, p)
	if c.Owner != nil && c.Mirror != nil && c.Owner.System != "" && c.Owner.System == c.Mirror.System {
		cp.errorf(cp.node(rp+".mirror.system"), rp+".mirror.system", "is the owner's system %q; a reconciliation compares two systems", c.Owner.System)
	}
	switch {
	case c.MaxDifferences == 0:
		out.MaxDifferences = DefaultMaxDifferences
	case c.MaxDifferences == -1:
		out.MaxDifferences = 0
	case c.MaxDifferences < 0:
		cp.errorf(cp.node(rp+".max_differences"), rp+".max_differences", "must be positive, or -1 for no limit")
	}
	if len(c.Fields) == 0 {
		cp.errorf(cp.node(rp), rp+".fields", "required: the fields to compare, e.g. { phone: .phone, name: { owner: .firstname, mirror: .first_name } }")
	}
	for _, name := range slices.Sorted(maps.Keys(c.Fields)) {
		if f, ok := cp.field(rp+".fields."+name, name, c.Fields[name]); ok {
			out.Fields = append(out.Fields, f)
		}
	}
	if s.Key != "" {
		cp.errorf(cp.node(path+".key"), path+".key", "a reconcile source's events are keyed by run, difference and record key; remove key:")
	}
	if s.RecordID != "" || s.Version != "" {
		cp.errorf(cp.node(path), path, "record_id: and version: apply to webhook sources; a reconciliation matches records by owner.key and mirror.key")
	}
	return out
}

// side compiles one side's listing and key; name is owner or mirror.
func (cp *compiler) side(rp, name string, c *config.ReconcileSide, p *Plan) Side {
	path := rp + "." + name
	if c == nil {
		cp.errorf(cp.node(rp), path, "required: the listing of the %s's records (system, path, items, key)", name)
		return Side{}
	}
	out := Side{Listing: cp.listing(path, c.Listing, p)}
	if strings.Contains(c.Path, "$cursor") {
		cp.errorf(cp.node(path+".path"), path+".path", "a reconciliation lists every record and has no cursor; remove $cursor")
	}
	if c.Key == "" {
		cp.errorf(cp.node(path), path+".key", "required: jq giving the key that matches a record with the other side's, e.g. .email | ascii_downcase")
	} else {
		out.Key = cp.expr(path+".key", c.Key)
	}
	if g := c.Paginate; g != nil && g.HasMore != "" && g.After != "" && g.AfterValue == "" {
		cp.errorf(cp.node(path+".paginate"), path+".paginate.after_value", "required for has_more paging in a reconciliation: jq giving the id sent as %s, e.g. .id", c.Paginate.After)
	}
	return out
}

// field compiles one compared field: a jq string used on both sides, or
// {owner: JQ, mirror: JQ}.
func (cp *compiler) field(path, name string, n *yaml.Node) (Field, bool) {
	f := Field{Name: name}
	switch {
	case n == nil || n.Kind == yaml.ScalarNode && (n.ShortTag() == "!!null" || n.Value == ""):
		cp.errorf(cp.node(path), path, "required: jq giving the field (both sides), or { owner: JQ, mirror: JQ }")
		return f, false
	case n.Kind == yaml.ScalarNode:
		f.Owner = cp.expr(path, n.Value)
		f.Mirror = f.Owner
	case n.Kind == yaml.MappingNode:
		var both config.ReconcileField
		d := &config.Decoder{File: cp.file, Getenv: cp.c.Getenv}
		d.Decode(n, path, &both)
		cp.errs = append(cp.errs, d.Errs...)
		if len(d.Errs) > 0 {
			return f, false
		}
		if both.Owner == "" || both.Mirror == "" {
			cp.errorf(n, path, "needs owner: and mirror: (jq over each side's record)")
			return f, false
		}
		f.Owner = cp.expr(path+".owner", both.Owner)
		f.Mirror = cp.expr(path+".mirror", both.Mirror)
	default:
		cp.errorf(n, path, "want jq (a string) or { owner: JQ, mirror: JQ }, got a list")
		return f, false
	}
	return f, f.Owner != nil && f.Mirror != nil
}
