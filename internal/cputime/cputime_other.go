//go:build !unix

package cputime

import "time"

// Used is 0 where getrusage is missing: CPU figures then read 0.
func Used() time.Duration { return 0 }
