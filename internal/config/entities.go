package config

import (
	"time"

	"gopkg.in/yaml.v3"
)

// Entity declares the system of record of one entity type (customer, job,
// invoice, …) and the systems that keep copies of it.
type Entity struct {
	// Owner is the system of record: the one system whose copy is right.
	// Required; exactly one.
	Owner *yaml.Node `yaml:"owner"`
	// Mirrors are systems that keep a copy, written from the owner's data.
	Mirrors []string `yaml:"mirrors"`
	// Fields gives single fields another owner than the entity's, by field
	// name: `fields: { phone: phone_system }`. The entity's owner is then a
	// mirror of those fields.
	Fields map[string]string `yaml:"fields"`
	// OnConflict says what happens to a change that arrives from a mirror
	// and would be written over a field the owner holds: "drop" (the
	// default; logged with the reason) or the name of a flow that proposes
	// the change to the owner (a task for a person, say).
	OnConflict string `yaml:"on_conflict"`
}

// Loops configures echo suppression and the hop limit.
type Loops struct {
	// EchoWindow is how long after a write an inbound event about the same
	// record whose written fields are unchanged counts as the write's echo.
	// Default 10m.
	EchoWindow time.Duration `yaml:"echo_window"`
	// SuppressEchoes makes echoes start no runs. Default true; false keeps
	// only the hop counting (to watch a loop without stopping it early).
	SuppressEchoes *bool `yaml:"suppress_echoes"`
	// MaxHops is the longest causal chain of writes (one system's event
	// leading to a write in another whose event leads to a write …) before
	// the run stops with a dead letter. Default 5.
	MaxHops int `yaml:"max_hops"`
}
