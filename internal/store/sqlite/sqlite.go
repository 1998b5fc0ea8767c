// Package sqlite is the embedded Store: one file, WAL mode, synchronous=FULL
// so a committed event survives power loss, one writer connection (SQLite
// serialises writers anyway; one connection avoids busy errors) and a small
// pool of readers for the operator queries.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	sqlitedrv "modernc.org/sqlite" // also registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/switchboard-dev/switchboard/internal/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is the SQLite implementation of store.Store.
type Store struct {
	w *sql.DB // the one writer connection
	r *sql.DB // readers

	stmts map[string]*sql.Stmt // prepared at Open, read-only afterwards

	path string      // the database file, as opened
	file os.FileInfo // what path named at Open (see sameFile)
	wal  os.FileInfo // what path-wal named at Open, nil if nothing (see sameLog)
	shm  os.FileInfo // what path-shm named at Open, nil if nothing (see sameIndex)
	pin  *sql.Conn   // a reader that keeps the write-ahead log open (see Open)

	mu      sync.Mutex // guards the fields below
	rescued bool       // the moved log's commits are in the database file (see rescue)
	saved   string     // where the removed database file's content was copied (see saveRemoved)
	closed  bool       // Close was called (the log is gone with the last connection)
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the database file at path and applies the
// schema migrations.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlite: empty path")
	}
	if err := oneName(path); err != nil {
		return nil, err
	}
	// wal_autocheckpoint stays at its default (1,000 pages): 10,000 cut the
	// store benchmark's CPU per event by a sixth, but each checkpoint then
	// held one group commit for long enough to double the bench's ingest
	// p99 (10 -> 20 ms) for no measurable CPU or throughput gain.
	pragmas := "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)"
	base := "file:" + (&url.URL{Path: path}).EscapedPath()
	w, err := sql.Open("sqlite", base+"?"+pragmas+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	s := &Store{w: w, stmts: map[string]*sql.Stmt{}, path: path}
	if err := s.migrate(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("migrate sqlite %s: %w", path, err)
	}
	if s.file, err = os.Stat(path); err != nil { // the migrations created it
		w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	if err := s.prepare(ctx); err != nil {
		for _, st := range s.stmts {
			st.Close()
		}
		w.Close()
		return nil, err
	}
	// Readers get a small page cache (SQLite's default is 2000 KiB per
	// connection). Their queries are one-pass scans (the queue sampler reads
	// every queued run every 5 s, the listings) and point lookups, which a
	// bigger cache does not speed up: the file's pages are in the OS cache.
	// The cost of a cache is higher than its size says: modernc's build of
	// SQLite pools the caches of all connections (so a reader's scan can take
	// over the writer's share too), its allocator gives each ~4.3 KiB page an
	// 8 KiB slot, and keeps freed memory resident. With the default, one
	// sample of a 95,000-run queue left the reader's 2000 KiB of pages
	// (~3.7 MB resident) and a ~2 MB sort buffer (whose size also follows
	// cache_size) in an idle node.
	r, err := sql.Open("sqlite", base+"?"+pragmas+"&_pragma=cache_size(-256)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	r.SetMaxOpenConns(5) // four for queries, one pinned
	r.SetMaxIdleConns(4)
	s.r = r
	// SQLite deletes the write-ahead log when the last connection to the
	// database closes, and the next connection creates a new one (a new
	// file). database/sql closes a connection it finds interrupted (a
	// cancelled statement): were that the writer while no reader is open,
	// the log would be replaced under a running store, and sameLog would
	// refuse every commit after. The pinned connection, used once here to
	// open the log and never again, keeps it open until Close, so the log
	// is one file from here to Close (truncated and rewritten in place by
	// checkpoints), and any other file at its path was put there by someone
	// else.
	if s.pin, err = r.Conn(ctx); err == nil {
		var version int
		err = s.pin.QueryRowContext(ctx, `PRAGMA schema_version`).Scan(&version)
	}
	if err == nil {
		s.wal, err = os.Stat(path + "-wal")
		if errors.Is(err, fs.ErrNotExist) {
			err = nil // no log to watch: not in WAL mode
		}
	}
	if err == nil {
		s.shm, err = os.Stat(path + "-shm")
		if errors.Is(err, fs.ErrNotExist) {
			err = nil // no index to watch: not in WAL mode
		}
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	return s, nil
}

// oneName refuses a database file that has more than one name (hard
// link). SQLite finds a database's write-ahead log and its index by the
// name it was opened by (NAME-wal, NAME-shm), so a process that opens the
// file by another name keeps a log of its own: it does not see the commits
// in this one's log, and its own commits are lost, or corrupt the file,
// when the two logs are copied into it (tried: a second process on a hard
// link saw none of three committed events, and its own commit was gone
// after both closed). switchboard's lock, also found by name, would not
// keep a second node off the file either. Locking the file itself would
// stop a second node, but not a sqlite3 shell, a backup script or a
// switchboard command opened by the other name, so the file is refused
// instead, at every open, by every process: the operator, who made the
// link, removes the names not in the config. (A symbolic link is fine:
// SQLite follows it, and keeps the log beside the file it leads to.)
func oneName(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // this open creates it
	}
	if err != nil {
		return fmt.Errorf("open sqlite %s: %w", path, err)
	}
	if n := links(fi); n > 1 {
		return fmt.Errorf("sqlite: the database file %s has %d names (hard links): a process that opened it by another name "+
			"would keep another write-ahead log, and commits would be lost; remove the other names "+
			"(find / -xdev -samefile %s lists them; a symbolic link may stand in for one)", path, n, path)
	}
	return nil
}

// Close closes both connection pools.
//
// When the log's index (path-shm) is no longer the one opened (see
// sameIndex), the pinned connection is left open until the process exits:
// the last connection to close would copy the log into the database file
// by this process's index, which no longer knows what other processes
// wrote (or, after one of them emptied the log, what is in it), and then
// delete the log, with the commits made through the other index (tried:
// an operator's `switchboard systems pause`, made after `rm STORE-shm`,
// was gone after the node's clean stop). While one connection stays open,
// SQLite neither copies nor deletes (it needs the database to itself), so
// the files are left as a crash would leave them, and the next process to
// open the database builds its index from the log at the path, as the
// other processes did. (Not this process: the connection left open keeps
// the stale index, and its file descriptors, until it exits; serve opens
// its store once.) Close then says so in its error, errFilesLeft.
//
// When the log (path-wal) is no longer the one opened (see sameLog), its
// commits are copied into the database file here, unless rescue did so
// already (see copyLog), and the pinned connection is left open too:
// SQLite deletes the log by name at the last close, which is no longer
// this process's log but whatever another process (a `switchboard systems
// pause`, a `sqlite3` shell) created at the path since, with the commits
// it made there. Tried, before: after `rm STORE-wal`, such a pause was
// gone after the node's clean stop, and when the index was still the one
// opened the close's copy also wrote pages of this process's log where the
// index, by then the other process's, named the other's frames, leaving
// the database file unreadable ("database disk image is malformed"). (Not
// when both the log and its index moved, nothing was copied before Close,
// and another process has committed into a new log at the path since: its
// commits were made on a database without this process's latest ones,
// which only this process's log holds. The close then copies them and
// deletes the other log, as SQLite always did, rather than leave that log
// to be replayed over the copy; and says so in its error, since SQLite
// deletes nothing while another process has the database open, and that
// process's log would then be copied over this one's commits.)
func (s *Store) Close() error {
	s.mu.Lock()
	rescued, closed := s.rescued, s.closed
	s.closed = true
	s.mu.Unlock()
	if closed {
		return nil
	}
	for _, st := range s.stmts {
		st.Close()
	}
	fileErr, logMoved, indexMoved := s.sameFile(), s.sameLog() != nil, s.sameIndex() != nil
	var err, note error // what failed; what the operator must know
	keep := indexMoved
	if logMoved {
		other := s.otherLog()
		switch {
		case rescued:
			keep = true
		case other && indexMoved:
			// Both moved, a log of another process's at the path: see above.
			err = s.copyLog(context.Background(), indexMoved, other)
			keep = false
			note = fmt.Errorf("sqlite: %s-wal: another process committed into a new log at this path after this process's "+
				"log was removed, on a database without this process's last commits: those are now copied into the "+
				"database file, and that log is deleted as this store closes unless a process still has the database "+
				"open; if one has, stop it and check the file (sqlite3 %s 'PRAGMA integrity_check') before starting "+
				"switchboard again", s.path, s.path)
		default:
			err = s.copyLog(context.Background(), indexMoved, other)
			// Failed (readers kept the log busy): the last close copies
			// it, should it find the database to itself.
			keep = err == nil || errors.Is(err, errOtherLog)
			if errors.Is(err, errOtherLog) {
				err = nil // nothing of this process's is left to copy: see errOtherLog
			}
		}
		if err != nil {
			err = fmt.Errorf("sqlite: %s-wal: %w; copying the commits it holds into the database file failed "+
				"(SQLite copies them as the last connection closes, if no other process has the database open): %w", s.path, errLogMoved, err)
			note = nil // the copy that note reports was not made
		}
	}
	if s.pin != nil && !keep {
		_ = s.pin.Close() // only hands it back to r, whose Close closes it
	}
	switch {
	case fileErr != nil:
		// Whatever the log: the file it belongs to is gone. Saved now
		// if no write tried since (see saveRemoved).
		err = errors.Join(err, s.saveRemoved(context.Background(), fileErr))
	case keep:
		err = errors.Join(err, fmt.Errorf("sqlite: %s: %w", s.path, errFilesLeft))
	}
	err = errors.Join(err, note)
	return errors.Join(err, s.r.Close(), s.w.Close())
}

// errFilesLeft is Close's answer when it left the database's files to the
// next process to open them (see Close).
var errFilesLeft = errors.New("the write-ahead log or its index was removed or replaced while this process had them open: " +
	"the files at the path are left as a crash leaves them, and the next start recovers every commit in them")

// preparedQueries are prepared on the writer connection at Open. Parsing
// SQL costs more than running these small statements, and the writer is one
// long-lived connection, so each is prepared once. (They cannot be prepared
// lazily: inside a transaction the only connection is taken.)
var preparedQueries = []string{qInsEvent, qInsRun, qFindEvent, qClaim, qLoad, qLoadOuts, qInsAttempt, qUpdRun, qInsStep, qSeenVersion, qRememberVersion}

func (s *Store) prepare(ctx context.Context) error {
	for _, q := range preparedQueries {
		st, err := s.w.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", q, err)
		}
		s.stmts[q] = st
	}
	return nil
}

// stmt returns the prepared statement for query, bound to tx.
func (s *Store) stmt(ctx context.Context, tx *sql.Tx, query string) (*sql.Stmt, error) {
	st, ok := s.stmts[query]
	if !ok {
		return nil, fmt.Errorf("sqlite: statement not prepared: %q", query)
	}
	return tx.StmtContext(ctx, st), nil
}

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		return err
	}
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		version := strings.TrimSuffix(strings.TrimPrefix(name, "migrations/"), ".sql")
		err := s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			body, err := migrations.ReadFile(name)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, string(body)); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, version, time.Now().UnixMicro())
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// tx runs fn in one write transaction (BEGIN IMMEDIATE, so the write lock is
// taken up front and never upgraded mid-transaction).
//
// ctx bounds the transaction: the waits for the writer connection and for
// the write lock (should another process hold it), and a cancellation
// rolls it back. fn's statements get a context that is never done: the
// driver watches a cancellable context with a goroutine and a progress
// handler for every statement, which cost the store benchmarks 10–17% of
// their CPU (medians, 2026-11-29: a group commit ~95 → ~79 µs per event,
// a finish-and-claim cycle ~133 → ~120 µs per run). Once BEGIN IMMEDIATE holds
// the lock no statement waits for another connection, so there is nothing
// a cancellation would cut short in between.
func (s *Store) tx(ctx context.Context, fn func(context.Context, *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(context.WithoutCancel(ctx), tx); err != nil {
		_ = tx.Rollback()
		return refused(err)
	}
	if err := s.sameFiles(); err != nil {
		_ = tx.Rollback()
		return s.rescue(ctx, err) // the writer is free again
	}
	return tx.Commit()
}

// exec runs a write outside a transaction of ours (an operator's retry or
// pause, a lease renewal) on the writer, refused like a commit (see
// sameFile, sameLog) once the file or its log is gone.
func (s *Store) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if err := s.writable(ctx); err != nil {
		return nil, err
	}
	return s.w.ExecContext(ctx, query, args...)
}

// writable is the check a commit makes (see tx), for a write that takes
// the writer afterwards.
func (s *Store) writable(ctx context.Context) error {
	if err := s.sameFiles(); err != nil {
		return s.rescue(ctx, err)
	}
	return nil
}

// checked is the writer as an execer whose writes go through exec.
type checked struct{ s *Store }

func (c checked) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return c.s.exec(ctx, query, args...)
}

// sameFile fails when the database file has been removed, renamed or
// replaced since Open. SQLite goes on writing to the file it has open, so
// the commits would succeed, and a webhook would be acknowledged, into a
// file that the next start no longer finds: its events would be lost. No
// commit is made instead (ingest answers 503) until the node is restarted.
// A stat costs a microsecond or two; a commit, an fsync.
func (s *Store) sameFile() error {
	if s.file == nil {
		return nil // Open's migrations, before the file is known
	}
	fi, err := os.Stat(s.path)
	if err == nil && os.SameFile(fi, s.file) {
		return nil
	}
	return fmt.Errorf("sqlite: the database file %s: %w; "+
		"nothing is committed until switchboard is restarted", s.path, errFileMoved)
}

// errFileMoved is sameFile's answer.
var errFileMoved = errors.New("removed, moved or replaced while this process had it open")

// sameFiles checks the database file (sameFile), its log (sameLog), then
// the log's index (sameIndex): three stats per commit.
func (s *Store) sameFiles() error {
	if err := s.sameFile(); err != nil {
		return err
	}
	if err := s.sameLog(); err != nil {
		return err
	}
	return s.sameIndex()
}

// errLogMoved is sameLog's answer.
var errLogMoved = errors.New("the write-ahead log was removed, moved or replaced while this process had it open")

// sameLog fails when the write-ahead log (path-wal) has been removed,
// renamed or replaced since Open. The log holds the commits SQLite has not
// yet copied into the database file (it does so every ~4 MB of log, and at
// a clean close), and SQLite goes on appending to the log it has open, so
// the commits would succeed, and a webhook would be acknowledged, into a
// file no one can find: a crash or a kill before the next clean stop would
// lose them, and the commits before it since the last copy too (tried:
// none of six acknowledged events survived a SIGKILL). No commit is made
// instead, as for the database file (see sameFile); rescue saves the
// commits already made. A stat costs a microsecond or two.
func (s *Store) sameLog() error {
	if _, moved := s.moved("-wal", s.wal); !moved {
		return nil
	}
	return fmt.Errorf("sqlite: %s-wal: %w: SQLite goes on writing to the log it has open, which a crash would lose, "+
		"so nothing is committed until switchboard is restarted", s.path, errLogMoved)
}

// errIndexMoved is sameIndex's answer.
var errIndexMoved = errors.New("the write-ahead log's index was removed, moved or replaced while this process had it open")

// sameIndex fails when the log's index (path-shm, the shared memory in
// which every process using the database finds which of the log's frames
// hold which pages, and takes its locks) has been removed, renamed or
// replaced since Open. This process goes on using the index it has mapped;
// the next process to open the database (a `switchboard events list`, a
// `sqlite3` shell, a backup) makes a new one at the path, rebuilt from the
// log, and from then on neither sees the other's commits nor its locks.
// Tried, with `switchboard serve` and the sqlite3 shell, before this
// check: after `rm STORE-shm`, an operator's `switchboard systems pause`
// was confirmed, then overwritten in the log by the node's next commits
// (lost); a `sqlite3 STORE 'PRAGMA wal_checkpoint(TRUNCATE)'` emptied the
// log under the node, whose next ten acknowledged events no other process
// saw and a kill -9 then lost, or whose clean stop then copied its stale
// index's frames into the database file, leaving all of it unreadable
// ("database disk image is malformed"). No commit is made instead, until a
// restart opens the index at the path. Nothing needs copying: the commits
// made are in the log at the path, where the other processes find them;
// and Close leaves the log to the next open rather than copy it by a stale
// index. (A process that opens the database between this check and the
// commit after it builds its index without that one commit, which can
// then be lost as above: the window is the commit's own, microseconds.)
// It is one more stat per commit: 2 – 3 µs on the 2-core host (measured
// 2026-11-30), against the commit's fsync of 1 – 4 ms.
func (s *Store) sameIndex() error {
	if _, moved := s.moved("-shm", s.shm); !moved {
		return nil
	}
	return fmt.Errorf("sqlite: %s-shm: %w: another process opening the database would keep another index, and commits "+
		"would be lost, so nothing is committed until switchboard is restarted (a restart opens the index at the path; "+
		"nothing committed before is lost)", s.path, errIndexMoved)
}

// rescue returns err, and when it is sameLog's, first copies the commits
// the moved log holds into the database file (see copyLog): they were
// acknowledged, and until then a crash would lose them. It says in the
// error whether the copy was made, and tries again at the next write if it
// failed (a reader kept the log busy past busy_timeout, say).
func (s *Store) rescue(ctx context.Context, err error) error {
	if errors.Is(err, errFileMoved) {
		return s.saveRemoved(ctx, err)
	}
	if !errors.Is(err, errLogMoved) {
		return err
	}
	switch cerr := s.copyLog(ctx, s.sameIndex() != nil, s.otherLog()); {
	case errors.Is(cerr, errOtherLog):
		return fmt.Errorf("%w; %w", err, cerr)
	case cerr != nil:
		return fmt.Errorf("%w; copying the commits it holds into the database file failed (tried again at the next write; "+
			"stop switchboard with SIGTERM, not SIGKILL: a clean stop copies them): %w", err, cerr)
	}
	return fmt.Errorf("%w; the commits it held are copied into the database file, and a restart loses none", err)
}

// saveRemoved returns sameFile's err, and first writes, once, what the
// database file held (still open here, and readable, though no longer at
// its path) to a new file beside it: every event acknowledged so far
// would otherwise go with this process, since a restart creates an empty
// database at the path. The copy is made with VACUUM INTO on the writer,
// whose commits are refused anyway; it reads this process's log and
// index, so it holds every commit made. It is not put at the path itself:
// whoever removed the file may have meant it, and a file there now is
// someone else's. The error names the copy and what to do with it.
func (s *Store) saveRemoved(ctx context.Context, err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.saved == "" {
		to := fmt.Sprintf("%s.recovered-%s", s.path, time.Now().UTC().Format("20060102T150405Z"))
		// Not cancelled: a copy cut off half way is no copy.
		if _, cerr := s.w.ExecContext(context.WithoutCancel(ctx), `VACUUM INTO ?`, to); cerr != nil {
			_ = os.Remove(to)
			return fmt.Errorf("%w; copying what it held to %s failed (tried again at the next write; until then it can be "+
				"copied from /proc/%d/fd, and is lost when switchboard stops): %w", err, to, os.Getpid(), cerr)
		}
		s.saved = to
	}
	return fmt.Errorf("%w; what it held, every commit made, is copied to %s: to keep it, stop switchboard, "+
		"remove %s-wal and %s-shm if they are there (they belong to the removed file, and would be read into the copy), "+
		"move the copy to %s, and start it again", err, s.saved, s.path, s.path, s.path)
}

// errOtherLog is copyLog's answer when the copy would do harm.
var errOtherLog = errors.New("the commits it held are not copied into the database file: another process has committed into a new log " +
	"at the path since, through the index this process shares with it, which now names that log's frames; " +
	"a copy would write this process's frames in their place (another process can only have started a new log " +
	"once this one's was copied in full, so nothing is lost)")

// copyLog copies the commits the moved log holds into the database file (a
// checkpoint), once. TRUNCATE rather than FULL also empties the log's
// index, so that readers opened since (whose log is whatever is at the
// path now) read the database file instead of failing on frames their log
// does not have. The writer must be free: a checkpoint waits for it.
//
// Not when another process has committed into a new log at the path
// through the index this process still shares (see otherLog): a
// checkpoint copies the frames the index names, from this process's log,
// where the index now names the other log's frames (tried: the copy wrote
// this log's old frames over the other process's pages, and the database
// file was unreadable, "database disk image is malformed"). Another
// process can only have committed so when this log was copied in full:
// its first read would otherwise fail on frames its log does not have
// (tried: `disk I/O error (522)`, at every open), and its first commit
// starts a new log only then. (A process that commits between this check
// and the checkpoint is not seen: the window is the check's, microseconds.)
//
// indexMoved and otherLog are what the caller found of the index (see
// sameIndex) and of the file at the log's path (see otherLog).
func (s *Store) copyLog(ctx context.Context, indexMoved, otherLog bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rescued {
		return nil
	}
	if !indexMoved && otherLog {
		return errOtherLog
	}
	// Not cancelled: an interrupted writer is closed (see Open), and a
	// new one would open the log at the path, not the one to copy.
	var busy, frames, copied int
	err := s.w.QueryRowContext(context.WithoutCancel(ctx), `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &frames, &copied)
	if err == nil && busy != 0 {
		err = errors.New("readers kept it busy")
	}
	if err != nil {
		return err
	}
	s.rescued = true
	return nil
}

// otherLog reports whether a file at the log's path, not the log this
// process opened (see sameLog), holds frames: another process has
// committed into it (opening a database creates an empty log).
func (s *Store) otherLog() bool {
	now, moved := s.moved("-wal", s.wal)
	return moved && now != nil && now.Size() > 0
}

// moved reports whether the file at path+suffix is no longer was, the one
// Open found there (a file removed, renamed or replaced), and returns what
// is there now (nil: nothing). A file Open did not find (was nil: not in
// WAL mode) is never moved.
func (s *Store) moved(suffix string, was os.FileInfo) (now os.FileInfo, moved bool) {
	if was == nil {
		return nil, false
	}
	fi, err := os.Stat(s.path + suffix)
	if err != nil {
		return nil, true
	}
	return fi, !os.SameFile(fi, was)
}

// refused marks err as store.ErrRefused when SQLite refused a statement
// for the values it was given: a constraint (CHECK, NOT NULL, UNIQUE,
// FOREIGN KEY), a value too big, a datatype mismatch. Busy, I/O and
// full-disk errors are left as they are: the same values may pass later.
func refused(err error) error {
	var se *sqlitedrv.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff { // the primary code of an extended one
		case sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_MISMATCH:
			return store.Refused(err)
		}
	}
	return err
}

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// placeholders returns "?, ?, ?" for n values.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// Ping checks that the store can commit, as ingest needs it to: that the
// database file is still the one opened, and that a write transaction on
// the writer connection commits. A full disk, a read-only file system or a
// failing device let reads, and a BEGIN, through; only a commit finds them.
// It costs one small commit (an fsync).
func (s *Store) Ping(ctx context.Context) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		// A changed value: SQLite writes no page for an update that
		// leaves a row as it was.
		_, err := tx.ExecContext(ctx, `INSERT INTO readiness (id, probes) VALUES (1, 1)
			ON CONFLICT (id) DO UPDATE SET probes = probes + 1`)
		return err
	})
}
