package alert

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// maxErrorLen bounds a run's error quoted in a notification (Slack caps a
// text block at 3,000 characters).
const maxErrorLen = 1000

// fmtInt writes n with thousands separators: 1,532.
func fmtInt(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// fmtDuration writes d the way people write it: 5m, 1h30m, 2h, 45s, 850ms,
// rounded to what matters at its size.
func fmtDuration(d time.Duration) string {
	switch {
	case d >= time.Hour:
		d = d.Round(time.Minute)
	case d >= 10*time.Second:
		d = d.Round(time.Second)
	case d >= time.Second:
		d = d.Round(100 * time.Millisecond)
	case d >= time.Millisecond:
		d = d.Round(time.Millisecond)
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// fmtPercent writes a share as a percentage with at most one decimal.
func fmtPercent(x float64) string {
	return strconv.FormatFloat(float64(int64(x*1000+0.5))/10, 'f', -1, 64) + "%"
}

// fmtTime writes t in UTC to the second.
func fmtTime(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// plural writes "1 attempt" or "8 attempts".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmtInt(n) + " " + noun + "s"
}

// truncate shortens s to at most n bytes, on a character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
