// Package cli implements the switchboard subcommands. Main takes its
// arguments, output streams and environment as parameters so every command
// is testable with buffers.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/switchboard-dev/switchboard/internal/app"
	"github.com/switchboard-dev/switchboard/internal/config"
	"github.com/switchboard-dev/switchboard/internal/flow"
)

// Version is set at build time with -ldflags "-X ...cli.Version=v1.2.3".
var Version = "dev"

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// env is what every command receives.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) (string, bool)
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, e env, args []string) error
}

var commands []command

func init() {
	commands = []command{
		{"serve", "run ingest and executor: serve --config FILE [--addr 127.0.0.1:8080] [--no-migrate]", runServe},
		{"migrate", "apply the store's schema migrations: migrate --config FILE", runMigrate},
		{"check", "validate a config and print what it defines: check --config FILE", runCheck},
		{"connectors", "list connector kinds, their config keys and actions: connectors [--format text|json] [KIND...]", runConnectors},
		{"demo", "run a self-contained example with a fake CRM and SMS provider", runDemo},
		{"events", "list or show stored events: events list|show [ID] --config FILE", runEvents},
		{"dlq", "list dead-lettered runs: dlq list --config FILE", runDLQ},
		{"replay", "run an event's flows again as new runs: replay EVENT_ID --config FILE", runReplay},
		{"backfill", "walk a poll source's history: backfill SOURCE --since CURSOR --config FILE", runBackfill},
		{"polls", "list timed sources: their schedule, cursor, last run and error: polls --config FILE", runPolls},
		{"reconcile", "compare a reconcile source's owner and mirror now: reconcile SOURCE [--dry-run] --config FILE", runReconcile},
		{"systems", "list, pause or resume systems: systems list|pause NAME|resume NAME --config FILE", runSystems},
		{"retry", "retry a dead run from its failed step: retry RUN_ID --config FILE", runRetry},
		{"bench", "measure ingest and delivery against a bare HTTP baseline: bench [--store postgres://…] [--json]", runBench},
		{"version", "print the version", func(_ context.Context, e env, _ []string) error {
			fmt.Fprintln(e.stdout, "switchboard", Version)
			return nil
		}},
	}
}

// usageError is a command-line mistake (exit status 2).
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

// Main runs the command named by args[0] and returns the exit status.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) (string, bool)) int {
	e := env{stdout: stdout, stderr: stderr, getenv: getenv}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stderr)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, e, args[1:])
		var ue usageError
		switch {
		case err == nil:
			return exitOK
		case errors.Is(err, flag.ErrHelp):
			return exitOK
		case errors.As(err, &ue):
			fmt.Fprintf(stderr, "switchboard %s: %s\n", c.name, ue.msg)
			return exitUsage
		default:
			fmt.Fprintf(stderr, "switchboard %s: %s\n", c.name, indentErrors(err))
			return exitFail
		}
	}
	fmt.Fprintf(stderr, "switchboard: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: switchboard COMMAND [flags]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
}

// indentErrors puts each joined error on its own line.
func indentErrors(err error) string {
	lines := strings.Split(err.Error(), "\n")
	if len(lines) == 1 {
		return lines[0]
	}
	return fmt.Sprintf("%d problems:\n  %s", len(lines), strings.Join(lines, "\n  "))
}

// flags returns a FlagSet that reports errors as usage errors.
func flags(name string, e env) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	// Allow flags after positional arguments: "events show ID --config x".
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return usageError{err.Error()}
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return fs.Parse(append([]string{"--"}, pos...))
}

// loadPlan reads and compiles the config file.
func loadPlan(e env, path string) (*flow.Plan, error) {
	if path == "" {
		return nil, usageError{"--config FILE is required"}
	}
	c, err := config.Load(path, e.getenv)
	if err != nil {
		return nil, err
	}
	return app.Compile(c)
}

// commandLogger is the log of a one-off command that stores events (backfill,
// reconcile): warnings and errors on stderr, as serve would log them, so
// what the engine does instead of running a flow is seen.
func commandLogger(e env) *slog.Logger {
	log, _ := newLogger(e.stderr, "warn") // a known level: no error
	return log
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError{fmt.Sprintf("--log-level: %v", err)}
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})), nil
}
