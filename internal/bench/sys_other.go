//go:build !linux

package bench

import "time"

func CPUTime() time.Duration { return 0 }

func rssBytes() int64 { return 0 }

func trackPeakRSS() func() int64 { return func() int64 { return 0 } }

func processRSS(int) rss { return rss{} }
