//go:build linux

package netns

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// Open opens the network namespace file at path (/run/netns/NAME,
// /proc/PID/ns/net) and returns it with the namespace's ID. A missing path,
// or one that is not an nsfs file (as between `ip netns add` creating the
// file and mounting the namespace on it), gives an error wrapping ErrGone;
// a missing path's error also wraps fs.ErrNotExist. A namespace of another
// type is refused with an error that does not wrap ErrGone.
func Open(path string) (*os.File, ID, error) {
	f, err := os.Open(path)
	if err != nil {
		if goneErr(err) {
			return nil, ID{}, fmt.Errorf("%s: %w: %w", path, ErrGone, err)
		}
		return nil, ID{}, fmt.Errorf("open network namespace: %w", err)
	}
	id, err := identify(f, path)
	if err != nil {
		_ = f.Close()
		return nil, ID{}, err
	}
	return f, id, nil
}

func identify(f *os.File, path string) (ID, error) {
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &sfs); err != nil {
		return ID{}, fmt.Errorf("network namespace %s: statfs: %w", path, err)
	}
	if sfs.Type != unix.NSFS_MAGIC {
		return ID{}, fmt.Errorf("%s: %w: not a namespace file (file system type %#x)", path, ErrGone, sfs.Type)
	}
	typ, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err == nil && typ != unix.CLONE_NEWNET {
		return ID{}, fmt.Errorf("%s is not a network namespace (namespace type %#x)", path, typ)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return ID{}, fmt.Errorf("network namespace %s: fstat: %w", path, err)
	}
	return ID{Dev: uint64(st.Dev), Ino: st.Ino}, nil
}

// Check reports whether path still names the namespace id. It returns nil
// if it does; an error wrapping ErrGone if the path is missing or names
// another namespace (or no namespace); and any other error if it cannot
// tell, as when the path cannot be looked up for lack of permission. It only
// stats the path: it is cheap enough to call every second.
func Check(path string, id ID) error {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		if goneErr(err) {
			return fmt.Errorf("%s: %w: %w", path, ErrGone, &fs.PathError{Op: "stat", Path: path, Err: err})
		}
		return fmt.Errorf("check network namespace %s: %w", path, &fs.PathError{Op: "stat", Path: path, Err: err})
	}
	if now := (ID{Dev: uint64(st.Dev), Ino: st.Ino}); now != id {
		return fmt.Errorf("%s: %w: the path now names %s, not the opened %s", path, ErrGone, now, id)
	}
	return nil
}

// goneErr reports whether a lookup error means that the path names nothing:
// ENOENT for a removed file or an exited process, ESRCH and ENOTDIR for
// /proc entries of processes that are going away.
func goneErr(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOTDIR)
}
