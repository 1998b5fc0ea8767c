// Package bench is `switchboard bench`: it measures, in one process and
// against loopback only, a bare net/http handler (the machine's ceiling),
// ingest alone, and ingest plus delivery, under the same load, and reports
// each as a ratio of the baseline and as CPU time per event. It fails when
// an acknowledged event is lost or delivered twice.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Config is what `switchboard bench` was asked to do.
type Config struct {
	// Store is "" for SQLite in a temporary directory, or a postgres:// DSN
	// (each phase then uses a fresh schema, dropped afterwards).
	Store       string  `json:"store"`
	Connections int     `json:"connections"`
	Duration    Dur     `json:"duration"`
	Rate        float64 `json:"rate"`
	BodySize    int     `json:"body_size"`
	DupPercent  float64 `json:"dup_percent"`
	FailPercent float64 `json:"fail_percent"`
	Workers     int     `json:"workers"`
	// Drain bounds how long the end-to-end phase waits for deliveries
	// after the load stops.
	Drain Dur `json:"drain"`
	// Flows is how many flows the source starts (default 1); Steps how
	// many steps each flow has (default 1). Every step posts to the sink.
	Flows int `json:"flows"`
	Steps int `json:"steps"`
	// Only, when set, runs only the named phase ("ingest" or "e2e") after
	// the baseline, for profiling one of them.
	Only string `json:"only,omitempty"`
	// Self is the switchboard binary. When set, readiness and idle memory
	// are measured on a real `serve` process started on the ingest phase's
	// store; otherwise readiness is measured in process and idle RSS is 0.
	Self string `json:"-"`
	// SeparateProcesses (with Self) runs each phase's server as a process
	// of its own (the bare baseline, `switchboard serve`), as in
	// production, so that its CPU and memory are measured apart from the
	// load generator's and the sink's, which stay in this process. By
	// default everything runs in this one process.
	SeparateProcesses bool `json:"separate_processes"`
	// NodeCPUProfile, with SeparateProcesses, is where the ingest and e2e
	// nodes' CPU profiles go, one per phase: "cpu.prof" becomes
	// "cpu-ingest.prof" and "cpu-e2e.prof". Each covers the phase's load
	// (whole seconds), read from the node's --debug-addr.
	NodeCPUProfile string `json:"-"`
	// Ceilings adds, after the baseline, the two servers of ceiling.go:
	// a file append with group commit and a store-free relay, the least a
	// durable acknowledgment and an end-to-end delivery can cost here. In
	// this process only (they are ratios to the in-process baseline).
	Ceilings bool `json:"ceilings,omitempty"`
	// AfterBaseline, when set, is called once the baseline phase is done:
	// a CPU profile started there covers only the phases under study.
	AfterBaseline func() `json:"-"`
}

// Dur is a time.Duration that prints as "10s" in JSON.
type Dur time.Duration

// MarshalText prints the duration as Go writes it.
func (d Dur) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Phase is one measured phase.
type Phase struct {
	Name     string  `json:"name"`
	Requests int64   `json:"requests"`
	RPS      float64 `json:"rps"`
	Ratio    float64 `json:"ratio"`
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
	P999ms   float64 `json:"p999_ms"`
	// CPUPerEvUS is the server's user+system CPU over the phase (from
	// ready to the end of the load, and of the drain end to end) divided
	// by the requests sent; PeakRSSMB its peak resident memory. With the
	// server in this process (the default) both include the load
	// generator's and the sink's.
	CPUPerEvUS float64 `json:"cpu_us_per_event"`
	PeakRSSMB  float64 `json:"peak_rss_mb"`
	// LoadCPUPerEvUS is the bench process's CPU per request (load
	// generator and sink) when the server runs as a process of its own.
	LoadCPUPerEvUS float64 `json:"load_cpu_us_per_event,omitempty"`
	// End to end and relay only.
	Delivered   int     `json:"delivered,omitempty"`
	DeliveredPS float64 `json:"delivered_per_s,omitempty"`
	// DeliveredRatio is DeliveredPS as a share of the baseline's req/s.
	DeliveredRatio float64 `json:"delivered_ratio,omitempty"`
	LagP50ms       float64 `json:"lag_p50_ms,omitempty"`
	LagP99ms       float64 `json:"lag_p99_ms,omitempty"`
	Lost           int     `json:"lost"`
	Duplicates     int     `json:"duplicates"`
}

// Report is the whole run.
type Report struct {
	Settings Config  `json:"settings"`
	Phases   []Phase `json:"phases"`

	BaselineRPS      float64 `json:"baseline_rps"`
	IngestRPS        float64 `json:"ingest_rps"`
	IngestP99ms      float64 `json:"ingest_p99_ms"`
	IngestCPUPerEvUS float64 `json:"ingest_cpu_us_per_event"`
	E2EDeliveredPerS float64 `json:"e2e_delivered_per_s"`
	E2ELagP99ms      float64 `json:"e2e_lag_p99_ms"`
	E2ECPUPerEvUS    float64 `json:"e2e_cpu_us_per_event"`
	Lost             int     `json:"lost"`
	Duplicates       int     `json:"duplicates"`
	PeakRSSMB        float64 `json:"peak_rss_mb"`
	StoreKind        string  `json:"store"`
	// NodeProcess says the servers ran as processes of their own: CPU per
	// event and peak RSS are then theirs alone.
	NodeProcess       bool    `json:"node_process"`
	IngestRatio       float64 `json:"ingest_ratio"`
	E2EDeliveredRatio float64 `json:"e2e_delivered_ratio"`
	IdleRSSMB         float64 `json:"idle_rss_mb"`
	// IdleRSSAnonMB and IdleRSSFileMB split IdleRSSMB: anonymous memory
	// (Go heap and stacks, SQLite's heap) and file-backed pages (mostly the
	// binary's touched code and data).
	IdleRSSAnonMB float64 `json:"idle_rss_anon_mb"`
	IdleRSSFileMB float64 `json:"idle_rss_file_mb"`
	ServeReadyMS  float64 `json:"serve_ready_ms"`
	// AppendRatio and RelayDeliveredRatio are the ceilings' shares of the
	// baseline (with Config.Ceilings).
	AppendRatio         float64 `json:"append_ratio,omitempty"`
	RelayDeliveredRatio float64 `json:"relay_delivered_ratio,omitempty"`
}

// ErrLostOrDuplicated fails a run that lost or duplicated an event.
var ErrLostOrDuplicated = errors.New("events lost or delivered twice")

// WithDefaults fills unset settings.
func (c Config) WithDefaults() Config {
	if c.Connections <= 0 {
		c.Connections = 64
	}
	if c.Duration <= 0 {
		c.Duration = Dur(10 * time.Second)
	}
	if c.BodySize <= 0 {
		c.BodySize = 1024
	}
	if c.Workers <= 0 {
		c.Workers = 128
	}
	if c.Drain <= 0 {
		c.Drain = Dur(2 * time.Minute)
	}
	return c
}

// Run runs the three phases and returns the report. progress receives a
// line per phase as it finishes.
func Run(ctx context.Context, cfg Config, progress io.Writer) (*Report, error) {
	cfg = cfg.WithDefaults()
	if cfg.Ceilings && cfg.separate() {
		return nil, errors.New("the ceilings run in the bench process: they cannot be measured with separate processes")
	}
	rep := &Report{Settings: cfg, StoreKind: "sqlite", NodeProcess: cfg.separate()}
	if cfg.Store != "" {
		rep.StoreKind = "postgres"
	}
	body := func(n int64) ([]byte, int64) {
		id := n
		if cfg.DupPercent > 0 && n > 1 && int64(float64(n)*cfg.DupPercent/100) != int64(float64(n-1)*cfg.DupPercent/100) {
			id = n - 1 // a retry of the previous event by its sender
		}
		return eventBody(id, cfg.BodySize), id
	}

	base, err := measure(ctx, "baseline", func(ctx context.Context) (*Phase, error) {
		n, err := startBaseline(ctx, cfg)
		if err != nil {
			return nil, err
		}
		defer n.stop()
		m := startMeter(n)
		res, err := runLoad(ctx, cfg.load(n.url, body))
		p := phaseOf("baseline", res)
		m.done(p)
		return p, err
	})
	if err != nil {
		return nil, err
	}
	rep.add(base, progress)
	if cfg.AfterBaseline != nil {
		cfg.AfterBaseline()
	}

	if cfg.Ceilings {
		if err := runCeilings(ctx, cfg, rep, body, progress); err != nil {
			return nil, err
		}
	}
	if cfg.Only != "e2e" {
		if err := runIngest(ctx, cfg, rep, body, progress); err != nil {
			return nil, err
		}
	}
	if cfg.Only != "ingest" {
		if err := runE2E(ctx, cfg, rep, body, progress); err != nil {
			return nil, err
		}
	}
	if rep.Lost > 0 || rep.Duplicates > 0 {
		return rep, fmt.Errorf("%w: %d acknowledged events not delivered, %d delivered twice", ErrLostOrDuplicated, rep.Lost, rep.Duplicates)
	}
	return rep, nil
}

// load is the load of every phase, against url.
func (cfg Config) load(url string, body bodyFunc) loadConfig {
	return loadConfig{URL: url, Connections: cfg.Connections, Duration: time.Duration(cfg.Duration), Rate: cfg.Rate, Body: body}
}

// drain waits, after a phase's load, until done reports every delivery
// made, for cfg.Drain at most.
func (cfg Config) drain(ctx context.Context, done func() bool) {
	deadline := time.Now().Add(time.Duration(cfg.Drain))
	for !done() && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
}

// bodyFunc makes request n's body and names the event it carries.
type bodyFunc = func(n int64) ([]byte, int64)

// runIngest measures ingest with the executor paused, then how fast a node
// is ready on the store it filled.
func runIngest(ctx context.Context, cfg Config, rep *Report, body bodyFunc, progress io.Writer) error {
	ingestStore, dropIngest, err := newStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer dropIngest()
	ingest, err := measure(ctx, "ingest", func(ctx context.Context) (*Phase, error) {
		srv, err := startNode(ctx, cfg, ingestStore, "http://127.0.0.1:9/", true)
		if err != nil {
			return nil, err
		}
		defer srv.stop()
		m := startMeter(srv)
		prof := srv.profile(cfg, "ingest")
		res, err := runLoad(ctx, cfg.load(srv.url, body))
		p := phaseOf("ingest", res)
		m.done(p)
		return p, errors.Join(err, prof())
	})
	if err != nil {
		return err
	}
	rep.add(ingest, progress)
	// Readiness on an existing database: the ingest phase's store, now
	// holding every event it accepted.
	if cfg.Self != "" {
		ready, mem, err := measureServe(ctx, cfg, ingestStore)
		if err != nil {
			return fmt.Errorf("start serve on the ingest store: %w", err)
		}
		rep.ServeReadyMS = ms(ready)
		rep.IdleRSSMB, rep.IdleRSSAnonMB, rep.IdleRSSFileMB = float64(mem.Total)/(1<<20), float64(mem.Anon)/(1<<20), float64(mem.File)/(1<<20)
		return nil
	}
	t0 := time.Now()
	again, err := startNode(ctx, cfg, ingestStore, "http://127.0.0.1:9/", true)
	if err != nil {
		return fmt.Errorf("restart on the ingest store: %w", err)
	}
	rep.ServeReadyMS = ms(time.Since(t0))
	again.stop()
	return nil
}

// runE2E measures ingest plus delivery to a counting sink.
func runE2E(ctx context.Context, cfg Config, rep *Report, body bodyFunc, progress io.Writer) error {
	e2e, err := measure(ctx, "e2e", func(ctx context.Context) (*Phase, error) {
		sk := newSink(cfg.FailPercent)
		sinkURL, stopSink, err := serveHandler(sk)
		if err != nil {
			return nil, err
		}
		defer stopSink()
		storeRef, drop, err := newStore(ctx, cfg)
		if err != nil {
			return nil, err
		}
		defer drop()
		srv, err := startNode(ctx, cfg, storeRef, sinkURL, false)
		if err != nil {
			return nil, err
		}
		defer srv.stop()
		m := startMeter(srv)
		prof := srv.profile(cfg, "e2e")
		start := time.Now()
		res, err := runLoad(ctx, cfg.load(srv.url, body))
		if err != nil {
			return nil, err
		}
		perEvent := max(1, cfg.Flows) * max(1, cfg.Steps)
		cfg.drain(ctx, func() bool { return sk.effectCount() >= len(res.AckedIDs)*perEvent })
		p := phaseOf("e2e", res)
		sk.report(p, res.AckedIDs, perEvent, start)
		m.done(p) // the drain's work included
		return p, prof()
	})
	if err != nil {
		return err
	}
	rep.add(e2e, progress)
	return nil
}

func (r *Report) add(p *Phase, progress io.Writer) {
	if len(r.Phases) > 0 && r.Phases[0].RPS > 0 {
		p.Ratio = p.RPS / r.Phases[0].RPS
	} else {
		p.Ratio = 1
	}
	if p.DeliveredPS > 0 && r.BaselineRPS > 0 {
		p.DeliveredRatio = p.DeliveredPS / r.BaselineRPS
	}
	r.Phases = append(r.Phases, *p)
	r.PeakRSSMB = max(r.PeakRSSMB, p.PeakRSSMB)
	switch p.Name {
	case "baseline":
		r.BaselineRPS = p.RPS
	case "ingest":
		r.IngestRPS, r.IngestP99ms, r.IngestCPUPerEvUS, r.IngestRatio = p.RPS, p.P99ms, p.CPUPerEvUS, p.Ratio
	case "append":
		r.AppendRatio = p.Ratio
	case "relay":
		r.RelayDeliveredRatio = p.DeliveredRatio
	case "e2e":
		r.E2EDeliveredPerS, r.E2ELagP99ms, r.E2ECPUPerEvUS = p.DeliveredPS, p.LagP99ms, p.CPUPerEvUS
		r.Lost, r.Duplicates = p.Lost, p.Duplicates
		r.E2EDeliveredRatio = p.DeliveredRatio
	}
	if progress != nil {
		fmt.Fprintf(progress, "%-8s done: %.0f req/s\n", p.Name, p.RPS)
	}
}

func phaseOf(name string, res *loadResult) *Phase {
	if res == nil {
		return &Phase{Name: name}
	}
	return &Phase{
		Name: name, Requests: res.Requests, RPS: res.rps(),
		P50ms: ms(res.percentile(50)), P99ms: ms(res.percentile(99)), P999ms: ms(res.percentile(99.9)),
	}
}

// measure runs one phase and names it in its error.
func measure(ctx context.Context, name string, fn func(context.Context) (*Phase, error)) (*Phase, error) {
	p, err := fn(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s phase: %w", name, err)
	}
	return p, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// serveHandler serves h on a loopback port.
func serveHandler(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	stop := func() {
		// Handlers done before the caller tears down what they use (the
		// ceilings close the channels theirs send on).
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
	}
	return "http://" + ln.Addr().String(), stop, nil
}

// benchConfig returns the bench node's config: one source and cfg.Flows
// flows of cfg.Steps steps, each step posting to the sink.
// nodeConfig is benchConfig for a node on storeRef delivering to sinkURL.
// The values go in as YAML double-quoted strings with $ doubled: a DSN's
// password may hold " #", quotes or ${, which would otherwise end the
// value, start a comment or name an environment variable.
func nodeConfig(cfg Config, storeRef, sinkURL string) string {
	quote := func(s string) string { return strconv.Quote(strings.ReplaceAll(s, "$", "$$")) }
	return strings.NewReplacer("${BENCH_STORE}", quote(storeRef), "${BENCH_SINK}", quote(sinkURL),
		"${BENCH_WORKERS}", fmt.Sprint(cfg.Workers)).Replace(benchConfig(cfg))
}

func benchConfig(cfg Config) string {
	var b strings.Builder
	b.WriteString(`version: 1
store: ${BENCH_STORE}
workers: ${BENCH_WORKERS}
retry: { base: 100ms, cap: 2s, attempts: 10 }
systems:
  sink: { kind: http, base_url: ${BENCH_SINK}, timeout: 10s }
sources:
  bench:
    webhook: { max_body: 1MiB }
    key: .id
flows:
`)
	for f := range max(1, cfg.Flows) {
		fmt.Fprintf(&b, "  deliver%d:\n    on: bench\n    steps:\n", f)
		for s := range max(1, cfg.Steps) {
			fmt.Fprintf(&b, `      - id: post%d
        do: sink.request
        with:
          method: '"POST"'
          path: '"/events"'
          body: '{id: .id, sent: .sent_ns, email: .email}'
`, s)
		}
	}
	return b.String()
}

// newStore returns a store reference for a fresh, empty store and a
// function that deletes it.
func newStore(ctx context.Context, cfg Config) (string, func(), error) {
	dir, err := os.MkdirTemp("", "switchboard-bench-")
	if err != nil {
		return "", nil, err
	}
	if cfg.Store == "" {
		return "sqlite:" + filepath.Join(dir, "bench.db"), func() { os.RemoveAll(dir) }, nil
	}
	os.RemoveAll(dir)
	return freshSchema(ctx, cfg.Store)
}

// freshSchema creates a schema for one phase and returns a DSN using it.
func freshSchema(ctx context.Context, dsn string) (string, func(), error) {
	var b [4]byte
	_, _ = rand.Read(b[:])
	schema := "sb_bench_" + hex.EncodeToString(b[:])
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return "", nil, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		return "", nil, err
	}
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	drop := func() {
		c, err := pgx.Connect(context.Background(), dsn)
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
			c.Close(context.Background())
		}
	}
	return dsn + sep + "search_path=" + schema, drop, nil
}
