//go:build !linux

package sqlite_test

import "time"

// cpuTime is not measured off Linux: the CPU metrics then read 0.
func cpuTime() time.Duration { return 0 }
