//go:build !linux

package routes

import (
	"context"
	"fmt"
	"os"
)

// WatchAddresses fails: rtnetlink exists only on Linux.
func WatchAddresses(context.Context, AddressWatchConfig) (<-chan struct{}, error) {
	return nil, fmt.Errorf("address notifications are only available on Linux: %w", os.ErrNotExist)
}
