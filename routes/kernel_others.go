//go:build !linux

package routes

import (
	"fmt"
	"os"
)

// DialKernel fails: route management needs Linux rtnetlink.
func DialKernel(cfg KernelConfig) (Kernel, error) {
	return nil, fmt.Errorf("routes: route management is only supported on Linux: %w", os.ErrNotExist)
}
