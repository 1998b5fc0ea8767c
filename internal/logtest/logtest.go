// Package logtest helps tests read the logs of goroutines they start.
package logtest

import (
	"bytes"
	"sync"
)

// Buffer is a log destination (an io.Writer for slog's handlers) that
// goroutines write to while the test reads it. The zero value is ready.
type Buffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
