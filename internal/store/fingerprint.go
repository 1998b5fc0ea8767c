package store

import "time"

// EventOutcome says why an event started no runs although flows listen to
// its source. Enforced by a CHECK constraint.
type EventOutcome string

const (
	// EventProcessed: the event started its flows' runs as usual.
	EventProcessed EventOutcome = ""
	// EventEcho: the event was our own write coming back; it started no runs.
	EventEcho EventOutcome = "echo"
	// EventConflict: the event was a mirror's change to fields the owner
	// holds; the flows that would have written it back did not run.
	EventConflict EventOutcome = "conflict"
)

// Lineage is an event's place in a causal chain of our writes: system A's
// event led to a write in B, whose event led to a write in C, …
type Lineage struct {
	Outcome EventOutcome
	// Hop counts our writes that led to this event: 0 for a change made by
	// a person (or any change we did not cause).
	Hop int
	// Chain names the chain for people: "web_form → crm customer 42 →
	// crm_changed → …" ("" at hop 0).
	Chain string
	// ParentRun is the run whose write this event answers ("" at hop 0).
	ParentRun string
}

// IsZero reports whether l says nothing: a hop-0 event that ran as usual.
func (l Lineage) IsZero() bool { return l == Lineage{} }

// Fingerprint records one write of an entity the engine made, so that its
// echo (the same change coming back as an inbound event) is recognised.
type Fingerprint struct {
	// ID is the step's outbound idempotency key: one row per step of a
	// run generation, so retries update it rather than add rows.
	ID       string
	System   string
	Entity   string
	RecordID string // "" while the id of a record being created is unknown
	// Fields are the written fields' names, sorted; Hash is their
	// normalised hash (package echo).
	Fields []string
	Hash   string
	// RunID, Hop and Chain carry the causal chain to the echo: Hop is the
	// write's hop (its event's hop + 1).
	RunID string
	Hop   int
	Chain string
	// EchoHash is the hash of the whole record as the write's first echo
	// from FindFingerprintsParams.Source showed it ("" until such an echo
	// came): a later event of that source that matches the written fields
	// but differs elsewhere is a person's change. It is kept per source
	// because a poll and a webhook show the same record in different
	// shapes. SaveFingerprint never changes it; MarkEcho sets it.
	EchoHash string
	// CreatedAt is when the fingerprint was saved before the call, then
	// when the call was answered: the windows count from it.
	CreatedAt time.Time
	// WrittenAt is when the write's call started (its attempt's save
	// before the call): the order of the record's writes, newest first,
	// in which an echo is matched. The answer leaves it: a write answered
	// late is not newer than a write that started after it (and whose
	// echo would otherwise be taken for a repeated echo of the older one,
	// in the older write's place in the causal chain). Zero means
	// CreatedAt.
	WrittenAt time.Time
}

// WriteTime is WrittenAt, or CreatedAt when that is not set: the time a
// store orders the record's writes by.
func (f Fingerprint) WriteTime() time.Time {
	if f.WrittenAt.IsZero() {
		return f.CreatedAt
	}
	return f.WrittenAt
}

// FindFingerprintsParams select the recent fingerprints of one record.
type FindFingerprintsParams struct {
	System, Entity, RecordID string
	// Source is the source asking: the fingerprints' EchoHash is its own.
	Source string
	// Since excludes fingerprints saved or answered before it (the echo
	// window).
	Since time.Time
	// UnknownSince, when later than Since, excludes fingerprints whose
	// record id is not known written before it: they match any record by
	// their fields alone, so only for a short while.
	UnknownSince time.Time
	// Limit bounds the rows returned of each kind: the record's own, and
	// those whose record id is not known; default 100.
	Limit int
}

// MarkEchoParams record that an inbound event was the echo of a write.
type MarkEchoParams struct {
	// ID is the fingerprint's.
	ID string
	// Source is the echo's source: each source records its own EchoHash.
	Source string
	// RecordID is the echo's record: a fingerprint whose record id was
	// not known (a create whose answer did not name the record) takes it,
	// and from then on matches that record only, not any record with the
	// same values.
	RecordID string
	// EchoHash is the hash of the whole record as the echo showed it.
	EchoHash string
}

// ForgetFingerprintsParams drop the fingerprints of one record written
// before a change nobody here made: a later inbound event with the same
// values is then that person's change, not our echo.
type ForgetFingerprintsParams struct {
	System, Entity, RecordID string
	Before                   time.Time
}

// UnknownFrom is when fingerprints of unknown records start to count: the
// later of Since and UnknownSince.
func (p FindFingerprintsParams) UnknownFrom() time.Time {
	if p.UnknownSince.After(p.Since) {
		return p.UnknownSince
	}
	return p.Since
}
