//go:build unix

package app

import (
	"errors"
	"os"
	"syscall"
)

// locks says lockFile excludes other processes: a SQLite node holding it
// is the store's only one.
const locks = true

// lockFile takes an exclusive, non-blocking lock on path; the returned
// function releases it. The kernel drops the lock if the process dies.
// It returns errLocked when another process holds the lock; any other error
// (a missing or unwritable directory) is the file system's.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errLocked
		}
		return nil, err
	}
	return func() { f.Close() }, nil
}
