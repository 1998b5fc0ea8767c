//go:build !linux

package bench

import (
	"os"
	"syscall"
	"time"
)

func rssBytes() int64 { return 0 }

func trackPeakRSS() func() int64 { return func() int64 { return 0 } }

func processRSS(int) rss { return rss{} }

func processCPU(int) time.Duration { return 0 }

func childAttr() *syscall.SysProcAttr { return nil }

func datasync(f *os.File) error { return f.Sync() }
