package config

import "gopkg.in/yaml.v3"

// Reconcile makes a source compare an entity's records in its owner with
// those in a mirror system, on a schedule, and emit one event per
// difference plus a summary.
type Reconcile struct {
	Timing `yaml:",inline"`
	// Owner lists the records of the system of record.
	Owner *ReconcileSide `yaml:"owner"`
	// Mirror lists the records of the copy checked against the owner.
	Mirror *ReconcileSide `yaml:"mirror"`
	// Fields are the fields compared, by name: each value is jq applied to
	// both sides' records (".phone"), or a mapping {owner: JQ, mirror: JQ}
	// when the two systems name or shape the field differently.
	Fields map[string]*yaml.Node `yaml:"fields"`
	// MaxDifferences bounds the differences one run emits: a run finding
	// more fails without emitting anything (a wrong key: or items: would
	// otherwise report every record missing, and a repair flow would copy
	// them all). Default 1000; -1 means no limit.
	MaxDifferences int `yaml:"max_differences"`
}

// ReconcileSide is one side of a reconciliation: a paged listing of every
// record (its query values see $cursor as null) and the key that matches
// a record with its counterpart on the other side.
type ReconcileSide struct {
	Listing `yaml:",inline"`
	// Key is jq over a record giving its match key (.email |
	// ascii_downcase). Required. Records whose key is null or empty are
	// counted, not compared.
	Key string `yaml:"key"`
}

// ReconcileField is a field compared with a different expression on each
// side.
type ReconcileField struct {
	// Owner is jq over an owner record.
	Owner string `yaml:"owner"`
	// Mirror is jq over a mirror record.
	Mirror string `yaml:"mirror"`
}
