//go:build !linux

package watcher

import (
	"fmt"
	"os"
)

// SourceConfig configures the rtnetlink sockets of Dial.
type SourceConfig struct {
	NetNS      string
	ReadBuffer int
}

// Dial fails: rtnetlink exists only on Linux.
func Dial(SourceConfig) (Source, error) {
	return nil, fmt.Errorf("rtnetlink is only available on Linux: %w", os.ErrNotExist)
}

// ReadBuffer returns 0.
func ReadBuffer(Source) int { return 0 }
