package bench

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// rssBytes reads this process's resident set size from /proc.
func rssBytes() int64 { return readStatus("/proc/self/status").Total }

// processRSS reads another process's resident set size from /proc.
func processRSS(pid int) rss { return readStatus("/proc/" + strconv.Itoa(pid) + "/status") }

// trackPeakRSS starts measuring this process's peak RSS; the returned
// function gives the peak since. The kernel keeps the peak (VmHWM), and
// writing 5 to clear_refs resets it (Linux 4.0+), so nothing runs during
// the phase; where that write is refused, a sampler reads VmRSS every 50
// ms instead (it misses short peaks, and its reads cost CPU the phase
// would be charged for).
func trackPeakRSS() func() int64 {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err == nil {
		return func() int64 { return readStatus("/proc/self/status").Peak }
	}
	return startRSSSampler()
}

// readStatus reads the resident set lines of a /proc status file.
func readStatus(path string) rss {
	var r rss
	f, err := os.Open(path)
	if err != nil {
		return r
	}
	defer f.Close()
	fields := map[string]*int64{"VmRSS:": &r.Total, "RssAnon:": &r.Anon, "RssFile:": &r.File, "VmHWM:": &r.Peak}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, _ := strings.Cut(sc.Text(), "\t")
		if p := fields[name]; p != nil {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			*p = kb << 10
		}
	}
	return r
}

// startRSSSampler samples RSS every 50 ms; calling the returned function
// stops it and returns the peak.
func startRSSSampler() func() int64 {
	var peak atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if r := rssBytes(); r > peak.Load() {
				peak.Store(r)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 { close(stop); <-done; return peak.Load() }
}
