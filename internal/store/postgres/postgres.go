// Package postgres is the shared Store for several nodes: pgx v5 with a
// connection pool, claims with FOR UPDATE SKIP LOCKED so nodes never wait on
// each other's rows, LISTEN/NOTIFY to wake idle workers, and migrations
// applied under an advisory lock so nodes may start at once.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchboard-dev/switchboard/internal/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// channel is the NOTIFY channel on which commits that create runnable runs
// announce themselves.
const channel = "switchboard_runs"

// Store is the PostgreSQL implementation of store.Store.
type Store struct {
	pool *pgxpool.Pool
}

var _ store.Store = (*Store)(nil)

// Options tune Open.
type Options struct {
	// MaxConns sizes the pool when the DSN has no pool_max_conns.
	MaxConns int32
	// Migrate applies pending migrations; when false, Open fails if the
	// schema is behind (a node must not run against a schema it does not know).
	Migrate bool
}

// Open connects to the database named by dsn (a postgres:// URL; pgx pool
// parameters such as pool_max_conns are honoured).
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse DSN: %w", redactDSN(err))
	}
	if !strings.Contains(dsn, "pool_max_conns") && opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	cfg.ConnConfig.DialFunc = dialer().DialContext
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	s := &Store{pool: pool}
	// Answering is enough here: read-only commands may use a standby.
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect to %s: %w", cfg.ConnConfig.Host, err)
	}
	if opts.Migrate {
		err = s.Migrate(ctx)
	} else {
		err = s.checkSchema(ctx)
	}
	if err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// redactDSN keeps a password in a malformed DSN out of error messages.
func redactDSN(err error) error {
	return errors.New(strings.SplitN(err.Error(), "://", 2)[0] + ": invalid connection string")
}

// Close closes the pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// Ping checks that the database takes writes: after a failover, a DSN that
// still names the old primary, now a standby, answers every query and
// refuses every write, and the node must report itself unready.
func (s *Store) Ping(ctx context.Context) error {
	var readOnly string
	if err := s.pool.QueryRow(ctx, `SELECT current_setting('transaction_read_only')`).Scan(&readOnly); err != nil {
		return err
	}
	if readOnly == "on" {
		return errors.New("the database is read-only (a standby, or default_transaction_read_only is on): it takes no writes")
	}
	return nil
}

func migrationNames() ([]string, error) {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	sort.Strings(names)
	return names, err
}

func version(name string) string {
	return strings.TrimSuffix(strings.TrimPrefix(name, "migrations/"), ".sql")
}

// Migrate applies pending migrations. It holds a transaction-scoped
// advisory lock (keyed by the schema, so separate schemas migrate
// independently), so nodes that start together apply each migration once.
func (s *Store) Migrate(ctx context.Context) error {
	names, err := migrationNames()
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('switchboard_migrate.' || current_schema()))`); err != nil {
			return fmt.Errorf("migration lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL)`); err != nil {
			return err
		}
		for _, name := range names {
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM schema_migrations WHERE version = $1`, version(name)).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				continue
			}
			body, err := migrations.ReadFile(name)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, string(body)); err != nil {
				return fmt.Errorf("migration %s: %w", name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`, version(name), time.Now()); err != nil {
				return err
			}
		}
		return nil
	})
}

// checkSchema fails unless every embedded migration is applied.
func (s *Store) checkSchema(ctx context.Context) error {
	names, err := migrationNames()
	if err != nil {
		return err
	}
	var applied []string
	rows, err := s.pool.Query(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return fmt.Errorf("postgres: schema not migrated (run `switchboard migrate`): %w", err)
	}
	applied, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, name := range names {
		if !slices.Contains(applied, version(name)) {
			return fmt.Errorf("postgres: migration %s is not applied (run `switchboard migrate`)", version(name))
		}
	}
	return nil
}

// Listen calls wake whenever another connection commits runnable runs,
// until ctx ends. It holds one connection for LISTEN and reconnects after
// errors; missed notifications are covered by the executor's fallback poll.
func (s *Store) Listen(ctx context.Context, wake func(), onError func(error)) error {
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, wake)
		if ctx.Err() != nil {
			return nil
		}
		// The caller's fallback poll covers the gap, but a listener that
		// keeps failing must be seen: report it, then retry shortly.
		if onError != nil {
			onError(err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
		wake()
	}
	return nil
}

func (s *Store) listenOnce(ctx context.Context, wake func()) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN "+channel); err != nil {
		return err
	}
	defer func() {
		// Leave the pooled connection clean.
		_, _ = conn.Exec(context.WithoutCancel(ctx), "UNLISTEN "+channel)
	}()
	for {
		if _, err := conn.Conn().WaitForNotification(ctx); err != nil {
			return err
		}
		wake()
	}
}

func isNoRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }

// refused marks err as store.ErrRefused when the server refused the
// statement for the values it was given: SQLSTATE classes 22 (data
// exception: a value of the wrong form or range), 23 (integrity
// constraint violation) and 54 (program limit exceeded: an index entry too
// large). Connection, lock (class 40: serialization failure, deadlock) and
// resource errors are left as they are: the same values may pass later.
func refused(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && len(pe.Code) == 5 {
		switch pe.Code[:2] {
		case "22", "23", "54":
			return store.Refused(err)
		}
	}
	return err
}
