//go:build !linux

package bench

func rssBytes() int64 { return 0 }

func trackPeakRSS() func() int64 { return func() int64 { return 0 } }

func processRSS(int) rss { return rss{} }
