package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/switchboard-dev/switchboard/internal/app"
	"github.com/switchboard-dev/switchboard/internal/config"
	"github.com/switchboard-dev/switchboard/internal/cputime"
)

// node is the server a phase loads: the bare baseline handler or a
// Switchboard node. In this process by default (the phase's CPU and memory
// then include the load generator's and the sink's); with
// Config.SeparateProcesses a process of its own, as in production, whose
// CPU and memory are its own.
type node struct {
	url  string
	stop func()
	pid  int // 0: in this process
	// ready is how long the process took from its start to its first
	// ready answer (0 in process).
	ready time.Duration
	// debug is the process's --debug-addr ("" when it has none).
	debug string
}

// profile starts reading the node's CPU profile over the phase's load into
// cfg.NodeCPUProfile (the phase's name added before its extension), when
// asked; the returned function waits for it.
func (n *node) profile(cfg Config, phase string) func() error {
	if n.debug == "" || cfg.NodeCPUProfile == "" {
		return func() error { return nil }
	}
	ext := filepath.Ext(cfg.NodeCPUProfile)
	path := strings.TrimSuffix(cfg.NodeCPUProfile, ext) + "-" + phase + ext
	secs := max(1, int(math.Ceil(time.Duration(cfg.Duration).Seconds())))
	done := make(chan error, 1)
	go func() {
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", n.debug, secs))
		if err != nil {
			done <- fmt.Errorf("node CPU profile: %w", err)
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			done <- fmt.Errorf("node CPU profile: %s", resp.Status)
			return
		}
		f, err := os.Create(path)
		if err != nil {
			done <- err
			return
		}
		_, err = io.Copy(f, resp.Body)
		done <- errors.Join(err, f.Close())
	}()
	return func() error { return <-done }
}

// separate reports whether cfg's phases run their server as a process.
func (cfg Config) separate() bool { return cfg.Self != "" && cfg.SeparateProcesses }

// usage is the node's CPU time so far and its peak resident memory.
func (n *node) usage() (time.Duration, int64) {
	if n.pid == 0 {
		return cputime.Used(), 0 // this process: its peak is trackPeakRSS's
	}
	return processCPU(n.pid), processRSS(n.pid).Peak
}

// baselineHandler is the machine's ceiling: it reads the body and answers
// 200, nothing else.
var baselineHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	w.WriteHeader(http.StatusOK)
})

// ServeBaseline serves the baseline handler on addr until ctx ends: the
// baseline phase's separate process (`switchboard bench --baseline-server`).
func ServeBaseline(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: baselineHandler, ReadHeaderTimeout: 10 * time.Second}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}

// startBaseline starts the baseline server.
func startBaseline(ctx context.Context, cfg Config) (*node, error) {
	if !cfg.separate() {
		url, stop, err := serveHandler(baselineHandler)
		if err != nil {
			return nil, err
		}
		return &node{url: url, stop: stop}, nil
	}
	return startProcess(ctx, cfg.Self, "", func(addr string) []string { return []string{"bench", "--baseline-server", addr} })
}

// startNode starts a Switchboard node on storeRef, delivering to sinkURL
// (or executing nothing), and waits until it is ready.
func startNode(ctx context.Context, cfg Config, storeRef, sinkURL string, noExecutor bool) (*node, error) {
	text := nodeConfig(cfg, storeRef, sinkURL)
	if cfg.separate() {
		return startServe(ctx, cfg.Self, text, noExecutor, "info", cfg.NodeCPUProfile != "")
	}
	c, err := config.Parse("bench.yaml", []byte(text), nil)
	if err != nil {
		return nil, err
	}
	plan, err := app.Compile(c)
	if err != nil {
		return nil, err
	}
	// The node logs as `serve` does by default (JSON, info: a line per
	// attempt), to /dev/null, so formatting and the write are counted.
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	srv, err := app.NewServer(ctx, plan, app.Options{Logger: slog.New(slog.NewJSONHandler(devNull, nil)), NoExecutor: noExecutor})
	if err != nil {
		devNull.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		devNull.Close()
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, ln) }()
	base := "http://" + ln.Addr().String()
	if err := waitReady(ctx, base, "/readyz"); err != nil {
		cancel()
		err = errors.Join(err, <-done)
		devNull.Close()
		return nil, err
	}
	// The node's shutdown error is not part of what the bench measures.
	return &node{url: base + "/hooks/bench", stop: func() { cancel(); <-done; devNull.Close() }}, nil //nolint:errcheck
}

// startServe starts `switchboard serve` on configText as a separate
// process, as an operator would, logging at level to /dev/null (the child's
// stderr), and waits until it is ready.
func startServe(ctx context.Context, self, configText string, noExecutor bool, level string, debug bool) (*node, error) {
	dir, err := os.MkdirTemp("", "switchboard-bench-serve-")
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "bench.yaml")
	if err := os.WriteFile(cfgPath, []byte(configText), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	var debugAddr string
	if debug {
		if debugAddr, err = freeAddr(); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	n, err := startProcess(ctx, self, "/readyz", func(addr string) []string {
		args := []string{"serve", "--config", cfgPath, "--addr", addr, "--log-level", level}
		if noExecutor {
			args = append(args, "--no-executor")
		}
		if debugAddr != "" {
			args = append(args, "--debug-addr", debugAddr)
		}
		return args
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	n.url += "/hooks/bench"
	n.debug = debugAddr
	stop := n.stop
	n.stop = func() { stop(); os.RemoveAll(dir) }
	return n, nil
}

// startProcess runs self with args(addr) on a free loopback address and
// waits until GET readyPath answers 200 (any answer, when readyPath is "").
// Its stop sends SIGTERM and waits for the exit.
func startProcess(ctx context.Context, self, readyPath string, args func(addr string) []string) (*node, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	cmd := exec.Command(self, args(addr)...)
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}
	base := "http://" + addr
	if err := waitReady(ctx, base, readyPath); err != nil {
		stop()
		return nil, fmt.Errorf("%s %s: %w", filepath.Base(self), args(addr)[0], err)
	}
	return &node{url: base, stop: stop, pid: cmd.Process.Pid, ready: time.Since(start)}, nil
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitReady waits until GET base+path answers 200 (any answer, when path
// is "": the bare baseline has no /readyz), for at most 30 s.
func waitReady(ctx context.Context, base, path string) error {
	start := time.Now()
	for {
		resp, err := http.Get(base + path)
		if err == nil {
			resp.Body.Close()
			if path == "" || resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Since(start) > 30*time.Second {
			return fmt.Errorf("not ready after 30s (last error: %v)", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// meter measures a phase's server from when it is ready to the end of the
// phase's work.
type meter struct {
	n          *node
	cpu0, own0 time.Duration
	peak       func() int64 // in process: this process's peak since the start
}

func startMeter(n *node) *meter {
	m := &meter{n: n, own0: cputime.Used()}
	if n.pid == 0 {
		m.peak = trackPeakRSS()
	}
	m.cpu0, _ = n.usage()
	return m
}

// done sets p's CPU per event and peak RSS: the node's. With the node in a
// process of its own, p also gets this process's CPU per event (the load
// generator's and the sink's), which the node's figure leaves out.
func (m *meter) done(p *Phase) {
	cpu, peak := m.n.usage()
	own := cputime.Used() - m.own0
	if m.peak != nil {
		peak = m.peak()
	}
	p.PeakRSSMB = float64(peak) / (1 << 20)
	if p.Requests == 0 {
		return
	}
	p.CPUPerEvUS = float64((cpu - m.cpu0).Microseconds()) / float64(p.Requests)
	if m.n.pid != 0 {
		p.LoadCPUPerEvUS = float64(own.Microseconds()) / float64(p.Requests)
	}
}
