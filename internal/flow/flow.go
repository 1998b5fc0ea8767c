// Package flow turns a parsed config into a Plan: systems opened through the
// connector registry, sources with their verifiers and key expressions, and
// flows whose steps are bound to actions and compiled jq. Every problem is
// reported with file:line:col, all at once, so `check` and `serve` agree.
package flow

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/switchboard-dev/switchboard/internal/alert/rule"
	"github.com/switchboard-dev/switchboard/internal/config"
	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/limit"
	"github.com/switchboard-dev/switchboard/internal/secret"
	"github.com/switchboard-dev/switchboard/internal/transform"
)

// Defaults applied where the config is silent.
const (
	DefaultWorkers = 16
	DefaultLease   = 30 * time.Second
	// DefaultRetention is how long finished events are kept.
	DefaultRetention = 30 * 24 * time.Hour
	DefaultMaxBody   = 1 << 20
	DefaultAttempts  = 8
	DefaultBase      = time.Second
	DefaultCap       = 10 * time.Minute
)

// MinLease is the shortest lease a config may set.
const MinLease = time.Second

// StepVars are the jq variables a step's inputs may use, in the order their
// values are passed.
var StepVars = []string{"$steps", "$event"}

// Plan is a compiled config, ready to run. It is read-only once built.
type Plan struct {
	File string
	// StorePath is the SQLite file, or "" for PostgreSQL.
	StorePath string
	// PostgresDSN is the PostgreSQL DSN, or "" for SQLite. It may hold a
	// password: print Store instead.
	PostgresDSN secret.Value
	// Store describes the store for people: the SQLite path or the
	// PostgreSQL URL with its password removed.
	Store string
	// Retention is how long finished events are kept.
	Retention time.Duration
	// ShutdownGrace bounds a graceful stop; 0 means the default.
	ShutdownGrace time.Duration
	Workers       int
	Lease         time.Duration
	Systems       map[string]*System
	Sources       map[string]*Source
	Flows         map[string]*Flow
	// Alerts are the alert rules and where their notifications go; nil
	// when the config has no alerts: section. app hands it to alert.New.
	Alerts *rule.Set
	// Tracing is the checked tracing: section; nil when tracing is off.
	Tracing *config.Tracing
	// Warnings are problems that do not stop the config from running
	// (an unsigned webhook source, a source no flow listens to).
	Warnings []string
	// Ownership is the systems-of-record model: entities, their owners and
	// mirrors, echo suppression and the hop limit (see ownership.go).
	Ownership Ownership
}

// System is an opened external system.
type System struct {
	Name string
	Kind string
	connector.System
	// Limits are the system's rate limit, concurrency cap and circuit
	// breaker, applied by the executor on each node.
	Limits limit.Config
}

// Source is a compiled inbound source.
type Source struct {
	Name    string
	Webhook *Webhook
	// Key computes the idempotency key from the payload; nil means default.
	Key *transform.Expr
	// Flows are the flows started by this source's events, by name order.
	Flows []*Flow
	// RecordID and Version, when set, give the record an event is about;
	// together they key the event (record_id@version) unless Key is set.
	RecordID, Version *transform.Expr
	// Poll is set for a poll source, Schedule for a schedule source.
	Poll     *Poll
	Schedule Schedule
	// Origin says which system the events come from and which record they
	// are about; nil when the source does not say (see ownership.go).
	Origin *Origin
	// Reconcile is set for a reconcile source.
	Reconcile *Reconcile
}

// Webhook is a compiled webhook source.
type Webhook struct {
	MaxBody int64
	// Form reports whether bodies are application/x-www-form-urlencoded.
	Form bool
	// Verifier checks signatures; nil for an unsigned source.
	Verifier Verifier
	// Scheme names the verification scheme ("" when unsigned).
	Scheme string
}

// Verified is what a successful verification learned.
type Verified struct {
	// MessageID is the sender's message id, if the scheme has one.
	MessageID string
	// SentAt is the sender's timestamp, if the scheme has one.
	SentAt time.Time
}

// Verifier checks a request's signature over its raw body.
type Verifier interface {
	// Verify checks r's signature over body, the raw bytes read from r.
	Verify(r *http.Request, body []byte, now time.Time) (Verified, error)
}

// Flow is a compiled flow.
type Flow struct {
	Name   string
	Source string
	// When, when not nil, must evaluate to true for the flow to run.
	When  *transform.Expr
	Steps []*Step
	// Conflict, when set, says why this flow writes a mirror's change over
	// fields the owner holds; its runs are replaced by the entity's
	// on_conflict policy (see ownership.go).
	Conflict *Conflict
}

// Step is a compiled step bound to its action.
type Step struct {
	Index  int
	ID     string
	System string
	Action string
	Call   connector.Action
	// Input evaluates to the action's inputs.
	Input *Template
	Retry RetryPolicy
	// Write says which entity the step writes and how to fingerprint the
	// write; nil for a step that writes no entity (see ownership.go).
	Write *Write
	// Reads reports whether the step only reads (an http GET or HEAD): it
	// draws no edge in the data-flow graph (see graph.go).
	Reads bool
}

// RetryPolicy is a step's resolved retry policy.
type RetryPolicy struct {
	Attempts int
	Base     time.Duration
	Cap      time.Duration
}

// shownDSN is a PostgreSQL URL as `check` and the logs may show it: the
// password masked wherever pgx reads one, in the user info and in the
// password and sslpassword parameters.
func shownDSN(u *url.URL) string {
	shown := *u
	if shown.RawQuery != "" {
		params := strings.Split(shown.RawQuery, "&")
		for i, kv := range params {
			k, _, _ := strings.Cut(kv, "=")
			name, err := url.QueryUnescape(k)
			if err != nil || strings.EqualFold(name, "password") || strings.EqualFold(name, "sslpassword") {
				params[i] = k + "=xxxxx"
			}
		}
		shown.RawQuery = strings.Join(params, "&")
	}
	return shown.Redacted()
}

var nameRe = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// Compile checks c against the registry and builds a Plan. The returned
// error joins every *config.Error found.
func Compile(c *config.Config, reg *connector.Registry) (*Plan, error) {
	cp := &compiler{c: c, reg: reg, file: c.File}
	p := &Plan{
		File:          c.File,
		StorePath:     c.StorePath(),
		PostgresDSN:   secret.Value(c.PostgresDSN()),
		Retention:     defaultDur(c.Retention, DefaultRetention),
		ShutdownGrace: c.ShutdownGrace,
		Workers:       defaultInt(c.Workers, DefaultWorkers),
		Lease:         defaultDur(c.Lease, DefaultLease),
		Systems:       map[string]*System{},
		Sources:       map[string]*Source{},
		Flows:         map[string]*Flow{},
	}
	switch {
	case p.StorePath != "":
		p.Store = "sqlite:" + p.StorePath
	case !p.PostgresDSN.IsZero():
		u, err := url.Parse(p.PostgresDSN.Reveal())
		if err != nil || u.Host == "" {
			cp.errorf(cp.node("store"), "store", "invalid PostgreSQL URL (want postgres://user:password@host:port/database)")
		} else {
			p.Store = shownDSN(u)
		}
	default:
		cp.errorf(cp.node("store"), "store", "unsupported store (want sqlite:PATH or postgres://user@host:port/db)")
	}
	if c.Workers < 0 {
		cp.errorf(cp.node("workers"), "workers", "must be positive")
	}
	// A negative period would otherwise fall back to its default unseen.
	cp.positive("lease", c.Lease)
	if c.Lease > 0 && c.Lease < MinLease {
		// Leases are renewed every third of it: below a second a renewal
		// races a database round trip, a run's claim lapses during its
		// call and another worker sends it again (a nanosecond stops
		// serve with a panic).
		cp.errorf(cp.node("lease"), "lease", "must be at least %s (it is renewed every third of it; a claim that lapses mid-call is sent again by another worker)", MinLease)
	}
	cp.positive("retention", c.Retention)
	cp.positive("shutdown_grace", c.ShutdownGrace)
	cp.positive("retry.base", c.Retry.Base)
	cp.positive("retry.cap", c.Retry.Cap)
	for _, name := range slices.Sorted(maps.Keys(c.Systems)) {
		if s := cp.system(name, c.Systems[name]); s != nil {
			p.Systems[name] = s
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Sources)) {
		if s := cp.source(name, c.Sources[name], p); s != nil {
			p.Sources[name] = s
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Flows)) {
		if f := cp.flow(name, c.Flows[name], p); f != nil {
			p.Flows[name] = f
			if src := p.Sources[f.Source]; src != nil {
				src.Flows = append(src.Flows, f)
			}
		}
	}
	cp.ownership(p)
	p.Alerts = cp.alerts(c.Alerts)
	p.Tracing = cp.tracing(c.Tracing)
	for _, name := range slices.Sorted(maps.Keys(p.Sources)) {
		s := p.Sources[name]
		if s.Poll != nil && s.Poll.Backstop() {
			for _, f := range s.Flows {
				cp.errorf(cp.node("flows."+f.Name+".on"), "flows."+f.Name+".on", "source %q backs up %q and stores its records as %s's events; use on: %s", name, s.Poll.Target, s.Poll.Target, s.Poll.Target)
			}
			continue
		}
		if len(s.Flows) == 0 {
			cp.warnf(cp.node("sources."+name), "sources.%s: no flow has on: %s; its events are stored and nothing runs", name, name)
		}
		if s.Webhook != nil && s.Webhook.Verifier == nil {
			cp.warnf(cp.node("sources."+name+".webhook"), "sources.%s: webhook has no verify: anyone who knows the URL can post events", name)
		}
	}
	p.Warnings = cp.warnings
	if len(cp.errs) > 0 {
		return nil, errors.Join(cp.errs...)
	}
	return p, nil
}

type compiler struct {
	c        *config.Config
	reg      *connector.Registry
	file     string
	errs     []error
	warnings []string
	refs     []reference // see references; nil until asked for
}

func (cp *compiler) errorf(n *yaml.Node, path, format string, args ...any) {
	cp.errs = append(cp.errs, config.ErrorAt(cp.file, n, path, format, args...))
}

func (cp *compiler) warnf(n *yaml.Node, format string, args ...any) {
	w := fmt.Sprintf(format, args...)
	if n != nil {
		w = fmt.Sprintf("%s:%d:%d: %s", cp.file, n.Line, n.Column, w)
	}
	cp.warnings = append(cp.warnings, w)
}

// node finds the value node at a dotted path ("flows.x.steps[1].do") for
// positions; nil if absent.
func (cp *compiler) node(path string) *yaml.Node {
	n := cp.c.Root
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, part := range strings.Split(path, ".") {
		key, idx := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 {
			key = part[:i]
			fmt.Sscanf(part[i:], "[%d]", &idx)
		}
		n = child(n, key)
		if idx >= 0 && n != nil {
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return nil
			}
			n = n.Content[idx]
		}
		if n == nil {
			return nil
		}
	}
	return n
}

func child(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func (cp *compiler) system(name string, n *yaml.Node) *System {
	path := "systems." + name
	if !nameRe.MatchString(name) {
		cp.errorf(n, path, "system names use lowercase letters, digits and _")
	}
	if n == nil || n.Kind != yaml.MappingNode {
		cp.errorf(n, path, "want a mapping with kind: and the kind's settings")
		return nil
	}
	kindNode := child(n, "kind")
	if kindNode == nil {
		cp.errorf(n, path+".kind", "required")
		return nil
	}
	kind, ok := cp.reg.Kind(kindNode.Value)
	if !ok {
		var names []string
		for _, k := range cp.reg.Kinds() {
			names = append(names, k.Name)
		}
		cp.errorf(kindNode, path+".kind", "unknown kind %q (known: %s)", kindNode.Value, strings.Join(names, ", "))
		return nil
	}
	// The keys every system has (kind and its limits) are decoded here;
	// everything else into the kind's typed config.
	rest, common := *n, *n
	rest.Content, common.Content = nil, nil
	for i := 0; i+1 < len(n.Content); i += 2 {
		switch n.Content[i].Value {
		case "kind":
		case "rate_limit", "concurrency", "circuit":
			common.Content = append(common.Content, n.Content[i], n.Content[i+1])
		default:
			rest.Content = append(rest.Content, n.Content[i], n.Content[i+1])
		}
	}
	var lim config.SystemLimits
	d := &config.Decoder{File: cp.file, Getenv: cp.c.Getenv}
	d.Decode(&common, path, &lim)
	limits := cp.limits(path, lim)
	cfg := kind.NewConfig()
	d.Decode(&rest, path, cfg)
	if len(d.Errs) > 0 {
		cp.errs = append(cp.errs, d.Errs...)
		return nil
	}
	sys, err := kind.Open(connector.OpenParams{Name: name, Config: cfg})
	if err != nil {
		cp.openErrors(n, path, err)
		return nil
	}
	return &System{Name: name, Kind: kind.Name, System: sys, Limits: limits}
}

// limits checks a system's rate_limit, concurrency and circuit keys.
func (cp *compiler) limits(path string, l config.SystemLimits) limit.Config {
	var out limit.Config
	if r := l.RateLimit; r != nil {
		if r.PerSecond <= 0 {
			cp.errorf(cp.node(path+".rate_limit"), path+".rate_limit.per_second", "must be positive")
		}
		if r.Burst < 0 {
			cp.errorf(cp.node(path+".rate_limit"), path+".rate_limit.burst", "must not be negative")
		}
		out.PerSecond, out.Burst = r.PerSecond, r.Burst
	}
	if l.Concurrency < 0 {
		cp.errorf(cp.node(path+".concurrency"), path+".concurrency", "must be positive")
	}
	out.Concurrency = l.Concurrency
	if c := l.Circuit; c != nil {
		if c.Failures <= 0 {
			cp.errorf(cp.node(path+".circuit"), path+".circuit.failures", "must be positive")
		}
		cp.positive(path+".circuit.cooldown", c.Cooldown)
		out.CircuitFailures, out.CircuitCooldown = c.Failures, c.Cooldown
	}
	return out
}

// openErrors reports a kind's Open error, one line per joined error. A
// message that starts with one of the system's keys ("base_url: ...") is
// placed at that key's value.
func (cp *compiler) openErrors(n *yaml.Node, path string, err error) {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		msg := e.Error()
		at, where := n, path
		if key, rest, ok := strings.Cut(msg, ": "); ok {
			if c := child(n, key); c != nil {
				at, where, msg = c, path+"."+key, rest
			}
		}
		cp.errorf(at, where, "%s", msg)
	}
}

func (cp *compiler) source(name string, s config.Source, p *Plan) *Source {
	path := "sources." + name
	if !nameRe.MatchString(name) {
		cp.errorf(cp.node(path), path, "source names use lowercase letters, digits and _ (they appear in URLs)")
	}
	out := &Source{Name: name}
	if s.Key != "" {
		out.Key = cp.expr(path+".key", s.Key)
	}
	cp.recordKey(path, s, out)
	kinds := 0
	for _, set := range []bool{s.Webhook != nil, s.Poll != nil, s.Schedule != nil, s.Reconcile != nil} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		cp.errorf(cp.node(path), path, "a source needs exactly one of webhook:, poll:, schedule: or reconcile:")
		return out
	}
	switch {
	case s.Reconcile != nil:
		out.Reconcile = cp.reconcile(path, s, p)
		return out
	case s.Poll != nil:
		out.Poll = cp.poll(path, name, s, p)
		return out
	case s.Schedule != nil:
		out.Schedule = cp.schedule(path+".schedule", *s.Schedule)
		if s.Key != "" {
			cp.errorf(cp.node(path+".key"), path+".key", "a schedule source's events are keyed by their scheduled time; remove key:")
		}
		return out
	}
	w := &Webhook{MaxBody: int64(s.Webhook.MaxBody)}
	if w.MaxBody == 0 {
		w.MaxBody = DefaultMaxBody
	}
	switch s.Webhook.Format {
	case "", "json":
	case "form":
		w.Form = true
	default:
		cp.errorf(cp.node(path+".webhook.format"), path+".webhook.format", "unknown format %q (want json or form)", s.Webhook.Format)
	}
	if v := s.Webhook.Verify; v != nil {
		w.Scheme = v.Scheme
		w.Verifier = cp.verifier(path+".webhook.verify", v)
	}
	out.Webhook = w
	return out
}

func (cp *compiler) flow(name string, f config.Flow, p *Plan) *Flow {
	path := "flows." + name
	if !nameRe.MatchString(name) {
		cp.errorf(cp.node(path), path, "flow names use lowercase letters, digits and _")
	}
	out := &Flow{Name: name, Source: f.On}
	switch {
	case f.On == "" && cp.conflictFlow(name):
		// A flow named by an entity's on_conflict is started by conflicts.
	case f.On == "":
		cp.errorf(cp.node(path), path+".on", "required: the source whose events start this flow")
	case !hasKey(cp.c.Sources, f.On):
		cp.errorf(cp.node(path+".on"), path+".on", "unknown source %q%s", f.On, known(slices.Sorted(maps.Keys(cp.c.Sources))))
	}
	if f.When != "" {
		out.When = cp.expr(path+".when", f.When)
	}
	if len(f.Steps) == 0 {
		cp.errorf(cp.node(path), path+".steps", "a flow needs at least one step")
	}
	if cp.c.Retry.Attempts < 0 {
		cp.errorf(cp.node("retry.attempts"), "retry.attempts", "must be positive")
	}
	cp.retry(path+".retry", f.Retry)
	policy := mergeRetry(RetryPolicy{DefaultAttempts, DefaultBase, DefaultCap}, cp.c.Retry)
	policy = mergeRetry(policy, f.Retry)
	ids := map[string]bool{}
	for i, s := range f.Steps {
		sp := fmt.Sprintf("%s.steps[%d]", path, i)
		cp.retry(sp+".retry", s.Retry)
		st := &Step{Index: i, ID: s.ID, Retry: mergeRetry(policy, s.Retry)}
		switch {
		case s.ID == "":
			cp.errorf(cp.node(sp), sp+".id", "required")
		case !nameRe.MatchString(s.ID):
			cp.errorf(cp.node(sp+".id"), sp+".id", "step ids use lowercase letters, digits and _")
		case ids[s.ID]:
			cp.errorf(cp.node(sp+".id"), sp+".id", "duplicate step id %q", s.ID)
		}
		ids[s.ID] = true
		st.System, st.Action, _ = strings.Cut(s.Do, ".")
		switch sys, kind := cp.c.Systems[st.System], p.Systems[st.System]; {
		case s.Do == "":
			cp.errorf(cp.node(sp), sp+".do", "required: SYSTEM.ACTION")
		case sys == nil:
			cp.errorf(cp.node(sp+".do"), sp+".do", "unknown system %q in %q%s", st.System, s.Do, known(slices.Sorted(maps.Keys(cp.c.Systems))))
		case kind == nil:
			// The system itself failed to compile; that error is reported.
		default:
			call, ok := kind.Action(st.Action)
			if !ok {
				k, _ := cp.reg.Kind(kind.Kind)
				var names []string
				for _, a := range k.Actions {
					names = append(names, st.System+"."+a.Name)
				}
				cp.errorf(cp.node(sp+".do"), sp+".do", "unknown action %q (%s systems offer: %s)", s.Do, kind.Kind, strings.Join(names, ", "))
			}
			st.Call = call
			st.Reads = readsOnly(kind.Kind, st.Action, s.With)
			cp.checkInputs(sp, kind.Kind, st.Action, s.With)
		}
		if s.With != nil && s.With.ShortTag() == "!!null" {
			s.With = nil
		}
		if s.With != nil {
			if s.With.Kind != yaml.MappingNode {
				cp.errorf(s.With, sp+".with", "want a mapping of input names to jq expressions")
			} else {
				st.Input = cp.template(sp+".with", s.With)
			}
		}
		out.Steps = append(out.Steps, st)
	}
	return out
}

// checkInputs reports unknown and missing inputs against the action's spec.
func (cp *compiler) checkInputs(path, kindName, action string, with *yaml.Node) {
	k, _ := cp.reg.Kind(kindName)
	spec, ok := k.Action(action)
	if !ok {
		return
	}
	given := map[string]bool{}
	if with != nil && with.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(with.Content); i += 2 {
			key, val := with.Content[i], with.Content[i+1]
			given[key.Value] = true
			var spec1 *connector.Input
			var names []string
			for j, in := range spec.Inputs {
				names = append(names, in.Name)
				if in.Name == key.Value {
					spec1 = &spec.Inputs[j]
				}
			}
			if spec1 == nil {
				cp.errorf(key, path+".with."+key.Value, "unknown input of %s.%s (accepted: %s)", kindName, action, strings.Join(names, ", "))
				continue
			}
			cp.checkConstant(path+".with."+key.Value, kindName+"."+action, *spec1, val)
		}
	}
	for _, in := range spec.Inputs {
		if in.Required && !given[in.Name] {
			cp.errorf(cp.node(path), path+".with."+in.Name, "required input of %s.%s", kindName, action)
		}
	}
}

// checkConstant checks an input given as a literal ('"POST"', 42,
// '{a: 1}') against the type the action accepts: such a mistake is known at
// load, so it is reported with its position instead of failing every run.
func (cp *compiler) checkConstant(path, action string, in connector.Input, val *yaml.Node) {
	if in.Type == connector.TypeAny || val.Kind != yaml.ScalarNode {
		return
	}
	e, err := transform.Compile(val.Value, StepVars...)
	if err != nil {
		return // reported by the template compiler
	}
	v, ok := e.Constant()
	switch {
	case !ok:
	case v == nil && in.Required:
		cp.errorf(val, path, "required input of %s is null", action)
	case !in.Type.Accepts(v):
		cp.errorf(val, path, "input of %s wants %s, got %s (a jq string literal is written '\"text\"')", action, withArticle(string(in.Type)), describeValue(v))
	}
}

// withArticle puts "a" or "an" before a type name.
func withArticle(s string) string {
	if strings.ContainsAny(s[:1], "aeiou") {
		return "an " + s
	}
	return "a " + s
}

// describeValue names a constant's JSON type for errors.
func describeValue(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", v)
	case bool:
		return fmt.Sprintf("the bool %v", v)
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case nil:
		return "null"
	}
	return fmt.Sprintf("the number %v", v)
}

func (cp *compiler) expr(path, src string, vars ...string) *transform.Expr {
	e, err := transform.Compile(src, vars...)
	n := cp.node(path)
	shown, hidden := cp.unexpand(n, src)
	if err != nil {
		if hidden {
			// src is the text after ${NAME} expansion, which jq's errors
			// quote, and a variable may hold a secret: say where, not what.
			cp.errorf(n, path, "not a valid jq expression once its ${...} references are expanded (the expanded text is not shown: it may hold a secret)")
			return e
		}
		cp.errorf(n, path, "%v", err)
		return e
	}
	if hidden {
		// Evaluation errors would quote the expanded text too, and jq's
		// messages the values it met.
		e.Hide(shown)
	}
	return e
}

// unexpand returns src as the config wrote it, and whether src holds
// values of ${NAME} references (which may be secrets). n is src's node
// when found: its text is src as written. Without it (an alias, a key the
// path cannot name), every reference of the config whose value src
// contains is put back, so a missed lookup still hides what it should.
func (cp *compiler) unexpand(n *yaml.Node, src string) (string, bool) {
	if n != nil && n.Kind == yaml.ScalarNode && n.Value == src {
		return src, false // nothing was expanded
	}
	if n != nil && n.Kind == yaml.ScalarNode && len(config.References(n.Value)) > 0 {
		return n.Value, true
	}
	refs := cp.references()
	var pairs []string
	for _, r := range refs {
		if strings.Contains(src, r.value) {
			pairs = append(pairs, r.value, "${"+r.name+"}")
		}
	}
	if len(pairs) == 0 {
		return src, false
	}
	return strings.NewReplacer(pairs...).Replace(src), true
}

// reference is a ${NAME} of the config with the value it expanded to.
type reference struct{ name, value string }

// references returns the config's ${NAME} references with a value of at
// least 4 bytes (shorter ones would turn up in any text), longest value
// first, so that a value containing another is put back whole.
func (cp *compiler) references() []reference {
	if cp.refs != nil || cp.c.Getenv == nil {
		return cp.refs
	}
	cp.refs = []reference{}
	seen := map[string]bool{}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n == nil {
			return
		}
		if n.Kind == yaml.ScalarNode {
			for _, name := range config.References(n.Value) {
				if v, ok := cp.c.Getenv(name); ok && len(v) >= 4 && !seen[name] {
					seen[name] = true
					cp.refs = append(cp.refs, reference{name, v})
				}
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(cp.c.Root)
	slices.SortFunc(cp.refs, func(a, b reference) int { return len(b.value) - len(a.value) })
	return cp.refs
}

// positive reports a negative period at path.
func (cp *compiler) positive(path string, d time.Duration) {
	if d < 0 {
		cp.errorf(cp.node(path), path, "must not be negative")
	}
}

// retry reports negative values in a flow's or step's retry policy.
func (cp *compiler) retry(path string, r config.Retry) {
	if r.Attempts < 0 {
		cp.errorf(cp.node(path+".attempts"), path+".attempts", "must be positive")
	}
	cp.positive(path+".base", r.Base)
	cp.positive(path+".cap", r.Cap)
}

func mergeRetry(p RetryPolicy, r config.Retry) RetryPolicy {
	if r.Attempts > 0 {
		p.Attempts = r.Attempts
	}
	if r.Base > 0 {
		p.Base = r.Base
	}
	if r.Cap > 0 {
		p.Cap = r.Cap
	}
	return p
}

func known(names []string) string {
	if len(names) == 0 {
		return " (none are defined)"
	}
	return " (defined: " + strings.Join(names, ", ") + ")"
}

func hasKey[V any](m map[string]V, k string) bool {
	_, ok := m[k]
	return ok
}

func defaultInt(v, d int) int {
	if v <= 0 {
		return d
	}
	return v
}

func defaultDur(v, d time.Duration) time.Duration {
	if v <= 0 {
		return d
	}
	return v
}
