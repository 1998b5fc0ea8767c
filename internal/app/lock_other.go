//go:build !unix

package app

// locks says lockFile excludes other processes: not here.
const locks = false

// lockFile is a no-op where flock is unavailable.
func lockFile(string) (func(), error) { return func() {}, nil }
