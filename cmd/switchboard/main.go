// Command switchboard is the Switchboard integration engine: webhooks in,
// flows out, nothing lost. Run `switchboard help` for the commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	_ "time/tzdata" // cron time zones work on hosts without a zoneinfo database

	"github.com/switchboard-dev/switchboard/internal/cli"
)

// gcPercent is the collector's setting unless GOGC is set: twice Go's
// default. The node's garbage is short-lived (a request's body and values, a
// run's call), so collecting half as often saves ~5% of its CPU per event for
// ~15 MB more peak RSS under full load, well inside its memory budget; an
// idle node's heap is too small for the difference to show
// (docs/performance.md, "GOGC").
const gcPercent = 200

func main() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(gcPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv)
	stop()
	os.Exit(code)
}
