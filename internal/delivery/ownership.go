package delivery

import (
	"context"
	"fmt"
	"time"

	"github.com/switchboard-dev/switchboard/internal/echo"
	"github.com/switchboard-dev/switchboard/internal/flow"
	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/transform"
)

// hopLimit returns the error that stops a step's write when it would make
// the event's causal chain longer than max_hops, or nil.
func (x *Executor) hopLimit(c store.ClaimedRun, step *flow.Step) error {
	if step.Write == nil {
		return nil
	}
	limit := x.cfg.Plan.Ownership.MaxHops
	if hop := c.Lineage.Hop + 1; hop > limit {
		return fmt.Errorf("hop limit: writing %s to %s would be write %d of one causal chain (max_hops %d), a loop between systems: %s → %s",
			step.Write.Entity, step.System, hop, limit, c.Lineage.Chain, step.System)
	}
	return nil
}

// writeStep is what a step's write needs to be fingerprinted.
type writeStep struct {
	step    *flow.Step
	key     string
	input   map[string]any
	payload any
	steps   map[string]any
	event   map[string]any
	// answered reports that the call succeeded with output (the step's
	// own output, which record_id may read as $steps.ID).
	answered bool
	output   any
}

// fingerprint builds the fingerprint of a step's write: the hash of the
// fields it writes, the record's id when it is known and the causal chain
// it extends. It returns nil for a step whose echo cannot come back.
func (x *Executor) fingerprint(ctx context.Context, c store.ClaimedRun, w writeStep, now time.Time) (*store.Fingerprint, error) {
	wr := w.step.Write
	if wr == nil || !wr.Echoable {
		return nil, nil
	}
	fields, err := wr.WrittenFields(ctx, w.input, w.payload, w.steps, w.event)
	if err != nil {
		return nil, fmt.Errorf("fields: %w", err)
	}
	fp := echo.Of(fields)
	f := &store.Fingerprint{
		ID: w.key, System: w.step.System, Entity: wr.Entity, Fields: fp.Fields, Hash: fp.Hash,
		RunID: c.Run.ID, Hop: c.Lineage.Hop + 1, CreatedAt: now, WrittenAt: now,
	}
	if err := identify(ctx, c, w, f); err != nil {
		return nil, err
	}
	return f, nil
}

// answered completes fp after the call: the same written fields, and the
// record id the answer names (a create's new id, from the step's output).
// The windows count from the answer; the write keeps its place among the
// record's writes (WrittenAt, when the call started): answered late, it
// is still older than a write that started during its call, and that
// write's echo must not be taken for its own.
func answered(ctx context.Context, c store.ClaimedRun, w writeStep, fp *store.Fingerprint, now time.Time) *store.Fingerprint {
	done := *fp
	done.CreatedAt = now
	// Cut off now, the record id found before the call stays.
	_ = identify(ctx, c, w, &done)
	return &done
}

// identify sets f's record id, when the step's record_id gives one, and
// the chain that names it. Before the call a created record has no id
// yet: "" matches an echo by its fields alone until the answer names it.
func identify(ctx context.Context, c store.ClaimedRun, w writeStep, f *store.Fingerprint) error {
	wr := w.step.Write
	if wr.RecordID != nil {
		steps := w.steps
		if w.answered {
			steps = make(map[string]any, len(w.steps)+1)
			for k, v := range w.steps {
				steps[k] = v
			}
			steps[w.step.ID] = w.output
		}
		v, err := wr.RecordID.Eval(ctx, w.payload, steps, w.event)
		if transform.CutOff(ctx, err) {
			// Cut off by jq's time limit: without the id the write's echo
			// would be matched by its fields alone. Retried like a call.
			return fmt.Errorf("record_id: %w", err)
		}
		if err == nil && v != nil {
			f.RecordID = flow.RecordID(v)
		}
	}
	chain := c.Lineage.Chain
	if chain == "" {
		chain = c.Event.Source
	}
	shown := f.RecordID
	if shown == "" {
		shown = "(new)"
	}
	f.Chain = fmt.Sprintf("%s → %s %s %s", chain, w.step.System, wr.Entity, shown)
	return nil
}
