//go:build linux

package routes

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// HasNetAdmin reports whether CAP_NET_ADMIN, which changing routes needs,
// is in the effective capability set of the process.
func HasNetAdmin() (bool, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3} // Pid 0: this thread
	var data [2]unix.CapUserData                                        // version 3 uses two words
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false, fmt.Errorf("routes: reading capabilities: %w", err)
	}
	const c = unix.CAP_NET_ADMIN
	return data[c/32].Effective&(1<<(c%32)) != 0, nil
}
