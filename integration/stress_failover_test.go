package integration

import (
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The failover half of the reliability suite: the exporter manages the
// routes of the topology of topology_test.go while it is loaded, killed and
// attacked.

// stressScrapeMax bounds the latency of every /metrics request under
// TestStressConcurrency's load: no scrape may reach Prometheus's default
// scrape_timeout of 10s. The p99 bound grows with the number of scrapers,
// which queue for two shared cores running the race-enabled binary: 2s for
// the short form's 8, 8s for the long form's 50 (one scrape costs about
// 70 ms of CPU under the race detector there).
const stressScrapeMax = 10 * time.Second

// stressFlapper flaps the veth pairs lwt-x<i>/lwt-y<i> (made here, in ns)
// every interval until the returned function is called; that function
// deletes them again and returns the number of flaps and the first failure.
func stressFlapper(t *testing.T, ns netns, pairs int, interval time.Duration) func() (int, error) {
	t.Helper()
	var create, down, up, del []string
	for i := range pairs {
		x, y := fmt.Sprintf("lwt-x%d", i), fmt.Sprintf("lwt-y%d", i)
		create = append(create, fmt.Sprintf("link add %s type veth peer name %s", x, y), "link set "+x+" up", "link set "+y+" up")
		del = append(del, "link del "+x)
		down = append(down, "link set "+y+" down")
		up = append(up, "link set "+y+" up")
	}
	ipBatch(t, ns, create)
	batch := func(lines []string) error {
		cmd := exec.Command("ip", "-n", ns.Name, "-batch", "-")
		cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("ip -n %s -batch: %w: %s", ns.Name, err, out)
		}
		return nil
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	var flaps int
	var first error
	go func() {
		defer close(done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if err := batch(down); err == nil {
				err = batch(up)
				if err == nil {
					flaps += pairs
				}
			} else if first == nil {
				first = err
			}
		}
	}()
	return func() (int, error) {
		close(stop)
		<-done
		return flaps, errors.Join(first, batch(del))
	}
}

// TestStressConcurrency loads a failover exporter built with the race
// detector with parallel scrapers, about 20 webhook notifications a second
// that fail over and back, and a steady stream of link events, and requires
// no race report, no failed request (a 503 is retried, as Alertmanager does,
// and may not happen to more than 5% of the notifications), and scrape
// latencies within the stated bounds (see stressScrapeMax).
func TestStressConcurrency(t *testing.T) {
	scrapers := stressSize(8, 50)
	duration := stressSize(20*time.Second, 60*time.Second)
	p99Bound := stressSize(2*time.Second, 8*time.Second)
	topo := foNewTopology(t, "stcc")
	dir := foDir(t)
	e := foStart(t, topo, foWrite(t, filepath.Join(dir, "policy.yml"), foPolicy{Triggers: "[alert]"}.yaml()), "")
	stopFlaps := stressFlapper(t, topo.router, 10, 100*time.Millisecond)
	stopScrapes := e.scrapeConcurrently(scrapers)

	gk := foGroupKey(foInstance)
	firing := foPayload(gk, foLinkAlert("firing", foInstance, foPri))
	resolved := foPayload(gk, foLinkAlert("resolved", foInstance, foPri))
	var (
		calls, failed, retried int
		firstFail              string
		hooks                  []time.Duration
	)
	tick := time.NewTicker(50 * time.Millisecond)
	end := time.Now().Add(duration)
	for i := 0; time.Now().Before(end); i++ {
		<-tick.C
		body := firing
		// Firing for a second, then resolved for two: the policy fails
		// over and back (after min_failover_time) again and again.
		if i%60 >= 20 {
			body = resolved
		}
		calls++
		// A 503 asks Alertmanager to retry, which it does with backoff:
		// so does the test, and counts it. Anything else is a failure.
		for attempt := 1; ; attempt++ {
			code, resp, took, err := e.webhook(e.newRequest(http.MethodPost, body))
			hooks = append(hooks, took)
			if err == nil && code == http.StatusOK {
				break
			}
			if err == nil && code == http.StatusServiceUnavailable && attempt < 5 {
				retried++
				time.Sleep(50 * time.Millisecond)
				continue
			}
			failed++
			if firstFail == "" {
				firstFail = fmt.Sprintf("%d %q %v", code, resp, err)
			}
			break
		}
	}
	tick.Stop()
	load := stopScrapes()
	flaps, flapErr := stopFlaps()
	if flapErr != nil {
		t.Errorf("flapping: %v", flapErr)
	}
	slices.Sort(hooks)
	t.Logf("MEASURED: %v with %d scrapers: %d scrapes, p99 %s, max %s; %d webhook notifications (%.1f/s), "+
		"%d retried after 503, round trip p99 %s, max %s; %d link flaps",
		duration, scrapers, load.Count, ms(load.P99), ms(load.Max), calls, float64(calls)/duration.Seconds(),
		retried, ms(hooks[len(hooks)*99/100]), ms(hooks[len(hooks)-1]), flaps)
	if retried*20 > calls {
		t.Errorf("%d of %d notifications had to be retried, want at most 5%%", retried, calls)
	}
	if load.Err != nil {
		t.Errorf("a scrape failed: %v", load.Err)
	}
	if failed > 0 {
		t.Errorf("%d of %d webhook calls failed, the first: %s", failed, calls, firstFail)
	}
	if load.P99 > p99Bound || load.Max > stressScrapeMax {
		t.Errorf("scrape latency p99 %v, max %v; want at most %v and %v", load.P99, load.Max, p99Bound, stressScrapeMax)
	}
	if flaps == 0 {
		t.Error("no link flapped")
	}
	f := e.scrape(t)
	for _, action := range []string{"failover", "failback"} {
		trigger := map[string]string{"failover": "alert", "failback": "link"}[action]
		if n, err := f.num("linkwatch_failover_transitions_total", "policy", foPolicyName, "action", action, "trigger", trigger); err != nil || n < 2 {
			t.Errorf("%s transitions: %v %v, want several", action, n, err)
		}
	}
	// Resolved at last: the policy fails back.
	e.notify(t, resolved, 1)
	foWaitInstalled(t, topo, 0, foUpDelay+foMinFail+2*time.Second)
}

// TestStressCrash kills the exporter with SIGKILL at random moments around
// failovers and failbacks and restarts it: each time, the routes must come
// to be exactly what the policy wants for the link's state, with no
// duplicate and no stale route.
func TestStressCrash(t *testing.T) {
	kills := stressSize(5, 50)
	rng := stressRand(t)
	topo := foNewTopology(t, "stkl")
	dir := foDir(t)
	policy := foWrite(t, filepath.Join(dir, "policy.yml"), foPolicy{}.yaml())
	e := foStart(t, topo, policy, "")
	cut := false
	var restarts []time.Duration
	for i := range kills {
		var what string
		var delay time.Duration
		if !cut {
			// During a failover: the backup routes go in within a few
			// milliseconds of the cut.
			delay = time.Duration(rng.IntN(30)) * time.Millisecond
			foCut(t, topo)
			what = "failover"
		} else {
			// During a failback: it comes up_delay after the restore.
			delay = foUpDelay - 100*time.Millisecond + time.Duration(rng.IntN(200))*time.Millisecond
			foRestore(t, topo)
			what = "failback"
		}
		cut = !cut
		time.Sleep(delay)
		e.kill(t)
		state := func() string {
			if err := foInstalled(topo, 50); err == nil {
				return "backup routes"
			}
			if err := foInstalled(topo, 0); err == nil {
				return "no routes"
			}
			v4, _ := foOurRoutes(topo.router, "-4")
			v6, _ := foOurRoutes(topo.router, "-6")
			return fmt.Sprintf("IPv4 %q, IPv6 %q", v4, v6)
		}()
		start := time.Now()
		e = foStart(t, topo, policy, "")
		want := 0
		if cut {
			want = 50
		}
		// A restarted exporter adopts routes it finds; a failback then
		// waits up_delay and min_failover_time again.
		took := foWaitInstalled(t, topo, want, foUpDelay+foMinFail+3*time.Second)
		restarts = append(restarts, time.Since(start))
		time.Sleep(foRepair + 100*time.Millisecond) // and it stays so across a repair pass
		foRequireInstalled(t, topo, want, fmt.Sprintf("kill %d, a repair interval after the routes were right", i+1))
		t.Logf("kill %d: %v after the %s began; left %s; restarted, routes right %v later",
			i+1, delay, what, state, took.Round(time.Millisecond))
	}
	if cut {
		foRestore(t, topo)
		foWaitInstalled(t, topo, 0, foUpDelay+foMinFail+2*time.Second)
	}
	slices.Sort(restarts)
	t.Logf("MEASURED: %d SIGKILLs around failover and failback, 0 route diffs; restart to correct routes: median %s, max %s",
		kills, ms(restarts[len(restarts)/2]), ms(restarts[len(restarts)-1]))
}

// TestStressSigterm sends SIGTERM to the exporter while a webhook
// notification that fails over is in flight: the notification is either
// applied in full (both backup routes) and answered 200, or refused and not
// applied; never only one route, never 200 without the routes.
func TestStressSigterm(t *testing.T) {
	runs := stressSize(5, 20)
	rng := stressRand(t)
	topo := foNewTopology(t, "stst")
	dir := foDir(t)
	policy := foWrite(t, filepath.Join(dir, "policy.yml"), foPolicy{Triggers: "[alert]"}.yaml())
	firing := foPayload(foGroupKey(foInstance), foLinkAlert("firing", foInstance, foPri))
	outcomes := make(map[string]int)
	for i := range runs {
		e := foStart(t, topo, policy, "")
		// Routes adopted from the previous run fail back first.
		foWaitInstalled(t, topo, 0, foUpDelay+foMinFail+3*time.Second)
		// Half the signals land in the first 2 ms, before or as the
		// notification reaches the engine; the rest up to 15 ms in.
		delay := time.Duration(rng.IntN(15000)) * time.Microsecond
		if rng.IntN(2) == 0 {
			delay = time.Duration(rng.IntN(2000)) * time.Microsecond
		}
		var code int
		var err error
		var wg sync.WaitGroup
		wg.Go(func() { code, _, _, err = e.webhook(e.newRequest(http.MethodPost, firing)) })
		time.Sleep(delay)
		if err := syscall.Kill(e.cmd.Process.Pid, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		select {
		case <-e.done:
		case <-time.After(5 * time.Second):
			t.Fatalf("run %d: the exporter did not exit within 5s of SIGTERM", i+1)
		}
		e.killed = true // stopped by the test: the cleanup only checks its output
		if e.waitErr != nil {
			t.Errorf("run %d: exit after SIGTERM: %v", i+1, e.waitErr)
		}
		full, none := foInstalled(topo, 50) == nil, foInstalled(topo, 0) == nil
		outcome := fmt.Sprintf("status %d", code)
		if err != nil {
			outcome = "connection error"
		}
		switch {
		case !full && !none:
			t.Errorf("run %d: half-applied after SIGTERM %v into the request (%s): %v", i+1, delay, outcome, foInstalled(topo, 50))
		case code == http.StatusOK && !full:
			t.Errorf("run %d: answered 200 but the backup routes are not installed", i+1)
		case err == nil && code != http.StatusOK && code != http.StatusServiceUnavailable:
			t.Errorf("run %d: status %d, want 200 or 503", i+1, code)
		}
		applied := map[bool]string{true: "applied", false: "not applied"}[full]
		outcomes[outcome+", "+applied]++
		t.Logf("run %d: SIGTERM %v into the request: %s, %s", i+1, delay, outcome, applied)
	}
	// Leave no route behind.
	foStart(t, topo, policy, "")
	foWaitInstalled(t, topo, 0, foUpDelay+foMinFail+3*time.Second)
	t.Logf("MEASURED: %d SIGTERMs during a failover notification: %v; never half-applied", runs, outcomes)
}
