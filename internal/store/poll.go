package store

import "time"

// PollState is the shared schedule and cursor of one timed source (poll,
// schedule, reconcile; a backfill keeps its own under "backfill:NAME").
// Every node reads it, so whichever node runs the source next starts where
// the last one stopped.
type PollState struct {
	Source string
	// Cursor is where the next poll starts; HasCursor is false until the
	// first run stored one.
	Cursor    string
	HasCursor bool
	// NextRunAt is when the source is due.
	NextRunAt time.Time
	// LastRunAt and LastOKAt are when the last run and the last successful
	// run finished (zero: never).
	LastRunAt time.Time
	LastOKAt  time.Time
	// CursorMovedAt is when the cursor last changed (zero: never): the
	// number behind the poll_cursor alert.
	CursorMovedAt time.Time
	// Failures counts consecutive failed runs; LastError is the last one's.
	Failures  int
	LastError string
	// LastFound is how many records the last run of a backstop poll found
	// that its webhook source had not delivered.
	LastFound int
}

// PollRecord is one record of a polled page.
type PollRecord struct {
	// RecordID and Version identify the record's version; a version seen
	// before for the same record is not emitted again.
	RecordID string
	Version  string
	// Event is stored (with its runs) when the version is new.
	Event NewEvent
}

// PollPage is one page of a poll, committed with the cursor it advances
// to in one transaction: a failure on a later page cannot lose or repeat it.
type PollPage struct {
	// Source keys the state: the poll source's name, or the key a backfill
	// keeps its own cursor under.
	Source string
	// SeenAs keys the seen records: the poll source's name, whichever
	// state key the cursor is under, so a backfill and the scheduled poll
	// share what they saw. Default: Source.
	SeenAs  string
	Now     time.Time
	Records []PollRecord
	// Cursor becomes the source's cursor when SetCursor is true.
	Cursor    string
	SetCursor bool
}

// PollOutcome is what a page commit did with one record.
type PollOutcome int

const (
	// PollEmitted: a new record or version, stored as a new event.
	PollEmitted PollOutcome = iota
	// PollUnchanged: this version of the record was seen before.
	PollUnchanged
	// PollKnown: an event with the record's key was already stored (its
	// webhook delivered it, or an earlier poll whose seen row was lost).
	PollKnown
)

// PollResult is one record's outcome; EventID is set when emitted.
type PollResult struct {
	Outcome PollOutcome
	EventID string
}

// PollRun records the end of a run of a timed source.
type PollRun struct {
	Source    string
	Now       time.Time
	NextRunAt time.Time
	// Error is "" when the run succeeded.
	Error string
	// Found is how many records a backstop poll found that its webhook
	// source had not delivered.
	Found int
	// Skipped is set when the run did not read its system because an
	// operator paused it: only NextRunAt is stored, and the last run,
	// last success, failures, last error and found are left as they were.
	Skipped bool
}
