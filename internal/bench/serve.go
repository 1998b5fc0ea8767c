package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// rss is a process's resident set size and its two main parts, in bytes:
// anonymous memory (heaps, stacks) and file-backed pages (the mapped binary
// and shared libraries, of which only the touched pages count); and its
// peak since start or the last reset (see trackPeakRSS).
type rss struct{ Total, Anon, File, Peak int64 }

// measureServe starts `switchboard serve` on storeRef as a separate
// process, as an operator would, and returns how long it took to answer
// /readyz and its resident memory once idle. The node does not execute:
// the ingest store's runs are all pending, and a node working through them
// would not be idle.
func measureServe(ctx context.Context, cfg Config, storeRef string) (time.Duration, rss, error) {
	dir, err := os.MkdirTemp("", "switchboard-bench-serve-")
	if err != nil {
		return 0, rss{}, err
	}
	defer os.RemoveAll(dir)
	text := strings.NewReplacer("${BENCH_STORE}", storeRef, "${BENCH_SINK}", "http://127.0.0.1:9/",
		"${BENCH_WORKERS}", fmt.Sprint(cfg.Workers)).Replace(benchConfig(cfg))
	cfgPath := filepath.Join(dir, "bench.yaml")
	if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
		return 0, rss{}, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, rss{}, err
	}
	addr := ln.Addr().String()
	ln.Close()
	start := time.Now()
	cmd := exec.CommandContext(ctx, cfg.Self, "serve", "--config", cfgPath, "--addr", addr, "--log-level", "error", "--no-executor")
	if err := cmd.Start(); err != nil {
		return 0, rss{}, err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	var ready time.Duration
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				ready = time.Since(start)
				break
			}
		}
		if time.Since(start) > 30*time.Second {
			return 0, rss{}, fmt.Errorf("serve not ready after 30s")
		}
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(time.Second) // idle: nothing is sent to it
	return ready, processRSS(cmd.Process.Pid), nil
}
