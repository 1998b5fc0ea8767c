package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/switchboard-dev/switchboard/internal/bench"
)

func runBench(ctx context.Context, e env, args []string) error {
	fs := flags("bench", e)
	var cfg bench.Config
	fs.StringVar(&cfg.Store, "store", "", "postgres://… to measure PostgreSQL (default: SQLite in a temporary directory)")
	fs.IntVar(&cfg.Connections, "connections", 64, "concurrent connections")
	dur := fs.Duration("duration", 10*time.Second, "load duration of each phase")
	fs.Float64Var(&cfg.Rate, "rate", 0, "open loop: requests per second (0: closed loop)")
	fs.IntVar(&cfg.BodySize, "body", 1024, "request body size in bytes")
	fs.Float64Var(&cfg.DupPercent, "dup", 3, "percent of requests that re-send the previous event")
	fs.Float64Var(&cfg.FailPercent, "fail", 0, "percent of deliveries the downstream answers 503 (first attempt)")
	fs.IntVar(&cfg.Workers, "workers", 128, "executor workers (delivery keeps up with ingest only with enough workers to cover commit latency)")
	fs.IntVar(&cfg.Flows, "flows", 1, "flows started by each event")
	fs.IntVar(&cfg.Steps, "steps", 1, "steps per flow (each posts to the sink)")
	fs.StringVar(&cfg.Only, "only", "", "after the baseline, run only this phase: ingest or e2e (for profiling)")
	fs.BoolVar(&cfg.Ceilings, "ceilings", false, "after the baseline, measure two servers that store or deliver with the least work possible (a file append with group commit; a store-free relay to the sink): how far this machine lets the node's ratios go")
	fs.BoolVar(&cfg.SeparateProcesses, "separate-processes", false, "run each phase's server as a process of its own: CPU per event and peak RSS are then the server's alone, without the load generator's")
	baselineServer := fs.String("baseline-server", "", "internal: serve the bare baseline handler on this address (the bench starts it as a process of its own)")
	asJSON := fs.Bool("json", false, "print one JSON object instead of a table")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the phases after the baseline to this file (go tool pprof); with --separate-processes, the node's, one file per phase (cpu.prof: cpu-ingest.prof, cpu-e2e.prof)")
	memProfile := fs.String("memprofile", "", "write an allocation profile of the phases after the baseline to this file (go tool pprof -sample_index=alloc_space)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *baselineServer != "" {
		return bench.ServeBaseline(ctx, *baselineServer)
	}
	if cfg.SeparateProcesses && *memProfile != "" {
		return usageError{"--memprofile profiles the bench process; with --separate-processes the servers run elsewhere (use --cpuprofile, or serve --debug-addr)"}
	}
	if cfg.SeparateProcesses && cfg.Ceilings {
		return usageError{"--ceilings runs its servers in the bench process, as ratios to the baseline there; it cannot be combined with --separate-processes"}
	}
	if cfg.SeparateProcesses {
		// The nodes' profiles, one per phase, read from their --debug-addr;
		// this process is not profiled.
		cfg.NodeCPUProfile = *cpuProfile
		*cpuProfile = ""
	}
	if *memProfile != "" {
		// Sampling starts after the baseline, so the profile holds the
		// node's allocations (and the load's), not the bare server's.
		runtime.MemProfileRate = 0
		defer func() {
			if err := writeAllocs(*memProfile); err != nil {
				fmt.Fprintf(e.stderr, "memprofile: %v\n", err)
			}
		}()
		cfg.AfterBaseline = func() { runtime.MemProfileRate = 64 << 10 }
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		before := cfg.AfterBaseline
		cfg.AfterBaseline = func() {
			if before != nil {
				before()
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				fmt.Fprintf(e.stderr, "cpuprofile: %v\n", err)
			}
		}
		defer pprof.StopCPUProfile() // a no-op when the profile never started
	}
	cfg.Duration = bench.Dur(*dur)
	if self, err := os.Executable(); err == nil {
		cfg.Self = self
	}
	progress := e.stderr
	rep, err := bench.Run(ctx, cfg, progress)
	if rep == nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if encErr := enc.Encode(rep); encErr != nil {
			return encErr
		}
		return err
	}
	s := rep.Settings
	mode := "closed loop"
	if s.Rate > 0 {
		mode = fmt.Sprintf("open loop at %.0f req/s", s.Rate)
	}
	fmt.Fprintf(e.stdout, "store %s, %d connections, %s, %s per phase, %d-byte bodies, %.0f%% duplicates, %.0f%% downstream 503s, %d workers, %d flow(s) × %d step(s)\n\n",
		rep.StoreKind, s.Connections, mode, time.Duration(s.Duration), s.BodySize, s.DupPercent, s.FailPercent, s.Workers, max(1, s.Flows), max(1, s.Steps))
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\treq/s\tof baseline\tp50 ms\tp99 ms\tp99.9 ms\tdelivered/s\tlag p50 ms\tlag p99 ms\tCPU µs/event\tpeak RSS MB\t")
	for _, p := range rep.Phases {
		delivered, lag50, lag99 := "-", "-", "-"
		if p.DeliveredPS > 0 {
			delivered = fmt.Sprintf("%.0f (%.0f%%)", p.DeliveredPS, 100*p.DeliveredRatio)
			lag50, lag99 = fmt.Sprintf("%.1f", p.LagP50ms), fmt.Sprintf("%.1f", p.LagP99ms)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f%%\t%.2f\t%.2f\t%.2f\t%s\t%s\t%s\t%.0f\t%.0f\t\n",
			p.Name, p.RPS, 100*p.Ratio, p.P50ms, p.P99ms, p.P999ms, delivered, lag50, lag99, p.CPUPerEvUS, p.PeakRSSMB)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if rep.NodeProcess {
		var load []string
		for _, p := range rep.Phases {
			load = append(load, fmt.Sprintf("%s %.0f", p.Name, p.LoadCPUPerEvUS))
		}
		fmt.Fprintf(e.stdout, "\nCPU and RSS are the server process's own; the load generator and the sink (the bench process) used, in µs per request: %s\n", strings.Join(load, ", "))
	} else {
		fmt.Fprintf(e.stdout, "\nthe servers ran in the bench process: CPU and RSS include the load generator's and the sink's (--separate-processes measures the servers alone)\n")
	}
	if rep.Settings.Ceilings {
		fmt.Fprintf(e.stdout, "ceilings: a file append with group commit (durable, nothing else) reached %.0f%% of the baseline; a relay storing nothing delivered %.0f%%\n",
			100*rep.AppendRatio, 100*rep.RelayDeliveredRatio)
	}
	if rep.ServeReadyMS > 0 {
		fmt.Fprintf(e.stdout, "serve (a separate process) on the ingest phase's database: ready in %.0f ms, idle RSS %.0f MB (%.0f anonymous, %.0f file-backed)\n",
			rep.ServeReadyMS, rep.IdleRSSMB, rep.IdleRSSAnonMB, rep.IdleRSSFileMB)
	}
	ranE2E := false
	for _, p := range rep.Phases {
		ranE2E = ranE2E || p.Name == "e2e"
	}
	switch {
	case !ranE2E:
	case errors.Is(err, bench.ErrLostOrDuplicated):
		fmt.Fprintf(e.stdout, "FAILED: %d acknowledged events lost, %d delivered twice\n", rep.Lost, rep.Duplicates)
	default:
		fmt.Fprintf(e.stdout, "every acknowledged event delivered exactly once (%d lost, %d duplicates)\n", rep.Lost, rep.Duplicates)
	}
	return err
}

// writeAllocs writes the allocation profile sampled so far (it covers the
// allocations up to the last GC: one runs first).
func writeAllocs(path string) error {
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
