// Package store defines Switchboard's durable state: events, the runs they
// start, step checkpoints and attempts, behind one Store interface with an
// implementation per database (store/sqlite, store/postgres) and one
// conformance suite (store/storetest) that every implementation passes.
package store

import (
	"context"
	"errors"
	"strings"
	"time"
	"unicode/utf8"
)

// Text makes an error or reason text storable in a text column of every
// store: PostgreSQL refuses NUL bytes and invalid UTF-8, and a text it
// refuses would fail the whole batch it is written in (every run's result
// committed with it, again on each retry). Invalid bytes become U+FFFD,
// NUL a space. Texts come from outside (a downstream's words, quoted).
func Text(s string) string {
	if utf8.ValidString(s) && !strings.ContainsRune(s, 0) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", " ")
}

// Sentinel errors callers branch on.
var (
	// ErrNotFound means no row has the requested ID.
	ErrNotFound = errors.New("not found")
	// ErrLeaseLost means the run's lease expired and another worker claimed it;
	// the caller must drop its result (the attempt is still recorded).
	ErrLeaseLost = errors.New("lease lost")
	// ErrConflict means the row is not in a state that allows the change
	// (for example retrying a run that is not dead).
	ErrConflict = errors.New("conflict")
	// ErrRefused marks a write the database refused because of the values
	// it was given (a constraint, a value it cannot store, a size limit),
	// as opposed to a database that is unreachable, busy or full: the same
	// values would be refused again. The group commits (InsertEvents,
	// FinishAndClaim) then retry their batch one item at a time, so only
	// the item that carries such a value fails (batch.Options.Split).
	ErrRefused = errors.New("refused by the database")
)

// CommitTimeout is how long the group commits (InsertEvents, FinishAndClaim)
// may take before they are abandoned with an error (and, on PostgreSQL,
// their connection closed). A commit takes milliseconds; this bounds the
// stall when the database stops answering without closing the connection
// (a failover that moved its address, a partition), which TCP alone would
// notice only after many minutes. Webhook senders give up well before:
// most wait 10 – 30 s for an answer. SQLite's wait for a write lock held by
// another process (busy_timeout, 10 s) ends first.
const CommitTimeout = 15 * time.Second

// IsRefused reports whether err is (or wraps) ErrRefused.
func IsRefused(err error) bool { return errors.Is(err, ErrRefused) }

// Refused marks err as ErrRefused; its message is err's.
func Refused(err error) error { return refusedError{err} }

type refusedError struct{ err error }

func (e refusedError) Error() string   { return e.err.Error() }
func (e refusedError) Unwrap() []error { return []error{ErrRefused, e.err} }

// RunState is the life-cycle state of a run. Enforced by a CHECK constraint.
type RunState string

const (
	// RunPending: waiting to be claimed, due at DueAt.
	RunPending RunState = "pending"
	// RunRunning: claimed by a worker whose lease expires at DueAt; after that
	// any worker may claim it again (the holder died).
	RunRunning RunState = "running"
	// RunRetrying: a step failed transiently; claimable again at DueAt.
	RunRetrying RunState = "retrying"
	// RunSucceeded: every step succeeded. Terminal.
	RunSucceeded RunState = "succeeded"
	// RunDead: a step failed permanently or exhausted its attempts. Terminal
	// until an operator retries it.
	RunDead RunState = "dead"
)

// Valid reports whether s is one of the run states above; a state written
// into a query as a literal (so partial indexes apply) must be one.
func (s RunState) Valid() bool {
	switch s {
	case RunPending, RunRunning, RunRetrying, RunSucceeded, RunDead:
		return true
	}
	return false
}

// AttemptOutcome is what one step attempt ended with.
type AttemptOutcome string

const (
	// AttemptSucceeded: the step's call succeeded.
	AttemptSucceeded AttemptOutcome = "succeeded"
	// AttemptRetry: the call failed transiently and will be retried.
	AttemptRetry AttemptOutcome = "retry"
	// AttemptDead: the call failed permanently or was the last allowed attempt.
	AttemptDead AttemptOutcome = "dead"
)

// Event is one inbound event, stored once per (Source, Key).
type Event struct {
	ID         string
	Source     string
	Key        string
	ReceivedAt time.Time
	// Payload is the event body as JSON.
	Payload []byte
	// TraceParent is the W3C traceparent of the span that received the
	// event, "" when tracing was off; its runs' spans are its children.
	TraceParent string
}

// Run is one execution of one flow for one event.
type Run struct {
	ID      string
	EventID string
	// Source is the event's source (joined from the event, for listings).
	Source string
	Flow   string
	// Generation is 0 for the run the event started and n for its n-th
	// replay; it is part of the outbound idempotency key, so a replay is a new
	// write downstream while a retry is not.
	Generation int
	State      RunState
	// Step is the index of the step to run next (or that failed, when dead).
	Step int
	// StepID is the id of that step.
	StepID string
	// Attempt counts the attempts started at Step (a claim starts one).
	Attempt int
	// DueAt is when a pending or retrying run becomes claimable, or when a
	// running run's lease expires.
	DueAt     time.Time
	LastError string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Attempt is the record of one call of one step.
type Attempt struct {
	ID        int64
	RunID     string
	StepIndex int
	StepID    string
	// System is the name of the system the step called ("" if none).
	System  string
	Number  int
	Outcome AttemptOutcome
	// Status is the remote status (HTTP), or 0 when there was no response.
	Status   int
	Error    string
	Duration time.Duration
	// Response is the remote response body, truncated by the caller.
	Response  []byte
	StartedAt time.Time
}

// StepOutput is a checkpointed step result.
type StepOutput struct {
	Index  int
	StepID string
	// Output is the step's output as JSON.
	Output []byte
}

// NewEvent is an event to insert, with the runs to create if it is new.
type NewEvent struct {
	ID         string
	Source     string
	Key        string
	ReceivedAt time.Time
	Payload    []byte
	// TraceParent is stored with the event (see Event.TraceParent).
	TraceParent string
	Runs        []NewRun
	// Lineage, when not zero, is stored with a new event (not with a
	// duplicate): its outcome and causal chain.
	Lineage Lineage
}

// NewRun is a run to create, pending and due at once.
type NewRun struct {
	ID     string
	Flow   string
	StepID string // id of the flow's first step
}

// InsertResult says what InsertEvents did with one NewEvent.
type InsertResult struct {
	// EventID is the new event's ID or, for a duplicate, the stored one.
	EventID string
	// Duplicate reports whether (Source, Key) was already stored; no runs were
	// created for it.
	Duplicate bool
}

// ClaimParams select runs for a worker.
type ClaimParams struct {
	// Token identifies this claim; later calls must present it.
	Token string
	Now   time.Time
	// LeaseUntil is when the claim lapses unless extended.
	LeaseUntil time.Time
	// Limit is the most runs to claim; 0 or less claims none (unlike a
	// listing's limit, it has no default: a claim beyond the workers free
	// would hold leases nobody works on).
	Limit int
}

// ClaimedRun is a run handed to a worker with what it needs to execute.
type ClaimedRun struct {
	Run   Run
	Event Event
	// Outputs are the checkpoints of the steps already done, by index.
	Outputs []StepOutput
	// Lineage is the event's causal chain (zero for a hop-0 event).
	Lineage Lineage
}

// FinishParams record one attempt and move its run on. Delivery decides the
// new state; the store applies it only if the lease is still held.
type FinishParams struct {
	RunID string
	Token string
	Now   time.Time
	// Attempt is recorded whether or not the lease is still held, unless
	// Hold is set.
	Attempt Attempt
	// Hold puts the run back without recording an attempt: it was never
	// tried (its system's circuit is open, say). RunAttempt should then
	// undo the claim's increment.
	Hold bool
	// HeldFor names the system a held run waits for; WakeHeld makes such
	// runs due at once when the system is resumed.
	HeldFor string
	// Output, when not nil, checkpoints the attempt's step as done.
	Output []byte
	// State, Step, StepID, RunAttempt and DueAt become the run's new values.
	State      RunState
	Step       int
	StepID     string
	RunAttempt int
	DueAt      time.Time
	LastError  string
	// Fingerprint, when not nil, is saved (upserted by ID) in the same
	// transaction, whether or not the lease is still held: the write
	// happened either way.
	Fingerprint *Fingerprint
	// DropFingerprint, when not empty, deletes the fingerprint with this
	// ID in the same transaction, whether or not the lease is still held:
	// the system refused the write, so no echo of it will come, and the
	// fingerprint would only hide a person's change with the same values.
	DropFingerprint string
}

// ExtendParams renew a worker's leases.
type ExtendParams struct {
	Token      string
	RunIDs     []string
	LeaseUntil time.Time
	Now        time.Time
}

// ListEventsParams filter ListEvents. Results are newest first.
type ListEventsParams struct {
	Source string
	// State, when set, keeps only events with a run in this state (the
	// console's "dead", "retrying" or "pending" events of a source).
	State RunState
	// Before, when set, returns events received before it (paging).
	Before time.Time
	// BeforeID, with Before, pages by (received_at, id), the listing's
	// order: events received before Before, or at Before with a smaller
	// id. Pass the last event of the previous page in both, or events
	// sharing its receipt time would be skipped.
	BeforeID string
	Limit    int
}

// ListRunsParams filter ListRuns. Results are newest first.
type ListRunsParams struct {
	EventID string
	Flow    string
	State   RunState
	Limit   int
}

// ReplayParams create fresh runs for a stored event.
type ReplayParams struct {
	EventID string
	Runs    []NewRun
	Now     time.Time
}

// RetryParams put a dead run back in the queue at its failed step.
type RetryParams struct {
	RunID string
	Now   time.Time
}

// LeaseParams take or renew a named lease.
type LeaseParams struct {
	Name   string
	Holder string
	Now    time.Time
	Until  time.Time
}

// DeleteParams select the expired events one batch of a retention pass
// examines.
type DeleteParams struct {
	// Before is the cutoff: events received before it have expired.
	Before time.Time
	// After and AfterID continue a pass where its previous batch stopped
	// (that batch's DeleteResult.Last and LastID): the batch examines only
	// events after them in (received_at, id) order. Zero starts at the
	// oldest event.
	After   time.Time
	AfterID string
	// Limit is the most events the batch examines, deleted or kept.
	Limit int
}

// DeleteResult is what one DeleteExpired batch did.
type DeleteResult struct {
	// Deleted counts the events deleted.
	Deleted int
	// Kept counts the expired events the batch examined and kept, for
	// their unfinished runs.
	Kept int
	// Last and LastID are the last event the batch examined: the next
	// batch of the pass starts after it.
	Last   time.Time
	LastID string
	// Done reports whether the pass is over: the batch examined fewer than
	// Limit events, so no expired event is left after Last.
	Done bool
}

// FlowStats is the state of one flow's queue.
type FlowStats struct {
	Flow string
	// Waiting counts runs pending or retrying: the queue depth.
	Waiting int
	Running int
	Dead    int
	// OldestWaiting is when the oldest waiting run was created (zero if
	// none is waiting).
	OldestWaiting time.Time
}

// AddFlowStats folds one (flow, state) group of a QueueStats query into
// out, which the query orders by flow. Both stores use it so the two
// dialects cannot disagree on what counts as waiting.
func AddFlowStats(out []FlowStats, flow string, state RunState, n int, oldest time.Time) []FlowStats {
	if len(out) == 0 || out[len(out)-1].Flow != flow {
		out = append(out, FlowStats{Flow: flow})
	}
	f := &out[len(out)-1]
	switch state {
	case RunPending, RunRetrying:
		f.Waiting += n
		if f.OldestWaiting.IsZero() || oldest.Before(f.OldestWaiting) {
			f.OldestWaiting = oldest.UTC()
		}
	case RunRunning:
		f.Running += n
	case RunDead:
		f.Dead += n
	}
	return out
}

// AttemptCount is how many attempts against one system had one outcome.
type AttemptCount struct {
	System  string
	Outcome AttemptOutcome
	Count   int
}

// PauseParams pause a system.
type PauseParams struct {
	System string
	Reason string
	Now    time.Time
}

// OperatorPause is the reason of a pause an operator asked for; such a
// pause is never lifted by a probe.
const OperatorPause = "paused by an operator"

// SystemPause is a paused system.
type SystemPause struct {
	System   string
	Reason   string
	PausedAt time.Time
}

// Store is every durable operation Switchboard performs. Implementations are
// safe for concurrent use; each method is one transaction.
type Store interface {
	// InsertEvents stores each new event and its runs in ONE transaction
	// (group commit) and reports, per event in order, its ID and whether it
	// was a duplicate. When it returns an error nothing was stored; the
	// error is ErrRefused when the database refused the values of one of
	// the events.
	InsertEvents(ctx context.Context, events []NewEvent) ([]InsertResult, error)
	// ExtendLeases pushes back the lease expiry of runs still held by Token.
	ExtendLeases(ctx context.Context, p ExtendParams) error
	// FinishAndClaim applies attempt results, then, when c is not nil,
	// claims runs, in ONE transaction: an executor's cycle (record what
	// ended, take what is next) costs one commit. The results slice has one
	// entry per param: nil or ErrLeaseLost. The claim leases up to c.Limit
	// runnable runs (pending or retrying and due, or running with an
	// expired lease), oldest due first, and starts an attempt on each; a
	// run finished here as due may be claimed by the same call. On error
	// neither half happened, and the error is ErrRefused when the database
	// refused the values of one of the results. (ClaimRuns and
	// FinishAttempts below are its halves alone.)
	FinishAndClaim(ctx context.Context, ps []FinishParams, c *ClaimParams) ([]error, []ClaimedRun, error)
	// ReleaseLeases makes every running run claimable now. A single-node
	// store calls it at startup, when no other process can hold a lease.
	ReleaseLeases(ctx context.Context, now time.Time) (int, error)

	GetEvent(ctx context.Context, id string) (Event, error)
	ListEvents(ctx context.Context, p ListEventsParams) ([]Event, error)
	GetRun(ctx context.Context, id string) (Run, error)
	ListRuns(ctx context.Context, p ListRunsParams) ([]Run, error)
	ListAttempts(ctx context.Context, runID string) ([]Attempt, error)
	ListOutputs(ctx context.Context, runID string) ([]StepOutput, error)
	// ReplayEvent creates new runs for a stored event, each with the next
	// generation for its flow.
	ReplayEvent(ctx context.Context, p ReplayParams) ([]Run, error)
	// RetryRun moves a dead run back to pending at its failed step with a
	// fresh attempt count. ErrConflict if the run is not dead; ErrNotFound
	// if there is no such run, as when retention deleted its event first. A
	// retry that succeeds is never undone by a retention pass running at the
	// same time: the pending run keeps its event.
	RetryRun(ctx context.Context, p RetryParams) (Run, error)

	// NextDue returns the earliest time a run becomes claimable (a pending
	// or retrying run's due time, or a lease's expiry); false if none is
	// waiting. Idle executors sleep until then.
	NextDue(ctx context.Context) (time.Time, bool, error)
	// AcquireLease takes the named lease for p.Holder, or renews it if
	// p.Holder has it, unless another holder's lease is unexpired. It
	// reports whether p.Holder holds the lease afterwards.
	AcquireLease(ctx context.Context, p LeaseParams) (bool, error)
	// ReleaseLease gives up the named lease if holder has it.
	ReleaseLease(ctx context.Context, name, holder string) error
	// DeleteExpired is one batch of a retention pass, in one short
	// transaction: it examines up to p.Limit events received before
	// p.Before, in (received_at, id) order after p.After/p.AfterID, and
	// deletes those whose runs have all finished, with their runs,
	// checkpoints and attempts. The others are kept and passed over: the
	// next batch starts after the result's Last/LastID, so a batch costs
	// the same however many expired events with unfinished runs precede it.
	// A pass starts at the zero position and ends when the result is Done.
	// Events another transaction holds (PostgreSQL: a replay or a retry in
	// progress) may be passed over uncounted and kept until the next pass.
	DeleteExpired(ctx context.Context, p DeleteParams) (DeleteResult, error)

	// QueueStats summarises the runs of each flow that has any waiting,
	// running or dead: the numbers behind queue-depth metrics and alerts.
	QueueStats(ctx context.Context) ([]FlowStats, error)
	// LastEventAt returns when the newest event of source was received;
	// false if the store holds none.
	LastEventAt(ctx context.Context, source string) (time.Time, bool, error)
	// AttemptStats counts attempts started at or after since, by system
	// and outcome: the numbers behind error-rate alerts.
	AttemptStats(ctx context.Context, since time.Time) ([]AttemptCount, error)

	// PauseSystem records that a system refused our credentials, or that
	// an operator paused it (Reason OperatorPause), which replaces a
	// credential pause. It reports whether the row was written: for a
	// credential pause, whether the system was not paused before (so one
	// alert is raised per pause, whichever node saw it first).
	PauseSystem(ctx context.Context, p PauseParams) (bool, error)
	// ResumeSystem lifts a pause; false if the system was not paused.
	ResumeSystem(ctx context.Context, system string) (bool, error)
	// ResumeCredentialPause lifts a pause unless an operator asked for
	// it: a probe that succeeded on a node that has not yet seen the
	// operator's pause must not lift it for every node. False if nothing
	// was lifted.
	ResumeCredentialPause(ctx context.Context, system string) (bool, error)
	// ListPauses returns the paused systems.
	ListPauses(ctx context.Context) ([]SystemPause, error)
	// WakeHeld makes every run held for system due at now; it returns how
	// many it woke.
	WakeHeld(ctx context.Context, system string, now time.Time) (int, error)

	// InitPollState creates a timed source's state, due at next, unless it
	// exists.
	InitPollState(ctx context.Context, source string, next time.Time) error
	// GetPollState returns a timed source's state; false if there is none.
	GetPollState(ctx context.Context, source string) (PollState, bool, error)
	// ListPollStates returns every timed source's state, by name.
	ListPollStates(ctx context.Context) ([]PollState, error)
	// CommitPollPage stores the page's new records as events with their
	// runs, remembers their versions and moves the cursor, in ONE
	// transaction. It returns one result per record, in order.
	CommitPollPage(ctx context.Context, p PollPage) ([]PollResult, error)
	// FinishPoll records a run's end and when the source is due next.
	FinishPoll(ctx context.Context, p PollRun) error
	// SeenVersions returns the last version seen of each of the records
	// ids of a poll source (absent: never seen), so a page's unchanged
	// records are dropped before any work is done for them.
	SeenVersions(ctx context.Context, source string, ids []string) (map[string]string, error)
	// SaveFingerprint upserts a write's fingerprint by ID. Delivery saves
	// it before the outbound call, so an echo that arrives while the call
	// is still in flight is recognised.
	SaveFingerprint(ctx context.Context, f Fingerprint) error
	// FindFingerprints returns the fingerprints of p's record, and those
	// whose record id is not known yet, saved or answered at or after
	// p.Since, newest write (WrittenAt) first. p.Limit bounds each kind
	// apart, so writes of unknown records never crowd out the record's own.
	FindFingerprints(ctx context.Context, p FindFingerprintsParams) ([]Fingerprint, error)
	// MarkEcho records the whole-record hash of a fingerprint's first echo
	// from p.Source (it keeps one that source recorded already), and gives
	// a fingerprint whose record id was not known the echo's record id. A
	// fingerprint deleted meanwhile is no error.
	MarkEcho(ctx context.Context, p MarkEchoParams) error
	// ForgetFingerprints deletes the record's fingerprints written before
	// p.Before; it returns how many.
	ForgetFingerprints(ctx context.Context, p ForgetFingerprintsParams) (int, error)
	// PruneFingerprints deletes up to limit fingerprints written before
	// before (retention: they only matter within the echo window).
	PruneFingerprints(ctx context.Context, before time.Time, limit int) (int, error)
	// GetLineage returns an event's lineage (zero when it has none).
	GetLineage(ctx context.Context, eventID string) (Lineage, error)

	// Ping checks that the store can take writes (readiness): that it
	// answers is not enough when its disk is full or it is a read-only
	// standby.
	Ping(ctx context.Context) error
	// Close releases the store's connections.
	Close() error
}

// Cycler is the store's executor cycle (see Store.FinishAndClaim).
type Cycler interface {
	FinishAndClaim(ctx context.Context, ps []FinishParams, c *ClaimParams) ([]error, []ClaimedRun, error)
}

// ClaimRuns is a claim alone: FinishAndClaim with no results.
func ClaimRuns(ctx context.Context, s Cycler, p ClaimParams) ([]ClaimedRun, error) {
	_, out, err := s.FinishAndClaim(ctx, nil, &p)
	return out, err
}

// FinishAttempts applies attempt results alone: FinishAndClaim with no claim.
func FinishAttempts(ctx context.Context, s Cycler, ps []FinishParams) ([]error, error) {
	results, _, err := s.FinishAndClaim(ctx, ps, nil)
	return results, err
}
