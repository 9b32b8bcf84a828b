package routes

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/linkwatch/linkwatch_exporter/netns"
)

// TestKernelAndAddressesReleaseDeletedNetns deletes the namespace that a
// Kernel and an address watcher have sockets in. Its veth peer lives in a
// second namespace and disappears only once no socket pins the first; then a
// namespace of the same name is made again and both use it.
func TestKernelAndAddressesReleaseDeletedNetns(t *testing.T) {
	requireRootAndIP(t)
	watched := fmt.Sprintf("lwt-kdel-%d", os.Getpid())
	peer := fmt.Sprintf("lwt-kpeer-%d", os.Getpid())
	for _, name := range []string{watched, peer} {
		run(t, "ip", "netns", "add", name)
		t.Cleanup(func() {
			if _, err := os.Stat("/run/netns/" + name); err == nil {
				if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
					t.Errorf("ip netns del %s: %v\n%s", name, err, out)
				}
			}
		})
	}
	setup := func() {
		t.Helper()
		run(t, "ip", "-n", watched, "link", "add", "lwt-a", "type", "veth", "peer", "name", "lwt-b", "netns", peer)
		run(t, "ip", "-n", watched, "addr", "add", "10.78.0.1/24", "dev", "lwt-a")
		run(t, "ip", "-n", watched, "link", "set", "lwt-a", "up")
		run(t, "ip", "-n", peer, "link", "set", "lwt-b", "up")
	}
	setup()
	path := "/run/netns/" + watched

	k, err := DialKernel(KernelConfig{NetNS: path, Protocol: testProto, CheckInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pokes, err := WatchAddresses(ctx, AddressWatchConfig{NetNS: path, CheckInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	waitPoke := func(what string) {
		t.Helper()
		select {
		case <-pokes:
		case <-time.After(5 * time.Second):
			t.Fatalf("no address poke after %s", what)
		}
	}
	drain := func() {
		for {
			select {
			case <-pokes:
			case <-time.After(100 * time.Millisecond):
				return
			}
		}
	}
	mustList(t, k)
	run(t, "ip", "-n", watched, "addr", "add", "10.78.1.1/24", "dev", "lwt-a")
	waitPoke("adding an address")
	drain()

	run(t, "ip", "netns", "del", watched)
	start := time.Now()
	for {
		// The peer goes away with the namespace, once nothing pins it.
		if err := exec.Command("ip", "-n", peer, "link", "show", "dev", "lwt-b").Run(); err != nil {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("the veth peer still exists 5 s after the namespace was deleted: a socket pins the namespace")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("the deleted namespace was freed %v after ip netns del", time.Since(start).Round(time.Millisecond))
	waitPoke("the namespace was deleted")
	if _, err := k.List(); !errors.Is(err, ErrTemporary) || !errors.Is(err, netns.ErrGone) {
		t.Errorf("List with the namespace gone = %v, want ErrTemporary and netns.ErrGone", err)
	} else {
		t.Logf("List with the namespace gone: %v", err)
	}
	drain()

	// A new namespace of the same name.
	run(t, "ip", "netns", "add", watched)
	setup()
	waitPoke("the namespace came back")
	wantRoutes(t, "List in the new namespace", mustList(t, k))
	r := Route{Destination: pfx("198.51.100.0/24"), Gateway: addr("10.78.0.2"), Device: "lwt-a", Metric: 50, Table: 254}
	if err := k.Replace(r); err != nil {
		t.Fatalf("Replace in the new namespace: %v", err)
	}
	wantLines(t, "routes of protocol 229 in the new namespace",
		(&testNS{name: watched}).routes(t, "proto", "229"), "198.51.100.0/24 via 10.78.0.2 dev lwt-a metric 50")
	drain()
	run(t, "ip", "-n", watched, "addr", "add", "10.78.2.1/24", "dev", "lwt-a")
	waitPoke("adding an address in the new namespace")

	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := k.List(); err == nil {
		t.Error("List after Close succeeded")
	}
}
