//go:build !linux

package netns

import (
	"fmt"
	"os"
)

// Open fails: network namespaces exist only on Linux.
func Open(path string) (*os.File, ID, error) {
	return nil, ID{}, fmt.Errorf("network namespace %s: namespaces are only available on Linux: %w", path, os.ErrNotExist)
}

// Check fails: network namespaces exist only on Linux.
func Check(path string, _ ID) error {
	return fmt.Errorf("network namespace %s: namespaces are only available on Linux: %w", path, os.ErrNotExist)
}
