package integration

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The netns tests delete the namespace the exporter watches. A socket keeps
// a deleted namespace alive, with its devices, and gets no error or event:
// the exporter has to notice by itself, report it, close its sockets and
// drop the links, and watch the namespace that takes the path next.
//
// Whether the namespace was really released is seen from a veth pair with
// one end in the watched namespace and the other in a peer namespace: the
// kernel deletes the peer end only when it frees the watched namespace,
// which it does only once no socket pins it.

const (
	// nsLossTimeout bounds the time from `ip netns del` to the exporter
	// reporting the loss (it checks every second).
	nsLossTimeout = 3 * time.Second
	// nsReleaseTimeout bounds the time from `ip netns del` to the kernel
	// deleting the peer end.
	nsReleaseTimeout = 5 * time.Second
	// nsBackTimeout bounds the time from `ip netns add` to the exporter
	// watching the new namespace.
	nsBackTimeout = 5 * time.Second
)

// nsCreate makes the namespace lwt-<short>-<pid> with lo up. Unlike newNetns
// it tolerates the test deleting the namespace itself: the cleanup deletes
// it only if it exists.
func nsCreate(t *testing.T, short string) netns {
	t.Helper()
	ns := netns{Name: fmt.Sprintf("lwt-%s-%d", short, os.Getpid())}
	ns.Path = "/run/netns/" + ns.Name
	if _, err := os.Stat(ns.Path); err == nil {
		t.Logf("deleting stale namespace %s", ns.Name)
		nsRun(t, "ip", "netns", "del", ns.Name)
	}
	nsRun(t, "ip", "netns", "add", ns.Name)
	t.Cleanup(func() {
		if _, err := os.Stat(ns.Path); err != nil {
			return
		}
		if out, err := exec.Command("ip", "netns", "del", ns.Name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", ns.Name, err, out)
		}
	})
	ip(t, ns, "link", "set", "lo", "up")
	return ns
}

// nsRun runs a command and fails the test if it fails.
func nsRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// nsVeths makes, in ns, the veth pair inner0/inner1 and the veth local,
// whose peer end remote lives in peer; all up.
func nsVeths(t *testing.T, ns, peer netns, inner0, inner1, local, remote string) {
	t.Helper()
	ipBatch(t, ns, []string{
		fmt.Sprintf("link add %s type veth peer name %s", inner0, inner1),
		fmt.Sprintf("link add %s type veth peer name %s netns %s", local, remote, peer.Name),
		"link set " + inner0 + " up",
		"link set " + inner1 + " up",
		"link set " + local + " up",
	})
	ip(t, peer, "link", "set", remote, "up")
}

// nsSame reports whether the namespace files a and b name the same
// namespace.
func nsSame(t *testing.T, a, b string) bool {
	t.Helper()
	var sa, sb unix.Stat_t
	if err := unix.Stat(a, &sa); err != nil {
		t.Fatalf("stat %s: %v", a, err)
	}
	if err := unix.Stat(b, &sb); err != nil {
		t.Fatalf("stat %s: %v", b, err)
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// nsHasLink reports whether the namespace has the device.
func nsHasLink(ns netns, dev string) bool {
	return exec.Command("ip", "-n", ns.Name, "link", "show", "dev", dev).Run() == nil
}

// nsWaitLinkGone waits until dev is gone from ns and returns how long that
// took from since.
func nsWaitLinkGone(t *testing.T, ns netns, dev string, since time.Time, timeout time.Duration) time.Duration {
	t.Helper()
	for nsHasLink(ns, dev) {
		if time.Since(since) > timeout {
			t.Fatalf("%s still exists in %s %v after its peer's namespace was deleted: the namespace is not released",
				dev, ns.Name, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(since)
}

// nsExported returns the devices of linkwatch_link_up.
func nsExported(f families) []string {
	var d []string
	for dev := range f.devices("linkwatch_link_up") {
		d = append(d, dev)
	}
	slices.Sort(d)
	return d
}

// nsWantLinks returns an error unless exactly devices are exported and
// linkwatch_links agrees.
func nsWantLinks(f families, devices ...string) error {
	slices.Sort(devices)
	if got := nsExported(f); !slices.Equal(got, devices) {
		return fmt.Errorf("exported devices %v, want %v", got, devices)
	}
	return f.want("linkwatch_links", float64(len(devices)))
}

// nsWaitLost waits until the exporter reports the namespace lost with no
// link series left, and returns how long that took from since.
func nsWaitLost(t *testing.T, e *exporter, since time.Time, losses float64) time.Duration {
	t.Helper()
	var took time.Duration
	eventually(t, nsLossTimeout, func() error {
		f, err := e.tryScrape()
		if err != nil {
			return err
		}
		took = time.Since(since)
		if err := f.want("linkwatch_watcher_up", 0); err != nil {
			return err
		}
		if err := f.want("linkwatch_watcher_netns_lost_total", losses); err != nil {
			return err
		}
		for name, mf := range f {
			if strings.HasPrefix(name, "linkwatch_link_") && len(mf.GetMetric()) > 0 {
				return fmt.Errorf("%s still has %d series", name, len(mf.GetMetric()))
			}
		}
		return f.want("linkwatch_links", 0)
	})
	return took
}

// nsWantLog fails the test unless the exporter's log has a line holding
// every one of parts.
func nsWantLog(t *testing.T, e *exporter, parts ...string) string {
	t.Helper()
	for line := range strings.Lines(e.out.String()) {
		ok := true
		for _, p := range parts {
			if !strings.Contains(line, p) {
				ok = false
				break
			}
		}
		if ok {
			return strings.TrimSpace(line)
		}
	}
	t.Errorf("no log line holds all of %q", parts)
	return ""
}

// TestNetnsDeleted deletes the watched namespace and makes one of the same
// name again.
func TestNetnsDeleted(t *testing.T) {
	requireRoot(t)
	ns := nsCreate(t, "nsdel")
	peer := nsCreate(t, "nspeer")
	nsVeths(t, ns, peer, "lwt-nd0", "lwt-nd1", "lwt-nd2", "lwt-nd3")

	e := startExporter(t, ns)
	eventually(t, 5*time.Second, func() error {
		f, err := e.tryScrape()
		if err != nil {
			return err
		}
		if err := nsWantLinks(f, "lo", "lwt-nd0", "lwt-nd1", "lwt-nd2"); err != nil {
			return err
		}
		return f.want("linkwatch_watcher_netns_lost_total", 0)
	})

	del := time.Now()
	nsRun(t, "ip", "netns", "del", ns.Name)
	lost := nsWaitLost(t, e, del, 1)
	released := nsWaitLinkGone(t, peer, "lwt-nd3", del, nsReleaseTimeout)
	t.Logf("MEASURED: loss reported %v and namespace freed %v after ip netns del", lost.Round(time.Millisecond), released.Round(time.Millisecond))
	line := nsWantLog(t, e, "level=WARN", "watched network namespace is gone", ns.Path, "links_dropped=4")
	t.Logf("log: %s", line)

	// Stay gone for a while: waiting is not failing.
	time.Sleep(2500 * time.Millisecond)
	f := e.scrape(t)
	for _, w := range []struct {
		name string
		v    float64
	}{{"linkwatch_watcher_up", 0}, {"linkwatch_watcher_netns_lost_total", 1}, {"linkwatch_netlink_receive_errors_total", 0}, {"linkwatch_links", 0}} {
		if err := f.want(w.name, w.v); err != nil {
			t.Errorf("while the namespace is gone: %v", err)
		}
	}

	// A namespace of the same name, with other devices.
	add := time.Now()
	nsRun(t, "ip", "netns", "add", ns.Name)
	ip(t, ns, "link", "set", "lo", "up")
	nsVeths(t, ns, peer, "lwt-nd4", "lwt-nd5", "lwt-nd6", "lwt-nd7")
	eventually(t, nsBackTimeout, func() error {
		f, err := e.tryScrape()
		if err != nil {
			return err
		}
		if err := f.want("linkwatch_watcher_up", 1); err != nil {
			return err
		}
		return nsWantLinks(f, "lo", "lwt-nd4", "lwt-nd5", "lwt-nd6")
	})
	t.Logf("MEASURED: watching the new namespace %v after ip netns add (and making its devices)", time.Since(add).Round(time.Millisecond))
	f = e.scrape(t)
	for _, w := range []struct {
		name string
		v    float64
	}{{"linkwatch_watcher_netns_lost_total", 1}, {"linkwatch_netlink_receive_errors_total", 0}} {
		if err := f.want(w.name, w.v); err != nil {
			t.Error(err)
		}
	}
	nsWantLog(t, e, "a network namespace is back at the watched path")

	// Events of the new namespace are seen.
	ip(t, ns, "link", "set", "lwt-nd4", "down")
	eventually(t, 5*time.Second, func() error {
		return e.scrape(t).want("linkwatch_link_up", 0, "device", "lwt-nd4")
	})

	// And it is released in turn.
	del = time.Now()
	nsRun(t, "ip", "netns", "del", ns.Name)
	nsWaitLost(t, e, del, 2)
	nsWaitLinkGone(t, peer, "lwt-nd7", del, nsReleaseTimeout)
}

// TestNetnsDeletedWithFailover deletes the watched namespace while route
// failover manages its routes: the route socket and the address socket must
// not pin it either, the policy fails over because its link is gone, and its
// routes are installed in the namespace that comes back.
func TestNetnsDeletedWithFailover(t *testing.T) {
	requireRoot(t)
	ns := nsCreate(t, "nsfo")
	peer := nsCreate(t, "nsfopeer")
	setup := func() {
		t.Helper()
		nsVeths(t, ns, peer, "lwt-nf0", "lwt-nf1", "lwt-nfb", "lwt-nfp")
		ip(t, ns, "addr", "add", "10.79.0.1/24", "dev", "lwt-nfb")
	}
	setup()
	dir := t.TempDir()
	policy := filepath.Join(dir, "linkwatch.yml")
	if err := os.WriteFile(policy, []byte(`global:
  repair_interval: 1s
policies:
  - name: nsfo
    device: lwt-nf0
    triggers: [link]
    routes:
      - {destination: 198.51.100.0/24, gateway: 10.79.0.2, device: lwt-nfb, metric: 50}
    down_delay: 0s
    up_delay: 1s
    min_failover_time: 0s
`), 0o644); err != nil {
		t.Fatal(err)
	}
	e := startExporter(t, ns, "--config.file", policy)
	eventually(t, 5*time.Second, func() error {
		f, err := e.tryScrape()
		if err != nil {
			return err
		}
		if err := nsWantLinks(f, "lo", "lwt-nf0", "lwt-nf1", "lwt-nfb"); err != nil {
			return err
		}
		return f.want("linkwatch_failover_active", 0, "policy", "nsfo")
	})

	del := time.Now()
	nsRun(t, "ip", "netns", "del", ns.Name)
	lost := nsWaitLost(t, e, del, 1)
	released := nsWaitLinkGone(t, peer, "lwt-nfp", del, nsReleaseTimeout)
	t.Logf("MEASURED: with failover, loss reported %v and namespace freed %v after ip netns del", lost.Round(time.Millisecond), released.Round(time.Millisecond))
	// The policy's link is gone: it fails over, but there is nowhere to
	// install its routes yet.
	eventually(t, 5*time.Second, func() error {
		return e.scrape(t).want("linkwatch_failover_active", 1, "policy", "nsfo")
	})
	nsWantLog(t, e, "level=WARN", "closed the socket to release it", "route socket")
	nsWantLog(t, e, "level=WARN", "closed the socket to release it", "address notification socket")

	nsRun(t, "ip", "netns", "add", ns.Name)
	ip(t, ns, "link", "set", "lo", "up")
	setup()
	ip(t, ns, "link", "set", "lwt-nf0", "down") // the primary stays down: still failed over
	eventually(t, nsBackTimeout, func() error {
		if err := e.scrape(t).want("linkwatch_watcher_up", 1); err != nil {
			return err
		}
		out := ip(t, ns, "route", "show", "proto", "229")
		if !strings.Contains(out, "198.51.100.0/24 via 10.79.0.2 dev lwt-nfb") {
			return fmt.Errorf("routes of protocol 229 in the new namespace: %q", out)
		}
		return nil
	})
	nsWantLog(t, e, "opened a route socket in the network namespace now at the watched path")
	t.Logf("the failover route is installed in the new namespace")
}

// TestNetnsProcessExits watches /proc/PID/ns/net of a process that has the
// namespace to itself, and ends the process.
func TestNetnsProcessExits(t *testing.T) {
	requireRoot(t)
	unshare := requireTool(t, "unshare")
	peer := nsCreate(t, "nsprpeer")
	// unshare runs sh, which says so, only once the namespace exists; sh
	// then execs sleep in the same process.
	rd, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	sleeper := exec.Command(unshare, "--net", "--", "sh", "-c", "echo unshared; exec sleep 600")
	sleeper.Stdout = wr
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	_ = wr.Close()
	pid := sleeper.Process.Pid
	exited := make(chan struct{})
	go func() {
		_ = sleeper.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(pid, syscall.SIGKILL) // our own child, by PID
		<-exited
	})
	if line, err := bufio.NewReader(rd).ReadString('\n'); err != nil || line != "unshared\n" {
		t.Fatalf("unshare --net: read %q, %v", line, err)
	}
	path := fmt.Sprintf("/proc/%d/ns/net", pid)
	// Never make devices in the namespace the tests run in.
	for _, other := range []string{testNetns, "/proc/thread-self/ns/net"} {
		if nsSame(t, path, other) {
			t.Fatalf("%s is the namespace of %s, not a new one", path, other)
		}
	}
	// Make the pair through a name attached for the moment, so that the
	// devices are never in the host namespace; detaching leaves the
	// process as the namespace's only holder.
	tmp := netns{Name: fmt.Sprintf("lwt-nsproc-%d", os.Getpid())}
	tmp.Path = "/run/netns/" + tmp.Name
	t.Cleanup(func() {
		if _, err := os.Stat(tmp.Path); err == nil {
			_ = exec.Command("ip", "netns", "del", tmp.Name).Run()
		}
	})
	nsRun(t, "ip", "netns", "attach", tmp.Name, fmt.Sprint(pid))
	if !nsSame(t, tmp.Path, path) {
		t.Fatalf("%s is not the namespace of %s", tmp.Path, path)
	}
	nsVeths(t, tmp, peer, "lwt-np0", "lwt-np1", "lwt-np2", "lwt-np3")
	nsRun(t, "ip", "netns", "del", tmp.Name)

	e := startExporter(t, netns{Name: "pid", Path: path})
	eventually(t, 5*time.Second, func() error {
		f, err := e.tryScrape()
		if err != nil {
			return err
		}
		return nsWantLinks(f, "lo", "lwt-np0", "lwt-np1", "lwt-np2")
	})
	if !nsHasLink(peer, "lwt-np3") {
		t.Fatal("the peer end is gone while the process lives")
	}

	end := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	lost := nsWaitLost(t, e, end, 1)
	released := nsWaitLinkGone(t, peer, "lwt-np3", end, nsReleaseTimeout)
	t.Logf("MEASURED: process namespace loss reported %v and namespace freed %v after the process was killed", lost.Round(time.Millisecond), released.Round(time.Millisecond))
	nsWantLog(t, e, "level=WARN", "watched network namespace is gone", path)
}

// TestInNetnsRestoresThreads checks that inNetns leaves no thread of the
// test binary in the namespace it switched to. A thread left there once
// made the main thread (which the runtime parks rather than ends) sit in a
// deleted test namespace, so that /proc/self/ns/net named that namespace
// and TestNetnsProcessExits mistook the host's namespace for a new one.
func TestInNetnsRestoresThreads(t *testing.T) {
	requireRoot(t)
	ns := nsCreate(t, "innetns")
	var want unix.Stat_t
	if err := unix.Stat(testNetns, &want); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := inNetns(ns.Path, func() error {
				var st unix.Stat_t
				if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
					return err
				}
				if st.Ino == want.Ino {
					return fmt.Errorf("f ran in the test's namespace, not in %s", ns.Name)
				}
				return nil
			}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	tasks, err := filepath.Glob("/proc/self/task/*/ns/net")
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads of the test binary: %v, %v", tasks, err)
	}
	for _, task := range tasks {
		var st unix.Stat_t
		if err := unix.Stat(task, &st); err != nil {
			continue // the thread has exited meanwhile
		}
		if st.Dev != want.Dev || st.Ino != want.Ino {
			t.Errorf("thread %s is in another network namespace (inode %d, want %d)", task, st.Ino, want.Ino)
		}
	}
	t.Logf("%d threads, all in the test's network namespace", len(tasks))
}
