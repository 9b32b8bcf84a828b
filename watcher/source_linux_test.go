package watcher

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"testing"
)

// TestDialNetNS opens sources in a namespace made with ip(8), deletes it
// and makes one of the same name again.
func TestDialNetNS(t *testing.T) {
	var why string
	if os.Geteuid() != 0 {
		why = "needs root"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "needs ip(8): " + err.Error()
	}
	if why != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s (required when CI=true)", why)
		}
		t.Skip(why)
	}
	name := fmt.Sprintf("lwt-wsrc-%d", os.Getpid())
	path := "/run/netns/" + name
	ipNetns := func(op string) {
		t.Helper()
		if out, err := exec.Command("ip", "netns", op, name).CombinedOutput(); err != nil {
			t.Fatalf("ip netns %s %s: %v: %s", op, name, err, out)
		}
	}
	if _, err := Dial(SourceConfig{NetNS: path}); !errors.Is(err, ErrNetNSGone) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Dial of a missing namespace = %v, want ErrNetNSGone and fs.ErrNotExist", err)
	}
	ipNetns("add")
	t.Cleanup(func() {
		if _, err := os.Stat(path); err == nil {
			_ = exec.Command("ip", "netns", "del", name).Run()
		}
	})

	own, err := Dial(SourceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	if _, ok := own.(Liveness); ok {
		t.Error("a source in the exporter's own namespace implements Liveness")
	}

	src, err := Dial(SourceConfig{NetNS: path, ReadBuffer: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	lv, ok := src.(Liveness)
	if !ok {
		t.Fatal("a source in another namespace does not implement Liveness")
	}
	if err := lv.Alive(); err != nil {
		t.Errorf("Alive() = %v, want nil", err)
	}
	if ReadBuffer(src) < 1<<20 {
		t.Errorf("ReadBuffer = %d, want at least %d", ReadBuffer(src), 1<<20)
	}
	msgs, err := src.Dump()
	if err != nil || len(msgs) != 1 { // lo
		t.Errorf("Dump() = %d messages, %v; want lo", len(msgs), err)
	}

	ipNetns("del")
	if err := lv.Alive(); !errors.Is(err, ErrNetNSGone) {
		t.Errorf("Alive() after ip netns del = %v, want ErrNetNSGone", err)
	}
	ipNetns("add")
	if err := lv.Alive(); !errors.Is(err, ErrNetNSGone) {
		t.Errorf("Alive() with another namespace at the path = %v, want ErrNetNSGone", err)
	}
	again, err := Dial(SourceConfig{NetNS: path})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if err := again.(Liveness).Alive(); err != nil {
		t.Errorf("Alive() of the new namespace's source = %v, want nil", err)
	}
}
