package bench

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
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

// processCPU reads another process's user+system CPU time from /proc, in
// clock ticks of 10 ms (USER_HZ is 100 on Linux).
func processCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from the last ')'. utime and stime are the 14th and 15th fields.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// childAttr makes a server process the bench starts end with it, even when
// the bench is killed.
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM} }

// datasync flushes f's data, not its times (fdatasync).
func datasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
