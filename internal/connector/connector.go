// Package connector defines how Switchboard talks to external systems: a Kind
// (one per kind of system, such as http or hubspot) opens configured Systems,
// and each System offers named Actions that flow steps call. Actions report
// failures with Permanent or RetryAfter so the executor knows whether to retry.
package connector

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
)

// Kind describes one kind of external system and how to open it. Kinds are
// registered in a Registry by the connector packages' Register functions.
type Kind struct {
	// Name is the value of `kind:` in a system's config, e.g. "http".
	Name string
	// Doc is one sentence describing the kind, shown by `switchboard connectors`.
	Doc string
	// NewConfig returns a pointer to a fresh typed config struct. The config
	// loader decodes the system's YAML into it strictly (unknown keys are
	// errors) before Open is called. The `kind` key itself is not part of it.
	NewConfig func() any
	// Open validates the decoded config and returns a ready System. It must not
	// do network I/O: a config check runs Open too.
	Open func(p OpenParams) (System, error)
	// Actions lists the actions every system of this kind offers.
	Actions []ActionSpec
}

// OpenParams are the inputs of Kind.Open.
type OpenParams struct {
	// Name is the system's name in the config (the key under `systems:`).
	Name string
	// Config is the value NewConfig returned, decoded from the config file.
	Config any
}

// ActionSpec documents one action: the inputs its step's `with:` accepts.
type ActionSpec struct {
	// Name is the action's name; a step calls it as SYSTEM.NAME.
	Name string
	// Doc is one sentence describing the action.
	Doc string
	// Inputs are the keys accepted under the step's `with:`.
	Inputs []Input
	// Outputs describes in one line what the step outputs ($steps.ID), e.g.
	// "the contact {id, properties, new, …}". Optional; shown by
	// `switchboard connectors`.
	Outputs string
	// Writes is the entity type the action writes in its system, e.g.
	// "customer" or "deal", so one owner per entity can be checked. "" means
	// none or unknown: a notification writes no entity, and a generic
	// action's step declares what it writes in its own config.
	Writes string
}

// Input documents one key of an action's `with:` map.
type Input struct {
	// Name is the key under `with:`.
	Name string
	// Required reports whether a step must set it (to a non-null value).
	Required bool
	// Doc is one sentence describing the value.
	Doc string
	// Type is the JSON shape the action accepts, checked at config load
	// when the step gives a constant value (the check command and serve
	// report a wrong constant with its file:line). "" accepts anything.
	Type InputType
}

// InputType is the shape of an input's value.
type InputType string

// Input types. A value may also be null when the input is optional.
const (
	TypeAny    InputType = ""
	TypeString InputType = "string"
	// TypeStrings is a string or a list of strings (recipients, say).
	TypeStrings InputType = "string or list of strings"
	TypeNumber  InputType = "number"
	TypeBool    InputType = "bool"
	TypeObject  InputType = "object"
	TypeList    InputType = "list"
)

// Accepts reports whether v (a decoded JSON value) has type t.
func (t InputType) Accepts(v any) bool {
	if v == nil {
		return true // required-ness is checked separately
	}
	switch t {
	case TypeString:
		_, ok := v.(string)
		return ok
	case TypeStrings:
		switch v := v.(type) {
		case string:
			return true
		case []any:
			for _, x := range v {
				if _, ok := x.(string); !ok {
					return false
				}
			}
			return true
		}
		return false
	case TypeNumber:
		switch v.(type) {
		case int, int64, float64, json.Number:
			return true
		}
		return false
	case TypeBool:
		_, ok := v.(bool)
		return ok
	case TypeObject:
		_, ok := v.(map[string]any)
		return ok
	case TypeList:
		_, ok := v.([]any)
		return ok
	}
	return true
}

// System is one configured external system. Implementations are safe for
// concurrent use by many workers.
type System interface {
	// Action returns the named action, or false if the kind has no such action.
	Action(name string) (Action, bool)
}

// Action performs one call against an external system.
type Action interface {
	// Do performs the call. It returns a Result describing what the remote side
	// answered even when it also returns an error, so the attempt can be
	// recorded. Errors are transient (retried with backoff) unless wrapped with
	// Permanent or RetryAfter.
	Do(ctx context.Context, req Request) (Result, error)
}

// Request is one invocation of an action.
type Request struct {
	// Input holds the evaluated `with:` values, keyed by input name.
	Input map[string]any
	// IdempotencyKey is deterministic for (event, flow, step): the same on every
	// retry of the step, so the remote side can drop repeats.
	IdempotencyKey string
}

// Result is what an action observed. Output becomes the step's output
// ($steps.ID in later steps) when the call succeeded.
type Result struct {
	// Output is a JSON-compatible value (maps, slices, strings, numbers, bools, nil).
	Output any
	// Status is the remote status code (HTTP status for HTTP-based kinds), or 0.
	Status int
	// Body is the raw response, kept (truncated) for operators to inspect.
	Body []byte
}

// Registry holds the kinds a binary knows. It is a value, not a global, so tests
// build one holding only the kinds they need.
type Registry struct {
	kinds map[string]*Kind
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{kinds: map[string]*Kind{}} }

// Add registers a kind. It panics on a duplicate or incomplete kind: that is a
// programming error found at startup.
func (r *Registry) Add(k Kind) {
	if k.Name == "" || k.NewConfig == nil || k.Open == nil {
		panic(fmt.Sprintf("connector: incomplete kind %q", k.Name))
	}
	if _, dup := r.kinds[k.Name]; dup {
		panic(fmt.Sprintf("connector: kind %q registered twice", k.Name))
	}
	r.kinds[k.Name] = &k
}

// Kind returns the named kind.
func (r *Registry) Kind(name string) (*Kind, bool) {
	k, ok := r.kinds[name]
	return k, ok
}

// Kinds returns every registered kind, sorted by name.
func (r *Registry) Kinds() []*Kind {
	out := make([]*Kind, 0, len(r.kinds))
	for _, k := range r.kinds {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Action returns the spec of the named action of this kind.
func (k *Kind) Action(name string) (ActionSpec, bool) {
	for _, a := range k.Actions {
		if a.Name == name {
			return a, true
		}
	}
	return ActionSpec{}, false
}

// Fetcher is a system that can be polled: it reads a page of records with a
// GET under its base URL, with its auth, and classifies failures like its
// actions do (Permanent, RetryAfter, else transient).
type Fetcher interface {
	Fetch(ctx context.Context, req FetchRequest) (FetchResponse, error)
}

// FetchRequest is one page read.
type FetchRequest struct {
	// Path is joined under the system's base URL; it may be an absolute
	// URL on the base URL's host and path (a Link header's next page).
	Path  string
	Query url.Values
}

// FetchResponse is a page as the system answered it.
type FetchResponse struct {
	// URL is the URL the page was read from, to resolve relative links.
	URL    *url.URL
	Status int
	Header http.Header
	Body   []byte
}

// MaxFetchBody bounds one page: a larger answer is an error, never a
// silently truncated page.
const MaxFetchBody = 32 << 20
