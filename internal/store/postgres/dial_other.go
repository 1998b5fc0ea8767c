//go:build !linux

package postgres

import (
	"net"
	"time"
)

// dialer returns the dialer of the pool's connections: keepalive probes
// after 15 s of silence, every 5 s (TCP_USER_TIMEOUT, which bounds
// unacknowledged data too, is Linux's).
func dialer() *net.Dialer {
	return &net.Dialer{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 9}}
}
