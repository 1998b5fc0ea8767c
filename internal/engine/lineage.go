package engine

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/internal/echo"
	"github.com/switchboard-dev/switchboard/internal/flow"
	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/transform"
)

// Fingerprints are the store methods echo suppression needs.
type Fingerprints interface {
	FindFingerprints(ctx context.Context, p store.FindFingerprintsParams) ([]store.Fingerprint, error)
	MarkEcho(ctx context.Context, p store.MarkEchoParams) error
	ForgetFingerprints(ctx context.Context, p store.ForgetFingerprintsParams) (int, error)
}

// maxFingerprints bounds how many recent writes of one record are compared.
const maxFingerprints = 50

// unknownRecordWindow is how long after it was saved or answered a write
// whose record id is not known (a create) matches any record by its
// fields alone: long enough for the create's echo, which comes with the
// answer or shortly after, and short, because until that echo names the
// record, a person's change to any record with the same values is taken
// for it.
const unknownRecordWindow = 2 * time.Minute

// verdict is what lineage found out about an inbound event.
type verdict struct {
	lineage store.Lineage
	// after is done once the event is stored, and only if it was new: a
	// duplicate (a redelivery of an older event) says nothing about our
	// write, and must neither mark it echoed nor forget it.
	after afterStore
}

// afterStore is what follows storing a new event.
type afterStore struct {
	// forget, when set, drops the record's older fingerprints: a person
	// changed it after our write.
	forget *store.ForgetFingerprintsParams
	// mark, when set, records the event as its write's first echo from
	// its source.
	mark *store.MarkEchoParams
}

// lineage works out whether an inbound event is the echo of one of our
// writes, and its place in the causal chain of writes.
//
//   - The record's written fields hash to a recent fingerprint of that
//     record, and the rest of the record is as the write's first echo
//     from this source showed it (or this is the first such echo): it is
//     the echo of that write. It continues the write's chain, and is
//     suppressed unless the config says otherwise.
//   - The written fields match but the record changed elsewhere since the
//     first echo: a person changed another field, or the system sent a
//     second, different webhook about our write (a bumped updated_at).
//     It runs, but continues the write's chain: were it a new chain, a
//     system that sends two webhooks per write would loop with every
//     chain at hop 0, and max_hops could never stop it.
//   - The written fields differ from our recent write of the record: a
//     person changed them, or the system rewrote what we sent. It is also
//     counted as a hop of that write's chain (a system that rewrites our
//     values would otherwise loop unseen, and only max_hops stops it).
//
// In the last two cases the record's older fingerprints are forgotten, so
// a person who sets a value back to what we wrote is not taken for our
// echo.
func (e *Engine) lineage(ctx context.Context, src *flow.Source, ev Event, now time.Time) (verdict, error) {
	o := src.Origin
	if e.cfg.Fingerprints == nil || o == nil || o.System == "" || o.Entity == "" || o.RecordID == nil {
		return verdict{}, nil
	}
	idv, err := o.RecordID.Eval(ctx, ev.Value)
	if transform.CutOff(ctx, err) {
		// Not "no record": our write's echo would run its flows in a new
		// chain, unseen by max_hops. Nothing is stored (see Build).
		return verdict{}, fmt.Errorf("source %s: record_id: %w", ev.Source, cmp.Or(ctx.Err(), err))
	}
	if err != nil || idv == nil {
		// Not every event of a source need be about a record (a ping, a
		// deletion with another shape): it is simply not an echo.
		e.cfg.Logger.Debug("no record id: not checked for an echo", "source", ev.Source, "error", err)
		return verdict{}, nil
	}
	id := flow.RecordID(idv)
	if id == "" {
		// "" is how a fingerprint says "record not known yet".
		return verdict{}, nil
	}
	record := ev.Value
	if o.Record != nil {
		if record, err = o.Record.Eval(ctx, ev.Value); transform.CutOff(ctx, err) {
			return verdict{}, fmt.Errorf("source %s: record: %w", ev.Source, cmp.Or(ctx.Err(), err))
		} else if err != nil {
			e.cfg.Logger.Debug("no record: not checked for an echo", "source", ev.Source, "error", err)
			return verdict{}, nil
		}
	}
	fields, _ := record.(map[string]any)
	window := e.cfg.Plan.Ownership.EchoWindow
	fps, err := e.cfg.Fingerprints.FindFingerprints(ctx, store.FindFingerprintsParams{
		System: o.System, Entity: o.Entity, RecordID: id, Source: ev.Source, Since: now.Add(-window),
		UnknownSince: now.Add(-unknownRecordWindow), Limit: maxFingerprints,
	})
	if err != nil {
		return verdict{}, fmt.Errorf("find fingerprints: %w", err)
	}
	if len(fps) == 0 {
		return verdict{}, nil
	}
	forget := &store.ForgetFingerprintsParams{System: o.System, Entity: o.Entity, RecordID: id, Before: now}
	// Most fingerprints of a record were written by the same steps, so
	// they name the same fields: hash the record's fields once per set.
	hashes := map[string]string{}
	for _, fp := range fps {
		names := strings.Join(fp.Fields, "\x00")
		h, ok := hashes[names]
		if !ok {
			h = echo.Hash(fields, fp.Fields)
			hashes[names] = h
		}
		if h != fp.Hash {
			continue
		}
		whole := echo.Of(fields).Hash
		l := store.Lineage{Hop: fp.Hop, Chain: fp.Chain + " → " + ev.Source, ParentRun: fp.RunID}
		var v verdict
		switch fp.EchoHash {
		case "":
			v.after.mark = &store.MarkEchoParams{ID: fp.ID, Source: ev.Source, RecordID: id, EchoHash: whole}
		case whole:
		default:
			// A person changed another field, or a second webhook about
			// our write: runs, in the write's chain.
			return verdict{lineage: l, after: afterStore{forget: forget}}, nil
		}
		if e.cfg.Plan.Ownership.SuppressEchoes {
			l.Outcome = store.EventEcho
		}
		v.lineage = l
		return v, nil
	}
	for _, fp := range fps {
		if fp.RecordID == id { // the newest write of this very record
			return verdict{
				lineage: store.Lineage{Hop: fp.Hop, Chain: fp.Chain + " → " + ev.Source, ParentRun: fp.RunID},
				after:   afterStore{forget: forget},
			}, nil
		}
	}
	return verdict{}, nil
}

// conflicts replaces the runs of flows that would write a mirror's change
// over the owner by the entity's policy: nothing (drop, logged) or one run
// of the flow that proposes the change to the owner.
func (e *Engine) conflicts(ev Event, conflicted []*flow.Flow, now time.Time) []store.NewRun {
	var runs []store.NewRun
	proposed := map[string]bool{}
	for _, f := range conflicted {
		c := f.Conflict
		policy := flow.OnConflictDrop
		if ent := e.cfg.Plan.Ownership.Entities[c.Entity]; ent != nil {
			policy = ent.OnConflict
		}
		if policy == flow.OnConflictDrop {
			e.cfg.Logger.Warn("change from a mirror dropped: it is not written over the owner",
				"source", ev.Source, "key", ev.Key, "flow", f.Name, "reason", c.Reason(), "policy", "entities."+c.Entity+".on_conflict: drop")
			continue
		}
		e.cfg.Logger.Info("change from a mirror handed to its proposal flow instead of being written over the owner",
			"source", ev.Source, "key", ev.Key, "flow", f.Name, "reason", c.Reason(), "proposal_flow", policy)
		if pf := e.cfg.Plan.Flows[policy]; pf != nil && !proposed[policy] {
			proposed[policy] = true
			runs = append(runs, store.NewRun{ID: store.NewID("run_", now), Flow: pf.Name, StepID: pf.Steps[0].ID})
		}
	}
	return runs
}
