// Package netns identifies network namespaces by the inode of their nsfs
// file, so that whoever holds sockets in a namespace can tell when the
// namespace's path is gone or names another namespace.
//
// A socket opened in a network namespace keeps that namespace alive, with
// all its devices, for as long as the socket is open, and the kernel sends it
// no error or event when the namespace is deleted (`ip netns del` only
// unmounts /run/netns/NAME; /proc/PID/ns/net vanishes when the process
// exits). The holder has to notice by itself, by comparing the ID of what
// the path names now with the ID it opened, and close its sockets so that
// the kernel can free the namespace.
package netns

import (
	"errors"
	"fmt"
)

// ErrGone is wrapped by the errors of Open and Check when the path does not
// name a network namespace (any more), or names another one than was opened:
// the namespace was deleted, or its process exited. A namespace that comes
// back under the same path is a new namespace.
var ErrGone = errors.New("network namespace is gone")

// An ID identifies a namespace: the device and inode number of its nsfs
// file, which stay the same for the namespace's lifetime and are never
// shared by two namespaces alive at the same time.
type ID struct {
	Dev, Ino uint64
}

// String formats the ID as "net:[INO]", as readlink(/proc/PID/ns/net) shows
// it, followed by the device.
func (id ID) String() string {
	return fmt.Sprintf("net:[%d] on device %d", id.Ino, id.Dev)
}
