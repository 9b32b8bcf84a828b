// Package integration runs the real linkwatch_exporter binary against veth
// pairs in throw-away network namespaces and checks what it exports against
// the kernel's own counters.
//
// Every namespace and interface the tests create is named lwt-*; interfaces
// only ever live inside a namespace made by the test, never in the host's.
// Tests that need root or iproute2 fail when CI=true and cannot run, and skip
// otherwise.
package integration

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"
)

// binary is the race-enabled exporter built by TestMain.
var binary string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

// testNetns names the network namespace the test binary started in: a
// descriptor of it, kept open while the tests run.
var testNetns string

func runTests(m *testing.M) int {
	flag.Parse()
	// Remember the namespace the tests run in before any test switches a
	// thread: tests that make a new namespace check against it that they
	// never make devices here.
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	defer self.Close()
	testNetns = fmt.Sprintf("/proc/self/fd/%d", self.Fd())
	dir, err := os.MkdirTemp("", "lwt-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	// TestUnprivileged runs the binary as nobody: the directory must be
	// searchable by everyone.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	binary = filepath.Join(dir, "linkwatch_exporter")
	start := time.Now()
	if err := buildExporter(binary, "-race"); err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	if testing.Verbose() {
		fmt.Printf("integration: built %s in %v\n", binary, time.Since(start).Round(time.Millisecond))
	}
	return m.Run()
}

// buildExporter builds the exporter into path with extra go build flags.
func buildExporter(path string, flags ...string) error {
	args := append(append([]string{"build"}, flags...), "-o", path, "github.com/linkwatch/linkwatch_exporter")
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("building the exporter: %w\n%s", err, out)
	}
	return nil
}

// binaryEnv is the environment of every exporter the tests run. The race
// runtime sleeps one second at exit by default (atexit_sleep_ms=1000), which
// would hide how fast the exporter itself shuts down.
func binaryEnv() []string {
	return append(os.Environ(), "GORACE=atexit_sleep_ms=0")
}

// ciMode is true when the environment cannot be an excuse for not testing.
func ciMode() bool { return os.Getenv("CI") == "true" }

// unavailable fails the test when CI=true and skips it otherwise.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if ciMode() {
		t.Fatalf("CI=true but the test cannot run: %s", msg)
	}
	t.Skip(msg)
}

// requireRoot makes sure the test can create network namespaces.
func requireRoot(t testing.TB) {
	t.Helper()
	if euid := os.Geteuid(); euid != 0 {
		unavailable(t, "needs root, euid is %d", euid)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		unavailable(t, "needs iproute2: %v", err)
	}
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil {
		unavailable(t, "ip netns list: %v: %s", err, out)
	}
}

// requireTool returns the path of an executable the test needs.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		unavailable(t, "needs %s: %v", name, err)
	}
	return p
}

// A netns is a network namespace made by the test.
type netns struct {
	Name string // lwt-<short>-<pid>
	Path string // /run/netns/Name
}

// newNetns creates the namespace lwt-<short>-<pid>, brings its lo up and
// deletes it (and with it every interface inside) when the test ends.
func newNetns(t testing.TB, short string) netns {
	t.Helper()
	ns := netns{Name: fmt.Sprintf("lwt-%s-%d", short, os.Getpid())}
	ns.Path = "/run/netns/" + ns.Name
	if _, err := os.Stat(ns.Path); err == nil {
		t.Logf("deleting stale namespace %s", ns.Name)
		if out, err := exec.Command("ip", "netns", "del", ns.Name).CombinedOutput(); err != nil {
			t.Fatalf("ip netns del %s: %v: %s", ns.Name, err, out)
		}
	}
	if out, err := exec.Command("ip", "netns", "add", ns.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", ns.Name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns.Name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", ns.Name, err, out)
		}
	})
	ip(t, ns, "link", "set", "lo", "up")
	return ns
}

// ip runs `ip -n NS args...` and returns its output.
func ip(t testing.TB, ns netns, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns.Name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", ns.Name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ipBatch runs the ip commands in lines (without the leading "ip") in one
// `ip -n NS -batch -`, which stops at the first failing command.
func ipBatch(t testing.TB, ns netns, lines []string) {
	t.Helper()
	cmd := exec.Command("ip", "-n", ns.Name, "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s -batch (%d commands): %v: %s", ns.Name, len(lines), err, out)
	}
}

// counters are a device's carrier counters as sysfs shows them.
type counters struct {
	Changes, Up, Down uint64
}

// readSysfs reads carrier_changes, carrier_up_count and carrier_down_count
// of the devices (all of the namespace's if none are given) with a single
// `ip netns exec`, which mounts the namespace's own /sys. It never reads the
// carrier file, which would make the kernel flush pending link events.
func readSysfs(ns netns, devices ...string) (map[string]counters, error) {
	const script = `cd /sys/class/net || exit 1
[ $# -gt 0 ] || set -- *
for d in "$@"; do
	read c < "$d/carrier_changes" && read u < "$d/carrier_up_count" && read w < "$d/carrier_down_count" || exit 1
	echo "$d $c $u $w"
done`
	args := append([]string{"netns", "exec", ns.Name, "sh", "-c", script, "sh"}, devices...)
	var stderr bytes.Buffer
	cmd := exec.Command("ip", args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("reading sysfs counters in %s: %v: %s", ns.Name, err, stderr.Bytes())
	}
	res := make(map[string]counters)
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) != 4 {
			return nil, fmt.Errorf("unexpected sysfs line %q", line)
		}
		var c [3]uint64
		for i := range c {
			if c[i], err = strconv.ParseUint(f[i+1], 10, 64); err != nil {
				return nil, fmt.Errorf("sysfs line %q: %v", line, err)
			}
		}
		res[f[0]] = counters{Changes: c[0], Up: c[1], Down: c[2]}
	}
	for _, d := range devices {
		if _, ok := res[d]; !ok {
			return nil, fmt.Errorf("no sysfs counters for %s", d)
		}
	}
	return res, nil
}

// sysfsCounters is readSysfs that fails the test on error.
func sysfsCounters(t testing.TB, ns netns, devices ...string) map[string]counters {
	t.Helper()
	c, err := readSysfs(ns, devices...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// eventually calls f every 100 ms until it returns nil, and fails the test
// with f's last error if that does not happen within timeout. It returns how
// long it waited.
func eventually(t testing.TB, timeout time.Duration, f func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := f()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("condition not met within %v: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer that a process may write while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const raceWarning = "WARNING: DATA RACE"

// checkRace fails the test if the race-enabled binary reported a race.
func checkRace(t testing.TB, output string) {
	t.Helper()
	if strings.Contains(output, raceWarning) {
		t.Errorf("the exporter reported a data race:\n%s", output)
	}
}

// A process is a running exporter started by the test.
type process struct {
	cmd     *exec.Cmd
	out     *syncBuffer
	done    chan struct{} // closed when the process has exited
	waitErr error         // valid after done is closed
}

// launch starts cmd, capturing its output, and registers a cleanup that stops
// it with SIGTERM and requires a clean exit within a second.
func launch(t testing.TB, cmd *exec.Cmd) *process {
	t.Helper()
	p := &process{cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Env = binaryEnv()
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", cmd, err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(t) })
	return p
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process and requires it to exit with status 0
// within one second.
func (p *process) stop(t testing.TB) {
	t.Helper()
	pid := p.cmd.Process.Pid
	if p.exited() {
		t.Errorf("exporter (pid %d) exited before the test ended: %v", pid, p.waitErr)
	} else {
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			t.Errorf("SIGTERM to pid %d: %v", pid, err)
		}
		start := time.Now()
		select {
		case <-p.done:
			took := time.Since(start)
			if p.waitErr != nil {
				t.Errorf("exporter (pid %d) exited with %v after SIGTERM", pid, p.waitErr)
			} else {
				t.Logf("exporter (pid %d) exited cleanly %v after SIGTERM", pid, took.Round(time.Millisecond))
			}
		case <-time.After(time.Second):
			_ = syscall.Kill(pid, syscall.SIGKILL)
			<-p.done
			t.Errorf("exporter (pid %d) did not exit within 1s of SIGTERM; killed it", pid)
		}
	}
	out := p.out.String()
	checkRace(t, out)
	if t.Failed() {
		t.Logf("exporter output:\n%s", out)
	}
}

// An exporter is the binary watching a test namespace from the host
// namespace.
type exporter struct {
	*process
	addr string // host:port of the HTTP server
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// startExporter runs the binary in the host namespace watching ns, and waits
// until it serves metrics with linkwatch_watcher_up 1.
func startExporter(t testing.TB, ns netns, extraFlags ...string) *exporter {
	t.Helper()
	addr := freeAddr(t)
	args := append([]string{"--watcher.netns", ns.Path, "--web.listen-address", addr}, extraFlags...)
	e := &exporter{process: launch(t, exec.Command(binary, args...)), addr: addr}
	start := time.Now()
	eventually(t, 20*time.Second, func() error {
		if e.exited() {
			t.Fatalf("exporter exited while starting: %v\n%s", e.waitErr, e.out.String())
		}
		f, err := e.tryScrape()
		if err != nil {
			return err
		}
		return f.want("linkwatch_watcher_up", 1)
	})
	t.Logf("exporter pid %d serving on %s after %v", e.cmd.Process.Pid, addr, time.Since(start).Round(time.Millisecond))
	return e
}

var httpClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

// get fetches path from the exporter with the given Accept header (none if
// empty).
func (e *exporter) get(path, accept string) ([]byte, http.Header, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+e.addr+path, nil)
	if err != nil {
		return nil, nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
	}
	return body, resp.Header, nil
}

// A scrapeLoad sums up the scrapes of scrapeConcurrently.
type scrapeLoad struct {
	Count int
	Err   error         // the first failure
	P99   time.Duration // of the successful scrapes' latencies
	Max   time.Duration
}

// scrapeConcurrently scrapes /metrics from n goroutines in a loop,
// so that scrapes overlap each other and the watcher's updates (the race
// detector in the binary then sees them). The returned function stops them
// and returns what they saw.
func (e *exporter) scrapeConcurrently(n int) func() scrapeLoad {
	var (
		mu        sync.Mutex
		load      scrapeLoad
		latencies []time.Duration
		wg        sync.WaitGroup
		stopped   = make(chan struct{})
	)
	for range n {
		wg.Go(func() {
			for {
				select {
				case <-stopped:
					return
				default:
				}
				// Fetch only: parsing megabytes under -race would
				// starve the exporter on a small machine.
				start := time.Now()
				b, err := e.scrapeText()
				took := time.Since(start)
				if err == nil && !bytes.Contains(b, []byte("linkwatch_watcher_up")) {
					err = fmt.Errorf("scrape without linkwatch_watcher_up (%d bytes)", len(b))
				}
				mu.Lock()
				load.Count++
				if err != nil && load.Err == nil {
					load.Err = err
				}
				if err == nil {
					latencies = append(latencies, took)
				}
				mu.Unlock()
			}
		})
	}
	return func() scrapeLoad {
		close(stopped)
		wg.Wait()
		slices.Sort(latencies)
		if k := len(latencies); k > 0 {
			load.P99, load.Max = latencies[(k*99)/100], latencies[k-1]
		}
		return load
	}
}

// scrapeText returns the text exposition of /metrics.
func (e *exporter) scrapeText() ([]byte, error) {
	b, _, err := e.get("/metrics", "")
	return b, err
}

// tryScrape scrapes /metrics and parses the text format.
func (e *exporter) tryScrape() (families, error) {
	b, err := e.scrapeText()
	if err != nil {
		return nil, err
	}
	return parseText(b)
}

// scrape is tryScrape that fails the test on error.
func (e *exporter) scrape(t testing.TB) families {
	t.Helper()
	f, err := e.tryScrape()
	if err != nil {
		t.Fatalf("scraping %s: %v", e.addr, err)
	}
	return f
}

func parseText(b []byte) (families, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	f, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("parsing the exposition: %w", err)
	}
	return f, nil
}

// families are the parsed metric families of one scrape, by name.
type families map[string]*dto.MetricFamily

// labelsOf returns the metric's labels as a map.
func labelsOf(m *dto.Metric) map[string]string {
	l := make(map[string]string, len(m.GetLabel()))
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

// find returns the one metric of family name whose labels include the
// label/value pairs kv.
func (f families) find(name string, kv ...string) (*dto.Metric, error) {
	mf := f[name]
	if mf == nil {
		return nil, fmt.Errorf("no metric family %s", name)
	}
	var found *dto.Metric
	for _, m := range mf.GetMetric() {
		l := labelsOf(m)
		match := true
		for i := 0; i+1 < len(kv); i += 2 {
			if v, ok := l[kv[i]]; !ok || v != kv[i+1] {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		if found != nil {
			return nil, fmt.Errorf("more than one %s series with labels %v", name, kv)
		}
		found = m
	}
	if found == nil {
		return nil, fmt.Errorf("no %s series with labels %v", name, kv)
	}
	return found, nil
}

// num returns the value of a gauge, counter or untyped series.
func (f families) num(name string, kv ...string) (float64, error) {
	m, err := f.find(name, kv...)
	if err != nil {
		return 0, err
	}
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue(), nil
	case m.Counter != nil:
		return m.Counter.GetValue(), nil
	case m.Untyped != nil:
		return m.Untyped.GetValue(), nil
	}
	return 0, fmt.Errorf("%s%v is not a gauge, counter or untyped", name, kv)
}

// get is num that fails the test on error.
func (f families) get(t testing.TB, name string, kv ...string) float64 {
	t.Helper()
	v, err := f.num(name, kv...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// want returns an error unless the series has value v.
func (f families) want(name string, v float64, kv ...string) error {
	got, err := f.num(name, kv...)
	if err != nil {
		return err
	}
	if got != v {
		return fmt.Errorf("%s%v = %v, want %v", name, kv, got, v)
	}
	return nil
}

// hist returns the histogram of family name for the device.
func (f families) hist(name, device string) (*dto.Histogram, error) {
	m, err := f.find(name, "device", device)
	if err != nil {
		return nil, err
	}
	if m.Histogram == nil {
		return nil, fmt.Errorf("%s{device=%q} is not a histogram", name, device)
	}
	return m.Histogram, nil
}

// devices returns the device label values of family name.
func (f families) devices(name string) map[string]bool {
	d := make(map[string]bool)
	for _, m := range f[name].GetMetric() {
		if v, ok := labelsOf(m)["device"]; ok {
			d[v] = true
		}
	}
	return d
}

// linkSeriesOf returns "family{device}" for every series of a linkwatch_link_*
// family whose device is in names.
func (f families) linkSeriesOf(names map[string]bool) []string {
	var out []string
	for name, mf := range f {
		if !strings.HasPrefix(name, "linkwatch_link_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			if d := labelsOf(m)["device"]; names[d] {
				out = append(out, fmt.Sprintf("%s{device=%q}", name, d))
			}
		}
	}
	sort.Strings(out)
	return out
}

// exportedCounters returns the three carrier counters the exporter shows for
// the device.
func (f families) exportedCounters(device string) (counters, error) {
	var c counters
	for _, x := range []struct {
		name string
		dst  *uint64
	}{
		{"linkwatch_link_carrier_changes_total", &c.Changes},
		{"linkwatch_link_carrier_up_changes_total", &c.Up},
		{"linkwatch_link_carrier_down_changes_total", &c.Down},
	} {
		v, err := f.num(x.name, "device", device)
		if err != nil {
			return c, err
		}
		*x.dst = uint64(v)
	}
	return c, nil
}

// logValue finds the first `key=value` in a logfmt log.
func logValue(log, key string) (string, bool) {
	m := regexp.MustCompile(`\b` + regexp.QuoteMeta(key) + `=("[^"]*"|\S+)`).FindStringSubmatch(log)
	if m == nil {
		return "", false
	}
	return strings.Trim(m[1], `"`), true
}

// runBinary runs the binary to completion (killing it after timeout) and
// returns its combined output and exit code, -1 if it was killed.
func runBinary(t testing.TB, timeout time.Duration, name string, args ...string) (string, int, time.Duration) {
	t.Helper()
	var out syncBuffer
	cmd := exec.Command(name, args...)
	cmd.Env = binaryEnv()
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", cmd, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(timeout):
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
		<-done
		t.Errorf("%s still running after %v; killed it\n%s", cmd, timeout, out.String())
		return out.String(), -1, time.Since(start)
	}
	took := time.Since(start)
	checkRace(t, out.String())
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0, took
	case errors.As(err, &ee):
		return out.String(), ee.ExitCode(), took
	default:
		t.Fatalf("%s: %v", cmd, err)
		return "", 0, 0
	}
}

// nsGet does an HTTP GET of http://addr/path over a TCP connection made
// inside the network namespace at nsPath, so that the traffic stays on that
// namespace's loopback, and requires 200.
func nsGet(nsPath, addr, path string) ([]byte, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return nil, err
	}
	code, body, err := nsDo(nsPath, req)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d %s", path, code, body)
	}
	return body, nil
}

// nsDo sends req over a TCP connection made inside the network namespace at
// nsPath, and returns the status code and the body of the response.
func nsDo(nsPath string, req *http.Request) (int, []byte, error) {
	var conn net.Conn
	// The socket is created in the namespace; it stays there whichever
	// thread uses it afterwards.
	err := inNetns(nsPath, func() (err error) {
		conn, err = net.DialTimeout("tcp", req.URL.Host, 5*time.Second)
		return err
	})
	if err != nil {
		return 0, nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	req.Close = true
	if err := req.Write(conn); err != nil {
		return 0, nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, body, nil
}

// inNetns runs f on an OS thread switched into the network namespace at
// nsPath, for creating sockets there (a socket stays in the namespace it was
// created in). The thread is switched back before it is released. If that
// fails it stays locked, and the runtime ends it with the goroutine, or,
// if it is the main thread, parks it for good; either way no other code
// runs on a thread in the wrong namespace. Even a parked main thread must
// not stay elsewhere: /proc/self/ns/net shows the main thread's namespace,
// and the tests compare namespaces with it.
func inNetns(nsPath string, f func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			ch <- fmt.Errorf("open this thread's network namespace: %w", err)
			return // still locked: the thread goes
		}
		defer orig.Close()
		target, err := os.Open(nsPath)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("setns %s: %w", nsPath, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- errors.Join(ferr, fmt.Errorf("switch back from %s: %w", nsPath, err))
			return // still locked: the thread goes
		}
		runtime.UnlockOSThread()
		ch <- ferr
	}()
	return <-ch
}

// ms formats a duration in milliseconds.
func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + "ms"
}

// secs converts seconds to a duration.
func secs(s float64) time.Duration {
	return time.Duration(math.Round(s * float64(time.Second)))
}

// perDevice splits the linkwatch_link_* families of f by their device label:
// each device's families hold only its series. Looking a device's series up
// there instead of in f keeps checks of thousands of links linear.
func (f families) perDevice() map[string]families {
	out := make(map[string]families)
	for name, mf := range f {
		if !strings.HasPrefix(name, "linkwatch_link_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			d, ok := labelsOf(m)["device"]
			if !ok {
				continue
			}
			df := out[d]
			if df == nil {
				df = make(families)
				out[d] = df
			}
			dmf := df[name]
			if dmf == nil {
				dmf = &dto.MetricFamily{Name: mf.Name, Help: mf.Help, Type: mf.Type}
				df[name] = dmf
			}
			dmf.Metric = append(dmf.Metric, m)
		}
	}
	return out
}

// An agreement sums up what agreesWithKernel checked.
type agreement struct {
	Timed, Untimed float64 // down periods in the histograms, and untimed
	Flaps          uint64  // growth of the kernel's down counts since the baseline
}

// firstCounters checks that the first scrape f shows, for every device in
// names, the counters sysfs showed before the exporter started (nothing
// flapped in between), and returns each device's down count as the baseline
// for agreesWithKernel.
func (f families) firstCounters(pre map[string]counters, names []string) (map[string]uint64, error) {
	baseline := make(map[string]uint64, len(names))
	per := f.perDevice()
	for _, n := range names {
		c, err := per[n].exportedCounters(n)
		if err != nil {
			return nil, err
		}
		if c != pre[n] {
			return nil, fmt.Errorf("%s: first scrape shows counters %+v, sysfs before start %+v", n, c, pre[n])
		}
		baseline[n] = c.Down
	}
	return baseline, nil
}

// agreesWithKernel returns nil if, for every device in names, the scrape f
// shows exactly the kernel's counters sys, the link up, with carrier and
// administratively up, and its timed plus untimed down periods add up to the
// growth of the kernel's down count since baseline.
func (f families) agreesWithKernel(sys map[string]counters, names []string, baseline map[string]uint64) (agreement, error) {
	var a agreement
	per := f.perDevice()
	for _, n := range names {
		f := per[n]
		c, err := f.exportedCounters(n)
		if err != nil {
			return a, err
		}
		if c != sys[n] {
			return a, fmt.Errorf("%s: exported counters %+v, sysfs %+v", n, c, sys[n])
		}
		for _, m := range []string{"linkwatch_link_up", "linkwatch_link_carrier", "linkwatch_link_admin_up"} {
			if err := f.want(m, 1, "device", n); err != nil {
				return a, err
			}
		}
		h, err := f.hist("linkwatch_link_down_duration_seconds", n)
		if err != nil {
			return a, err
		}
		untimed, err := f.num("linkwatch_link_carrier_down_untimed_total", "device", n)
		if err != nil {
			return a, err
		}
		grown := sys[n].Down - baseline[n]
		if got := h.GetSampleCount() + uint64(untimed); got != grown {
			return a, fmt.Errorf("%s: down histogram count %d + untimed %v = %d, sysfs down count grew by %d",
				n, h.GetSampleCount(), untimed, got, grown)
		}
		a.Timed += float64(h.GetSampleCount())
		a.Untimed += untimed
		a.Flaps += grown
	}
	return a, nil
}

// netlinkHealth returns the overrun and resync counts of the scrape f, and an
// error unless the watcher is up, has resynced after every overrun, and
// counted no receive or decode error (overruns take the resync path, not the
// error and backoff one).
func (f families) netlinkHealth() (overruns, resyncs float64, err error) {
	if overruns, err = f.num("linkwatch_netlink_overruns_total"); err != nil {
		return 0, 0, err
	}
	if resyncs, err = f.num("linkwatch_netlink_resyncs_total"); err != nil {
		return 0, 0, err
	}
	if resyncs < overruns {
		return 0, 0, fmt.Errorf("%v resyncs for %v overruns", resyncs, overruns)
	}
	for _, m := range []struct {
		name string
		v    float64
	}{
		{"linkwatch_watcher_up", 1},
		{"linkwatch_netlink_receive_errors_total", 0},
		{"linkwatch_netlink_decode_errors_total", 0},
	} {
		if err := f.want(m.name, m.v); err != nil {
			return 0, 0, err
		}
	}
	return overruns, resyncs, nil
}

// A convergence is what checkConverged found.
type convergence struct {
	Overruns, Resyncs float64
	agreement
}

// checkConverged returns nil if the scrape f shows a healthy watcher (see
// netlinkHealth) that agrees with the kernel about every device in names of
// ns (see agreesWithKernel); with mustOverrun it must also have counted an
// overrun.
func checkConverged(f families, ns netns, names []string, baseline map[string]uint64, mustOverrun bool) (convergence, error) {
	var c convergence
	var err error
	if c.Overruns, c.Resyncs, err = f.netlinkHealth(); err != nil {
		return c, err
	}
	if mustOverrun && c.Overruns == 0 {
		return c, fmt.Errorf("no overruns counted")
	}
	sys, err := readSysfs(ns, names...)
	if err != nil {
		return c, err
	}
	c.agreement, err = f.agreesWithKernel(sys, names, baseline)
	return c, err
}

// readProcStatus returns the fields of /proc/PID/status, their values with
// white space runs collapsed to one space.
func readProcStatus(pid int) (map[string]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	fields := make(map[string]string)
	for line := range strings.Lines(string(b)) {
		k, v, _ := strings.Cut(line, ":")
		fields[k] = strings.Join(strings.Fields(v), " ")
	}
	return fields, nil
}

// procStatus is readProcStatus that fails the test on error.
func procStatus(t testing.TB, pid int) map[string]string {
	t.Helper()
	fields, err := readProcStatus(pid)
	if err != nil {
		t.Fatal(err)
	}
	return fields
}
