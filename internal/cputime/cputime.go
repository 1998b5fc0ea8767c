//go:build unix

// Package cputime reads the CPU time this process has used: the figure the
// bench reports per event, and the store benchmarks per event and per run.
// CPU time stays comparable on a shared, noisy machine, where wall-clock
// rates drift. It is a leaf so that test-support packages (storetest) can
// use it without importing the bench.
package cputime

import (
	"syscall"
	"time"
)

// Used is the process's user+system CPU time so far.
func Used() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
