package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/internal/alert/rule"
	"github.com/switchboard-dev/switchboard/internal/app"
	"github.com/switchboard-dev/switchboard/internal/ownership"
)

func runServe(ctx context.Context, e env, args []string) error {
	fs := flags("serve", e)
	cfgPath := fs.String("config", "switchboard.yaml", "config file")
	addr := fs.String("addr", "127.0.0.1:8080", "listen address")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	noMigrate := fs.Bool("no-migrate", false, "PostgreSQL: refuse to start on a schema that is behind instead of migrating it")
	noExecutor := fs.Bool("no-executor", false, "ingest only: accept webhooks and run timed sources, execute no runs (other nodes on the same PostgreSQL store do)")
	debugAddr := fs.String("debug-addr", "", "serve Go's profiles (net/http/pprof, under /debug/pprof/) on this address, e.g. 127.0.0.1:6060; off when empty")
	if err := parse(fs, args); err != nil {
		return err
	}
	log, err := newLogger(e.stderr, *level)
	if err != nil {
		return err
	}
	plan, err := loadPlan(e, *cfgPath)
	if err != nil {
		return err
	}
	for _, w := range plan.Warnings {
		log.Warn("config: " + w)
	}
	srv, err := app.NewServer(ctx, plan, app.Options{Logger: log, NoMigrate: *noMigrate, NoExecutor: *noExecutor})
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		// Stopped (SIGTERM) while starting: what was asked for, not a
		// failure; migrations are transactional, so nothing is half done.
		log.Info("stopped before it was ready", "error", err)
		return nil
	}
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		srv.Close()
		return fmt.Errorf("listen: %w", err)
	}
	if *debugAddr != "" {
		stop, err := serveDebug(*debugAddr)
		if err != nil {
			ln.Close()
			srv.Close()
			return err
		}
		defer stop()
		log.Info("serving profiles", "addr", *debugAddr, "path", "/debug/pprof/")
	}
	log.Info("serving", "addr", ln.Addr().String(), "store", plan.Store, "sources", len(plan.Sources),
		"flows", len(plan.Flows), "workers", plan.Workers, "executor", !*noExecutor)
	return srv.Serve(ctx, ln)
}

// serveDebug serves Go's runtime profiles on addr, apart from the webhook
// listener, so that a node can be profiled where it runs (go tool pprof
// http://ADDR/debug/pprof/profile). Profiles hold code locations and
// counts, not data, but they are for operators: keep addr on loopback or a
// private network. The returned function stops it.
func serveDebug(addr string) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on --debug-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	return func() { srv.Close() }, nil
}

func runMigrate(ctx context.Context, e env, args []string) error {
	fs := flags("migrate", e)
	cfgPath := fs.String("config", "switchboard.yaml", "config file")
	if err := parse(fs, args); err != nil {
		return err
	}
	plan, err := loadPlan(e, *cfgPath)
	if err != nil {
		return err
	}
	st, err := app.OpenStore(ctx, plan, true)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s: schema is up to date\n", plan.Store)
	return st.Close()
}

func runCheck(_ context.Context, e env, args []string) error {
	fs := flags("check", e)
	cfgPath := fs.String("config", "switchboard.yaml", "config file")
	format := fs.String("format", "text", "output: text (everything), or only the data-flow graph as dot or mermaid")
	if err := parse(fs, args); err != nil {
		return err
	}
	if !slices.Contains([]string{ownership.FormatText, ownership.FormatDot, ownership.FormatMermaid}, *format) {
		return usageError{fmt.Sprintf("check: unknown --format %q (want text, dot or mermaid)", *format)}
	}
	plan, err := loadPlan(e, *cfgPath)
	if err != nil {
		return err
	}
	w := e.stdout
	if *format != ownership.FormatText {
		return plan.SystemGraph().Render(w, *format)
	}
	fmt.Fprintf(w, "%s: ok\n\nstore: %s\n", *cfgPath, plan.Store)
	fmt.Fprintf(w, "\nsystems (%d):\n", len(plan.Systems))
	for _, name := range slices.Sorted(maps.Keys(plan.Systems)) {
		fmt.Fprintf(w, "  %-16s kind %s\n", name, plan.Systems[name].Kind)
	}
	fmt.Fprintf(w, "\nsources (%d):\n", len(plan.Sources))
	for _, name := range slices.Sorted(maps.Keys(plan.Sources)) {
		fmt.Fprintf(w, "  %-16s %s\n", name, describeSource(plan.Sources[name]))
	}
	fmt.Fprintf(w, "\nflows (%d):\n", len(plan.Flows))
	for _, name := range slices.Sorted(maps.Keys(plan.Flows)) {
		f := plan.Flows[name]
		var steps []string
		for _, s := range f.Steps {
			steps = append(steps, fmt.Sprintf("%s (%s.%s)", s.ID, s.System, s.Action))
		}
		when := ""
		if f.When != nil {
			when = " when " + f.When.String()
		}
		fmt.Fprintf(w, "  %-16s on %s%s: %s\n", name, f.Source, when, strings.Join(steps, " → "))
	}
	if a := plan.Alerts; a != nil {
		var targets []string
		for _, t := range a.Targets {
			targets = append(targets, string(t.Kind))
		}
		fmt.Fprintf(w, "\nalerts (%d rules, to %s, evaluated every %s):\n", len(a.Rules), strings.Join(targets, ", "), a.EvaluateEvery)
		for _, r := range a.Rules {
			subject := cmp.Or(r.Flow, r.System, r.Source, "every flow")
			switch {
			case r.Kind == rule.ErrorRate && r.System == "":
				subject = "every system"
			case r.Kind == rule.PollFailing && r.Source == "":
				subject = "every timed source"
			}
			fmt.Fprintf(w, "  %-16s %s\n", r.Kind, subject)
		}
	}
	if t := plan.Tracing; t != nil {
		endpoint := "the OTEL_EXPORTER_OTLP_* endpoint, else http://localhost:4318"
		if u, err := url.Parse(t.OTLPEndpoint); err == nil && t.OTLPEndpoint != "" {
			endpoint = u.Redacted()
		}
		ratio := 1.0
		if t.SampleRatio != nil {
			ratio = *t.SampleRatio
		}
		fmt.Fprintf(w, "\ntracing: OTLP/HTTP to %s, recording %g of new traces\n", endpoint, ratio)
	}
	printOwnership(w, plan)
	if len(plan.Warnings) > 0 {
		fmt.Fprintf(w, "\nwarnings (%d):\n", len(plan.Warnings))
		for _, warn := range plan.Warnings {
			fmt.Fprintf(w, "  %s\n", warn)
		}
	}
	return nil
}
