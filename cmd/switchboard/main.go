// Command switchboard is the Switchboard integration engine: webhooks in,
// flows out, nothing lost. Run `switchboard help` for the commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata" // cron time zones work on hosts without a zoneinfo database

	"github.com/switchboard-dev/switchboard/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv)
	stop()
	os.Exit(code)
}
