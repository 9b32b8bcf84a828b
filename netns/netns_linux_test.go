//go:build linux

package netns

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestOpenAndCheckOwnNamespace(t *testing.T) {
	const self = "/proc/self/ns/net"
	f, id, err := Open(self)
	if err != nil {
		t.Fatalf("Open(%s): %v", self, err)
	}
	defer f.Close()
	if id.Ino == 0 {
		t.Errorf("Open(%s) gave ID %v", self, id)
	}
	if err := Check(self, id); err != nil {
		t.Errorf("Check of the same namespace: %v", err)
	}
	other := ID{Dev: id.Dev, Ino: id.Ino + 1}
	if err := Check(self, other); !errors.Is(err, ErrGone) {
		t.Errorf("Check against another namespace's ID = %v, want ErrGone", err)
	}
}

func TestOpenAndCheckMissingOrWrong(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "lwt-missing")
	if _, _, err := Open(missing); !errors.Is(err, ErrGone) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open of a missing path = %v, want ErrGone and fs.ErrNotExist", err)
	}
	if err := Check(missing, ID{Dev: 1, Ino: 2}); !errors.Is(err, ErrGone) {
		t.Errorf("Check of a missing path = %v, want ErrGone", err)
	}
	// What /run/netns/NAME is between `ip netns add` creating it and
	// mounting the namespace on it.
	plain := filepath.Join(dir, "lwt-plain")
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Open(plain); !errors.Is(err, ErrGone) {
		t.Errorf("Open of a plain file = %v, want ErrGone", err)
	}
	if _, _, err := Open("/proc/self/ns/mnt"); err == nil || errors.Is(err, ErrGone) {
		t.Errorf("Open of a mount namespace = %v, want an error other than ErrGone", err)
	}
}

// TestDeletedNamespace deletes a namespace made with ip(8) and makes one of
// the same name again: the first is gone, the second is another namespace.
func TestDeletedNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		skipOrFail(t, "needs ip(8): "+err.Error())
	}
	name := fmt.Sprintf("lwt-nsid-%d", os.Getpid())
	path := "/run/netns/" + name
	ipNetns := func(op string) {
		t.Helper()
		if out, err := exec.Command("ip", "netns", op, name).CombinedOutput(); err != nil {
			t.Fatalf("ip netns %s %s: %v: %s", op, name, err, out)
		}
	}
	ipNetns("add")
	t.Cleanup(func() {
		if _, err := os.Stat(path); err == nil {
			_ = exec.Command("ip", "netns", "del", name).Run()
		}
	})
	f, id, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := Check(path, id); err != nil {
		t.Fatalf("Check before the delete: %v", err)
	}
	ipNetns("del")
	if err := Check(path, id); !errors.Is(err, ErrGone) {
		t.Errorf("Check after the delete = %v, want ErrGone", err)
	}
	ipNetns("add")
	err = Check(path, id)
	if !errors.Is(err, ErrGone) {
		t.Errorf("Check after adding the name again = %v, want ErrGone", err)
	}
	t.Logf("after re-adding: %v", err)
	f, id2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if id2 == id {
		t.Errorf("the new namespace has the old ID %v", id)
	}
}

func skipOrFail(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (required when CI=true)", why)
	}
	t.Skip(why)
}
