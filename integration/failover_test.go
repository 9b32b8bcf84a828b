package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The failover tests run the exporter with a policy file against the
// topology of topology_test.go: it watches the router namespace and manages
// its routes. Measured numbers are logged with the prefix "MEASURED:".

const (
	foPolicyName = "wan"
	foUpDelay    = 2 * time.Second
	foMinFail    = 1 * time.Second
	foRepair     = 1 * time.Second
	foInstance   = "r1:9957"
	foOther      = "r2:9957"
	foAlertName  = "LinkwatchLinkDown"
)

// foPolicy describes the policy file of a test.
type foPolicy struct {
	Triggers  string // YAML flow list; [link] if empty
	Metric    int    // of both backup routes; 50 if 0
	Dampening string // YAML flow mapping, or empty for none
	DryRun    bool
	Bogus     bool          // add an unknown key (an invalid file)
	UpDelay   time.Duration // foUpDelay if 0
	MinFail   time.Duration // foMinFail if 0
}

// yaml renders the policy file: one policy for lwt-pri whose routes are an
// IPv4 and an IPv6 default route through gw2.
func (p foPolicy) yaml() string {
	if p.Triggers == "" {
		p.Triggers = "[link]"
	}
	if p.Metric == 0 {
		p.Metric = 50
	}
	if p.UpDelay == 0 {
		p.UpDelay = foUpDelay
	}
	if p.MinFail == 0 {
		p.MinFail = foMinFail
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# written by the linkwatch failover integration tests
global:
  dry_run: %t
  repair_interval: %s
policies:
  - name: %s
    device: %s
    triggers: %s
    alert:
      node:
        instance: "r1(:[0-9]+)?"
    routes:
      - destination: default
        gateway: %s
        device: %s
        metric: %d
      - destination: default
        gateway: "%s"
        device: %s
        metric: %d
    down_delay: 0s
    up_delay: %s
    min_failover_time: %s
`, p.DryRun, foRepair, foPolicyName, foPri, p.Triggers, foGW2, foBak, p.Metric, foGW2v6, foBak, p.Metric, p.UpDelay, p.MinFail)
	if p.Dampening != "" {
		fmt.Fprintf(&b, "    dampening: %s\n", p.Dampening)
	}
	if p.Bogus {
		b.WriteString("    failback_delay: 5s\n")
	}
	return b.String()
}

// foDir returns a directory, readable by everyone (an unprivileged exporter
// reads its policy file from it), removed when the test ends.
func foDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "lwt-fo-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// foWrite writes a file readable by everyone and returns its path.
func foWrite(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// A foExporter is an exporter with failover. Unlike startExporter's, it may
// be killed by the test.
type foExporter struct {
	*exporter
	token  string
	killed bool
}

var foClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

// foStart runs the exporter in the host namespace, watching and managing the
// router namespace with the policy file, and waits until its failover engine
// answers webhook requests. A non-empty token is required from webhook
// clients.
func foStart(t *testing.T, topo *foTopo, policy, token string, extra ...string) *foExporter {
	t.Helper()
	return foStartCommand(t, []string{binary}, topo, policy, token, extra...)
}

// foStartCommand is foStart with another build of the exporter, or run
// through a wrapper that execs it (such as chrt): command is the program and
// its first arguments, to which foStart's are appended.
func foStartCommand(t *testing.T, command []string, topo *foTopo, policy, token string, extra ...string) *foExporter {
	t.Helper()
	addr := freeAddr(t)
	args := []string{"--watcher.netns", topo.router.Path, "--web.listen-address", addr, "--config.file", policy}
	if token != "" {
		f := foWrite(t, filepath.Join(filepath.Dir(policy), "token"), token+"\n")
		args = append(args, "--webhook.bearer-token-file", f)
	}
	cmd := exec.Command(command[0], slices.Concat(command[1:], args, extra)...)
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
	e := &foExporter{exporter: &exporter{process: p, addr: addr}, token: token}
	t.Cleanup(func() {
		if !e.killed {
			p.stop(t)
			return
		}
		out := p.out.String()
		checkRace(t, out)
		if t.Failed() {
			t.Logf("output of the killed exporter (pid %d):\n%s", cmd.Process.Pid, out)
		}
	})
	start := time.Now()
	eventually(t, 20*time.Second, func() error {
		if p.exited() {
			t.Fatalf("exporter exited while starting: %v\n%s", p.waitErr, p.out.String())
		}
		f, err := e.tryScrape()
		if err != nil {
			return err
		}
		if err := f.want("linkwatch_watcher_up", 1); err != nil {
			return err
		}
		// The engine answers only once it runs: an empty notification
		// is the probe.
		code, body, _, err := e.webhook(e.newRequest(http.MethodPost, foPayload("lwt-probe")))
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("probe notification: %d %s", code, body)
		}
		return nil
	})
	t.Logf("exporter pid %d with failover serving on %s after %v", cmd.Process.Pid, addr, time.Since(start).Round(time.Millisecond))
	return e
}

// kill kills the exporter with SIGKILL and waits for it to be gone.
func (e *foExporter) kill(t *testing.T) {
	t.Helper()
	pid := e.cmd.Process.Pid
	e.killed = true
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL to pid %d: %v", pid, err)
	}
	select {
	case <-e.done:
	case <-time.After(5 * time.Second):
		t.Fatalf("pid %d still running 5s after SIGKILL", pid)
	}
	t.Logf("killed exporter pid %d", pid)
}

// newRequest returns a webhook request with the headers Alertmanager sends
// (and the bearer token, if any).
func (e *foExporter) newRequest(method string, body []byte) *http.Request {
	req, err := http.NewRequest(method, "http://"+e.addr+"/webhook/alertmanager", bytes.NewReader(body))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Alertmanager/0.28.1")
	if e.token != "" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	return req
}

// webhook sends req and returns the status, the body and the round-trip time.
func (e *foExporter) webhook(req *http.Request) (int, string, time.Duration, error) {
	return e.webhookWith(foClient, req)
}

// webhookWith is webhook with another client.
func (e *foExporter) webhookWith(client *http.Client, req *http.Request) (int, string, time.Duration, error) {
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", time.Since(start), err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	took := time.Since(start)
	if err != nil {
		return 0, "", took, err
	}
	return resp.StatusCode, string(body), took, nil
}

// notify posts an Alertmanager notification, requires 200 with the given
// number of matched alerts, and returns the round-trip time.
func (e *foExporter) notify(t *testing.T, payload []byte, wantMatched int) time.Duration {
	t.Helper()
	return e.notifyWith(t, foClient, payload, wantMatched)
}

// notifyWith is notify with another client.
func (e *foExporter) notifyWith(t *testing.T, client *http.Client, payload []byte, wantMatched int) time.Duration {
	t.Helper()
	code, body, took, err := e.webhookWith(client, e.newRequest(http.MethodPost, payload))
	if err != nil {
		t.Fatalf("webhook: %v", err)
	}
	if code != http.StatusOK {
		t.Fatalf("webhook: %d %s, want 200", code, body)
	}
	var r struct {
		Status  string `json:"status"`
		Alerts  int    `json:"alerts"`
		Matched int    `json:"matched"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("webhook answer %q: %v", body, err)
	}
	if r.Status != "ok" || r.Matched != wantMatched {
		t.Fatalf("webhook answer %s, want status ok and %d matched", strings.TrimSpace(body), wantMatched)
	}
	return took
}

// metric scrapes and returns one series' value.
func (e *foExporter) metric(t *testing.T, name string, kv ...string) float64 {
	t.Helper()
	return e.scrape(t).get(t, name, kv...)
}

// wantTransitions checks the failover counters and the active gauge.
func (e *foExporter) wantTransitions(t *testing.T, active float64, want map[[2]string]float64) {
	t.Helper()
	f := e.scrape(t)
	if err := f.want("linkwatch_failover_active", active, "policy", foPolicyName); err != nil {
		t.Error(err)
	}
	for k, v := range want {
		got, err := f.num("linkwatch_failover_transitions_total", "policy", foPolicyName, "action", k[0], "trigger", k[1])
		if err != nil {
			got = 0
		}
		if got != v {
			t.Errorf("linkwatch_failover_transitions_total{action=%q,trigger=%q} = %v, want %v", k[0], k[1], got, v)
		}
	}
}

// foBackup returns the backup routes as `ip route show proto 229` prints
// them (without the protocol it filters on).
func foBackup(metric int) (v4, v6 string) {
	return fmt.Sprintf("default via %s dev %s metric %d", foGW2, foBak, metric),
		fmt.Sprintf("default via %s dev %s metric %d pref medium", foGW2v6, foBak, metric)
}

// foInstalled returns nil if our routes are exactly the backup routes with
// the metric (metric 0: none at all).
func foInstalled(topo *foTopo, metric int) error {
	v4, err := foOurRoutes(topo.router, "-4")
	if err != nil {
		return err
	}
	v6, err := foOurRoutes(topo.router, "-6")
	if err != nil {
		return err
	}
	var want4, want6 []string
	if metric != 0 {
		w4, w6 := foBackup(metric)
		want4, want6 = []string{w4}, []string{w6}
	}
	if !slices.Equal(v4, want4) || !slices.Equal(v6, want6) {
		return fmt.Errorf("routes with proto %s: IPv4 %q, IPv6 %q; want %q, %q", foOurProt, v4, v6, want4, want6)
	}
	return nil
}

// foPoll calls f every interval until it returns nil and returns how long
// that took; it fails the test with f's last error after timeout.
func foPoll(t *testing.T, timeout, interval time.Duration, f func() error) time.Duration {
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
		time.Sleep(interval)
	}
}

// foWaitInstalled waits until our routes are the backup routes with the
// metric (0: none) and returns how long that took.
func foWaitInstalled(t *testing.T, topo *foTopo, metric int, timeout time.Duration) time.Duration {
	t.Helper()
	return foPoll(t, timeout, 20*time.Millisecond, func() error { return foInstalled(topo, metric) })
}

// foRequireInstalled fails the test unless our routes are the backup routes
// with the metric (0: none) right now.
func foRequireInstalled(t *testing.T, topo *foTopo, metric int, when string) {
	t.Helper()
	if err := foInstalled(topo, metric); err != nil {
		t.Fatalf("%s: %v", when, err)
	}
}

// foCut takes the primary uplink's carrier away (a cable pull, seen from the
// router) and returns when the command returned.
func foCut(t *testing.T, topo *foTopo) time.Time {
	t.Helper()
	ip(t, topo.gw1, "link", "set", foG1R, "down")
	return time.Now()
}

// foRestore gives the primary uplink its carrier back.
func foRestore(t *testing.T, topo *foTopo) time.Time {
	t.Helper()
	ip(t, topo.gw1, "link", "set", foG1R, "up")
	return time.Now()
}

// foWaitFailback checks that the backup routes (metric 50) are still there
// half the up_delay after the primary was restored, and gone by up_delay+1s;
// it returns how long after the restore they went.
func foWaitFailback(t *testing.T, topo *foTopo, restored time.Time) time.Duration {
	t.Helper()
	time.Sleep(time.Until(restored.Add(foUpDelay / 2)))
	foRequireInstalled(t, topo, 50, "half the up_delay after the restore")
	deadline := restored.Add(foUpDelay + time.Second)
	for foInstalled(topo, 0) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("no failback by up_delay+1s after the restore: %v", foInstalled(topo, 0))
		}
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(restored)
	if took < foUpDelay-50*time.Millisecond {
		t.Errorf("failback %v after the restore, before up_delay %v", took, foUpDelay)
	}
	return took
}

// waitCarrier waits until the exporter reports lwt-pri's carrier as want.
func (e *foExporter) waitCarrier(t *testing.T, want float64) {
	t.Helper()
	foPoll(t, 5*time.Second, 20*time.Millisecond, func() error {
		f, err := e.tryScrape()
		if err != nil {
			return err
		}
		return f.want("linkwatch_link_carrier", want, "device", foPri)
	})
}

// foAlert is one alert of a notification.
type foAlert struct {
	status string
	labels map[string]string
}

// foLinkAlert is the alert that the linkwatch alerting rule raises for a
// device of an instance.
func foLinkAlert(status, instance, device string) foAlert {
	return foAlert{status, map[string]string{
		"alertname": foAlertName, "device": device, "instance": instance,
		"job": "linkwatch", "severity": "critical",
	}}
}

// foGroupKey is the group key of Alertmanager's route grouping by alertname
// and instance under a severity="critical" route.
func foGroupKey(instance string) string {
	return fmt.Sprintf(`{}/{severity="critical"}:{alertname=%q, instance=%q}`, foAlertName, instance)
}

// foPayload builds a webhook notification as Alertmanager (payload version
// 4) sends it, with the fields in its order, like the samples in
// routes/testdata/webhook.
func foPayload(groupKey string, alerts ...foAlert) []byte {
	type amAlert struct {
		Status       string            `json:"status"`
		Labels       map[string]string `json:"labels"`
		Annotations  map[string]string `json:"annotations"`
		StartsAt     time.Time         `json:"startsAt"`
		EndsAt       time.Time         `json:"endsAt"`
		GeneratorURL string            `json:"generatorURL"`
		Fingerprint  string            `json:"fingerprint"`
	}
	type amData struct {
		Receiver          string            `json:"receiver"`
		Status            string            `json:"status"`
		Alerts            []amAlert         `json:"alerts"`
		GroupLabels       map[string]string `json:"groupLabels"`
		CommonLabels      map[string]string `json:"commonLabels"`
		CommonAnnotations map[string]string `json:"commonAnnotations"`
		ExternalURL       string            `json:"externalURL"`
		Version           string            `json:"version"`
		GroupKey          string            `json:"groupKey"`
		TruncatedAlerts   uint64            `json:"truncatedAlerts"`
	}
	now := time.Now().UTC()
	d := amData{
		Receiver: "linkwatch-failover", Status: "resolved", Alerts: []amAlert{},
		GroupLabels: map[string]string{}, CommonLabels: map[string]string{}, CommonAnnotations: map[string]string{},
		ExternalURL: "http://alertmanager:9093", Version: "4", GroupKey: groupKey,
	}
	for i, a := range alerts {
		names := make([]string, 0, len(a.labels))
		for k := range a.labels {
			names = append(names, k)
		}
		sort.Strings(names)
		h := fnv.New64a()
		for _, k := range names {
			fmt.Fprintf(h, "%s\xff%s\xff", k, a.labels[k])
		}
		summary := fmt.Sprintf("Link %s on %s is down", a.labels["device"], a.labels["instance"])
		x := amAlert{
			Status: a.status, Labels: a.labels,
			Annotations: map[string]string{
				"runbook_url": "https://wiki.example.net/runbooks/link-down",
				"summary":     summary,
			},
			StartsAt:     now.Add(-time.Duration(i+3) * time.Minute).Truncate(time.Millisecond),
			GeneratorURL: "http://prometheus:9090/graph?g0.expr=linkwatch_link_up+%3D%3D+0&g0.tab=1",
			Fingerprint:  fmt.Sprintf("%016x", h.Sum64()),
		}
		if a.status == "firing" {
			d.Status = "firing"
		} else {
			x.EndsAt = now.Add(-10 * time.Second).Truncate(time.Millisecond)
		}
		d.Alerts = append(d.Alerts, x)
		if i == 0 {
			maps := [][2]map[string]string{{d.CommonLabels, a.labels}, {d.CommonAnnotations, x.Annotations}}
			for _, m := range maps {
				for k, v := range m[1] {
					m[0][k] = v
				}
			}
		} else {
			for _, m := range [][2]map[string]string{{d.CommonLabels, a.labels}, {d.CommonAnnotations, x.Annotations}} {
				for k, v := range m[0] {
					if m[1][k] != v {
						delete(m[0], k)
					}
				}
			}
		}
	}
	for _, k := range []string{"alertname", "instance"} {
		if v, ok := d.CommonLabels[k]; ok {
			d.GroupLabels[k] = v
		}
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		panic(err)
	}
	return b
}

// TestFailoverLinkTrigger cuts the primary uplink and measures how fast the
// backup route is installed, checks that traffic takes the backup path, and
// that failback waits for up_delay.
func TestFailoverLinkTrigger(t *testing.T) {
	topo := foNewTopology(t, "folk")
	dir := foDir(t)
	e := foStart(t, topo, foWrite(t, filepath.Join(dir, "policy.yml"), foPolicy{}.yaml()), "")
	foRequireInstalled(t, topo, 0, "before the cut")
	if dev := foRouteDev(t, topo.router, foTarget); dev != foPri {
		t.Fatalf("before the cut, traffic to %s leaves through %s, want %s", foTarget, dev, foPri)
	}

	want4, _ := foBackup(50)
	cut := foCut(t, topo)
	var reaction time.Duration
	for {
		out, err := exec.Command("ip", "-n", topo.router.Name, "route", "show", "proto", foOurProt).CombinedOutput()
		if err != nil {
			t.Fatalf("ip route show proto %s: %v: %s", foOurProt, err, out)
		}
		if strings.Contains(string(out), want4) {
			reaction = time.Since(cut)
			break
		}
		if time.Since(cut) > 5*time.Second {
			t.Fatalf("no backup route 5s after the cut: %q", out)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("MEASURED: link-trigger reaction time (carrier cut to backup route installed): %s", ms(reaction))
	if reaction >= time.Second {
		t.Errorf("backup route installed %v after the cut, want < 1s", reaction)
	}
	foWaitInstalled(t, topo, 50, time.Second) // the IPv6 route too

	if dev := foRouteDev(t, topo.router, foTarget); dev != foBak {
		t.Errorf("failed over, traffic to %s leaves through %s, want %s", foTarget, dev, foBak)
	}
	rx := foRxPackets(t, topo.gw2, foG2R)
	if err := foPing(t, topo.router, foTarget, time.Second); err != nil {
		t.Errorf("ping through the backup: %v", err)
	}
	if got := foRxPackets(t, topo.gw2, foG2R); got <= rx {
		t.Errorf("gw2 received no packet on %s during the ping (%d -> %d)", foG2R, rx, got)
	}
	e.wantTransitions(t, 1, map[[2]string]float64{{"failover", "link"}: 1, {"failback", "link"}: 0})

	// Failback only after up_delay (2s) of carrier.
	failback := foWaitFailback(t, topo, foRestore(t, topo))
	t.Logf("MEASURED: link-trigger failback %s after the restore (up_delay %v)", ms(failback), foUpDelay)
	e.wantTransitions(t, 0, map[[2]string]float64{{"failover", "link"}: 1, {"failback", "link"}: 1})
	if dev := foRouteDev(t, topo.router, foTarget); dev != foPri {
		t.Errorf("after failback, traffic to %s leaves through %s, want %s", foTarget, dev, foPri)
	}
	if err := foPing(t, topo.router, foTarget, time.Second); err != nil {
		t.Errorf("ping through the primary after failback: %v", err)
	}
}

// TestFailoverWebhook drives an alert-only policy with notifications as
// Alertmanager sends them.
func TestFailoverWebhook(t *testing.T) {
	topo := foNewTopology(t, "fowh")
	dir := foDir(t)
	e := foStart(t, topo, foWrite(t, filepath.Join(dir, "policy.yml"), foPolicy{Triggers: "[alert]"}.yaml()), "")

	// The link alone does not fail over an alert-only policy.
	foCut(t, topo)
	e.waitCarrier(t, 0)
	time.Sleep(300 * time.Millisecond)
	foRequireInstalled(t, topo, 0, "link cut with triggers [alert]")
	e.wantTransitions(t, 0, map[[2]string]float64{{"failover", "link"}: 0, {"failover", "alert"}: 0})
	foRestore(t, topo)
	e.waitCarrier(t, 1)

	// Every notification is answered within 100 ms.
	notify := func(what string, payload []byte, matched int) {
		t.Helper()
		took := e.notify(t, payload, matched)
		t.Logf("MEASURED: webhook round-trip (%s): %s", what, ms(took))
		if took >= 100*time.Millisecond {
			t.Errorf("notification (%s) answered after %v, want < 100ms", what, took)
		}
	}

	// Firing while the link is healthy (an upstream failure seen by
	// monitoring): failover, before the answer.
	gk := foGroupKey(foInstance)
	notify("firing, backup route installed", foPayload(gk, foLinkAlert("firing", foInstance, foPri)), 1)
	foRequireInstalled(t, topo, 50, "right after the firing notification's answer")
	e.wantTransitions(t, 1, map[[2]string]float64{{"failover", "alert"}: 1})

	// Alertmanager repeats the notification (repeat_interval, or a retry).
	notify("repeated firing, no change", foPayload(gk, foLinkAlert("firing", foInstance, foPri)), 1)
	foRequireInstalled(t, topo, 50, "after the repeated notification")
	e.wantTransitions(t, 1, map[[2]string]float64{{"failover", "alert"}: 1})

	// Resolved while the link is down: the route stays (failback needs the
	// link up locally), also past min_failover_time.
	foCut(t, topo)
	e.waitCarrier(t, 0)
	notify("resolved, link down", foPayload(gk, foLinkAlert("resolved", foInstance, foPri)), 1)
	time.Sleep(foMinFail + 500*time.Millisecond)
	foRequireInstalled(t, topo, 50, "resolved with the link down")

	// Link back: failback after up_delay.
	failback := foWaitFailback(t, topo, foRestore(t, topo))
	t.Logf("MEASURED: alert failback %s after the link came back (up_delay %v)", ms(failback), foUpDelay)
	e.wantTransitions(t, 0, map[[2]string]float64{{"failover", "alert"}: 1, {"failback", "link"}: 1})

	// Another node's alert: not ours.
	notify("other node's alert", foPayload(foGroupKey(foOther), foLinkAlert("firing", foOther, foPri)), 0)
	time.Sleep(200 * time.Millisecond)
	foRequireInstalled(t, topo, 0, "after another node's alert")

	// A group of several alerts, one of which is ours and firing.
	ggk := fmt.Sprintf(`{}/{severity="critical"}:{alertname=%q}`, foAlertName)
	other := foLinkAlert("firing", foInstance, foPri)
	other.labels["alertname"] = "LinkwatchLinkFlapping"
	group := []foAlert{
		foLinkAlert("firing", foOther, foPri),
		foLinkAlert("resolved", foInstance, foBak),
		foLinkAlert("firing", foInstance, foPri),
		foLinkAlert("firing", foInstance, "lwt-wwan0"),
		other,
	}
	notify(fmt.Sprintf("group of %d alerts, one ours firing", len(group)), foPayload(ggk, group...), 1)
	foRequireInstalled(t, topo, 50, "after the group notification")
	e.wantTransitions(t, 1, map[[2]string]float64{{"failover", "alert"}: 2})

	// The group resolves with the link healthy: failback once
	// min_failover_time has passed.
	for i := range group {
		group[i].status = "resolved"
	}
	notify("group resolved", foPayload(ggk, group...), 1)
	resolved := time.Now()
	foRequireInstalled(t, topo, 50, "right after the group resolved (min_failover_time not over)")
	foPoll(t, foMinFail+time.Second, 10*time.Millisecond, func() error { return foInstalled(topo, 0) })
	t.Logf("MEASURED: failback %s after the group resolved (min_failover_time %v)", ms(time.Since(resolved)), foMinFail)
	e.wantTransitions(t, 0, map[[2]string]float64{{"failover", "alert"}: 2, {"failback", "link"}: 2, {"failover", "link"}: 0})

	f := e.scrape(t)
	for _, c := range []struct {
		status, matched string
		want            float64
	}{
		// Firing: ours twice, the other node's, and the group's four
		// (one ours). Resolved: ours, the group's one resolved alert
		// (not ours), and the resolved group's five (one ours).
		{"firing", "true", 3}, {"firing", "false", 4},
		{"resolved", "true", 2}, {"resolved", "false", 5},
	} {
		if err := f.want("linkwatch_webhook_alerts_total", c.want, "status", c.status, "matched", c.matched); err != nil {
			t.Error(err)
		}
	}
}

// TestFailoverRepair removes the backup route behind the exporter's back,
// then takes the backup link down and up, which flushes its IPv4 routes
// without a notification.
func TestFailoverRepair(t *testing.T) {
	topo := foNewTopology(t, "forp")
	dir := foDir(t)
	e := foStart(t, topo, foWrite(t, filepath.Join(dir, "policy.yml"), foPolicy{}.yaml()), "")
	foCut(t, topo)
	foWaitInstalled(t, topo, 50, 2*time.Second)
	repairs := e.metric(t, "linkwatch_failover_route_repairs_total", "policy", foPolicyName)

	ip(t, topo.router, "route", "del", "default", "via", foGW2, "proto", foOurProt, "metric", "50")
	deleted := time.Now()
	if err := foInstalled(topo, 50); err == nil {
		t.Fatal("the IPv4 backup route is still there after ip route del")
	}
	foWaitInstalled(t, topo, 50, foRepair+time.Second)
	t.Logf("MEASURED: repair of a deleted route after %s (repair_interval %v)", ms(time.Since(deleted)), foRepair)
	if got := e.metric(t, "linkwatch_failover_route_repairs_total", "policy", foPolicyName); got <= repairs {
		t.Errorf("linkwatch_failover_route_repairs_total = %v, want more than %v", got, repairs)
	}

	// Admin down of the backup link: its routes go, and the gateway is
	// unreachable until it is up again.
	errs := e.metric(t, "linkwatch_failover_errors_total", "policy", foPolicyName)
	ip(t, topo.router, "link", "set", foBak, "down")
	foPoll(t, 3*foRepair+time.Second, 50*time.Millisecond, func() error {
		f, err := e.tryScrape()
		if err != nil {
			return err
		}
		got, err := f.num("linkwatch_failover_errors_total", "policy", foPolicyName)
		if err != nil {
			return err
		}
		if got < errs+2 {
			return fmt.Errorf("linkwatch_failover_errors_total = %v, want at least %v", got, errs+2)
		}
		return nil
	})
	if e.exited() {
		t.Fatalf("exporter exited with the backup link down: %v", e.waitErr)
	}
	v4, _ := foOurRoutes(topo.router, "-4")
	if len(v4) != 0 {
		t.Errorf("IPv4 routes with proto %s while %s is down: %q", foOurProt, foBak, v4)
	}
	if err := e.scrape(t).want("linkwatch_failover_active", 1, "policy", foPolicyName); err != nil {
		t.Error(err)
	}
	t.Logf("errors counted with %s down: %v -> %v", foBak, errs, e.metric(t, "linkwatch_failover_errors_total", "policy", foPolicyName))
	if !strings.Contains(e.out.String(), "cannot make the installed routes match") {
		t.Errorf("the failure to install the routes was not logged:\n%s", e.out.String())
	}

	ip(t, topo.router, "link", "set", foBak, "up")
	up := time.Now()
	foWaitInstalled(t, topo, 50, foRepair+time.Second)
	t.Logf("MEASURED: routes reinstalled %s after %s came back up", ms(time.Since(up)), foBak)
	if dev := foRouteDev(t, topo.router, foTarget); dev != foBak {
		t.Errorf("traffic to %s leaves through %s, want %s", foTarget, dev, foBak)
	}
	if err := foPing(t, topo.router, foTarget, time.Second); err != nil {
		t.Errorf("ping through the repaired backup: %v", err)
	}
	foRestore(t, topo)
	foWaitInstalled(t, topo, 0, foUpDelay+2*time.Second)
}

// TestFailoverRestart kills the exporter in the middle of a failover and
// starts it again: it adopts the installed routes instead of duplicating
// them, and fails back normally.
func TestFailoverRestart(t *testing.T) {
	topo := foNewTopology(t, "fors")
	dir := foDir(t)
	policy := foWrite(t, filepath.Join(dir, "policy.yml"), foPolicy{}.yaml())
	e := foStart(t, topo, policy, "")
	foCut(t, topo)
	foWaitInstalled(t, topo, 50, 2*time.Second)
	e.kill(t)
	time.Sleep(200 * time.Millisecond)
	foRequireInstalled(t, topo, 50, "after kill -9")

	e2 := foStart(t, topo, policy, "")
	foRequireInstalled(t, topo, 50, "after the restart")
	time.Sleep(foRepair + 200*time.Millisecond) // a repair pass too
	foRequireInstalled(t, topo, 50, "a repair interval after the restart")
	e2.wantTransitions(t, 1, map[[2]string]float64{{"failover", "restart"}: 1, {"failover", "link"}: 0})

	failback := foWaitFailback(t, topo, foRestore(t, topo))
	t.Logf("MEASURED: failback %s after the restore, restarted exporter (up_delay %v)", ms(failback), foUpDelay)
	e2.wantTransitions(t, 0, map[[2]string]float64{{"failover", "restart"}: 1, {"failback", "link"}: 1})
}

// TestFailoverDampening flaps the primary uplink and checks that failback
// waits until the flap penalty has decayed below the reuse threshold.
func TestFailoverDampening(t *testing.T) {
	const (
		halfLife = 3 * time.Second
		suppress = 1500.0
		reuse    = 800.0
	)
	topo := foNewTopology(t, "fodp")
	dir := foDir(t)
	pol := foPolicy{Dampening: fmt.Sprintf("{penalty: 1000, half_life: %v, suppress: %v, reuse: %v, max_suppress: 30s}", halfLife, suppress, reuse)}
	e := foStart(t, topo, foWrite(t, filepath.Join(dir, "policy.yml"), pol.yaml()), "")

	gaps := []time.Duration{150 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 120 * time.Millisecond}
	var lastUp time.Time
	for i, gap := range gaps {
		foCut(t, topo)
		time.Sleep(gap)
		lastUp = foRestore(t, topo)
		if i < len(gaps)-1 {
			time.Sleep(gap)
		}
	}
	e.waitCarrier(t, 1)
	foRequireInstalled(t, topo, 50, "after the flaps")
	f := e.scrape(t)
	scraped := time.Now()
	penalty := f.get(t, "linkwatch_link_flap_penalty", "device", foPri)
	if err := f.want("linkwatch_link_suppressed", 1, "device", foPri); err != nil {
		t.Error(err)
	}
	if penalty <= suppress {
		t.Errorf("linkwatch_link_flap_penalty = %v, want > %v", penalty, suppress)
	}
	downs := f.get(t, "linkwatch_link_carrier_down_changes_total", "device", foPri)
	expected := time.Duration(halfLife.Seconds() * math.Log2(penalty/reuse) * float64(time.Second))
	t.Logf("after %d flaps (%v carrier downs in all): penalty %.1f, suppressed; expected suppression %v from now", len(gaps), downs, penalty, expected.Round(time.Millisecond))

	// Not at up_delay: suppressed.
	time.Sleep(time.Until(lastUp.Add(foUpDelay + 500*time.Millisecond)))
	foRequireInstalled(t, topo, 50, "up_delay after the last flap (suppressed)")
	foPoll(t, expected+3*time.Second, 10*time.Millisecond, func() error { return foInstalled(topo, 0) })
	measured := time.Since(scraped)
	t.Logf("MEASURED: dampening suppression %s after the scrape (expected %s from penalty %.1f, half_life %v, reuse %v); %s after the last flap",
		ms(measured), ms(expected), penalty, halfLife, reuse, ms(time.Since(lastUp)))
	if d := measured - expected; d < -300*time.Millisecond || d > 700*time.Millisecond {
		t.Errorf("failback %v after the scrape, expected %v", measured, expected)
	}
	f = e.scrape(t)
	if err := f.want("linkwatch_link_suppressed", 0, "device", foPri); err != nil {
		t.Error(err)
	}
	if p := f.get(t, "linkwatch_link_flap_penalty", "device", foPri); p >= reuse {
		t.Errorf("penalty %v after failback, want < %v", p, reuse)
	}
	e.wantTransitions(t, 0, map[[2]string]float64{{"failover", "link"}: 1, {"failback", "link"}: 1})
}

// TestFailoverBadInput sends malformed and hostile webhook requests to an
// exporter that requires a bearer token; each must get the status that
// routes/webhook.go documents and change no route.
func TestFailoverBadInput(t *testing.T) {
	topo := foNewTopology(t, "fobi")
	dir := foDir(t)
	const token = "s3cr3t-t0ken"
	e := foStart(t, topo, foWrite(t, filepath.Join(dir, "policy.yml"), foPolicy{Triggers: "[link, alert]"}.yaml()), token)
	before := foAllRoutes(t, topo.router)
	base := e.scrape(t)

	gk := foGroupKey(foInstance)
	ours := foPayload(gk, foLinkAlert("firing", foInstance, foPri)) // valid, would fail over
	// mutate replaces the first occurrence of old in ours.
	mutate := func(old, new string) []byte {
		if !bytes.Contains(ours, []byte(old)) {
			panic("payload lacks " + old)
		}
		return bytes.Replace(ours, []byte(old), []byte(new), 1)
	}
	pad := func(size int) []byte {
		// A valid notification of exactly size bytes with our firing alert.
		head := append(slices.Clone(bytes.TrimSuffix(bytes.TrimSpace(ours), []byte("}"))), []byte(`, "pad": "`)...)
		tail := []byte("\"}")
		return append(append(head, bytes.Repeat([]byte("x"), size-len(head)-len(tail))...), tail...)
	}
	nested := func(depth int) []byte {
		return mutate(`"receiver"`, `"deep": `+strings.Repeat("[", depth)+strings.Repeat("]", depth)+`, "receiver"`)
	}
	labelsWith := func(status string, labels map[string]string) []byte {
		return foPayload(gk, foAlert{status, labels})
	}
	link := func(extra ...string) map[string]string {
		l := foLinkAlert("firing", foInstance, foPri).labels
		for i := 0; i+1 < len(extra); i += 2 {
			l[extra[i]] = extra[i+1]
		}
		return l
	}
	const limit = 1 << 20

	type tc struct {
		name string
		req  func() *http.Request
		code int
	}
	// For these the server answers 413 without reading the body and closes
	// the connection, so a client still sending it may get a connection
	// reset instead of the answer (the server's counter still shows the
	// 413). With "Expect: 100-continue" the client waits for the answer
	// before sending the body, and always gets the 413.
	tooBig := map[string]bool{"body over 1 MiB": true, "body over 1 MiB chunked": true, "body of 8 MiB": true}
	clients := make(map[string]*http.Client)
	expect := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true, ExpectContinueTimeout: 5 * time.Second},
	}
	clients["body of 8 MiB, Expect: 100-continue"] = expect
	clients["body over 1 MiB, Expect: 100-continue"] = expect
	continued := func(body []byte) func() *http.Request {
		return func() *http.Request {
			r := e.newRequest(http.MethodPost, body)
			r.Header.Set("Expect", "100-continue")
			return r
		}
	}
	post := func(body []byte) func() *http.Request {
		return func() *http.Request { return e.newRequest(http.MethodPost, body) }
	}
	with := func(body []byte, f func(*http.Request)) func() *http.Request {
		return func() *http.Request {
			r := e.newRequest(http.MethodPost, body)
			f(r)
			return r
		}
	}
	cases := []tc{
		{"GET", func() *http.Request { return e.newRequest(http.MethodGet, nil) }, 405},
		{"PUT", func() *http.Request { return e.newRequest(http.MethodPut, ours) }, 405},
		{"DELETE", func() *http.Request { return e.newRequest(http.MethodDelete, nil) }, 405},
		{"no token", with(ours, func(r *http.Request) { r.Header.Del("Authorization") }), 401},
		{"wrong token", with(ours, func(r *http.Request) { r.Header.Set("Authorization", "Bearer wrong") }), 401},
		{"token prefix", with(ours, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token[:5]) }), 401},
		{"token plus", with(ours, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token+"x") }), 401},
		{"basic auth", with(ours, func(r *http.Request) { r.SetBasicAuth("admin", token) }), 401},
		{"empty bearer", with(ours, func(r *http.Request) { r.Header.Set("Authorization", "Bearer ") }), 401},
		{"token as query", with(ours, func(r *http.Request) {
			r.Header.Del("Authorization")
			r.URL.RawQuery = "token=" + token
		}), 401},
		{"text/plain", with(ours, func(r *http.Request) { r.Header.Set("Content-Type", "text/plain") }), 400},
		{"form", with(ours, func(r *http.Request) { r.Header.Set("Content-Type", "application/x-www-form-urlencoded") }), 400},
		{"empty body", post(nil), 400},
		{"truncated JSON", post(ours[:len(ours)/2]), 400},
		{"not an object", post([]byte(`[` + string(ours) + `]`)), 400},
		{"trailing data", post(append(append([]byte{}, ours...), []byte(`{"version":"4"}`)...)), 400},
		{"version 3", post(mutate(`"version": "4"`, `"version": "3"`)), 400},
		{"version number", post(mutate(`"version": "4"`, `"version": 4`)), 400},
		{"version duplicated", post(mutate(`"version": "4"`, `"version": "4", "version": "5"`)), 400},
		{"no version", post(mutate(`"version": "4"`, `"versionx": "4"`)), 400},
		{"alerts object", post([]byte(`{"version":"4","alerts":{"status":"firing"}}`)), 400},
		{"alerts null", post([]byte(`{"version":"4","alerts":null}`)), 400},
		{"status pending", post(mutate(`"status": "firing",`+"\n      \"labels\"", `"status": "pending",`+"\n      \"labels\"")), 400},
		{"labels not strings", post(mutate(`"severity": "critical"`, `"severity": 2`)), 400},
		{"startsAt not a time", post(mutate(`"startsAt": "`, `"startsAt": "yesterday", "x": "`)), 400},
		{"malformed alert beside ours", post(mutate(`"alerts": [`, `"alerts": [{"status": "firing", "labels": ["x"]}, `)), 400},
		{"invalid UTF-8 outside strings", post(mutate(`"receiver"`, "\xff\xfe\"receiver\"")), 400},
		{"nested 20000 deep", post(nested(20000)), 400},
		{"body over 1 MiB", post(pad(limit + 1)), 413},
		{"body over 1 MiB chunked", func() *http.Request {
			r := e.newRequest(http.MethodPost, nil)
			r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(pad(4 * limit))))
			r.ContentLength = -1 // sent chunked, no Content-Length
			return r
		}, 413},
		{"body of 8 MiB", post(pad(8 * limit)), 413},
		{"body of 8 MiB, Expect: 100-continue", continued(pad(8 * limit)), 413},
		{"body over 1 MiB, Expect: 100-continue", continued(pad(limit + 1)), 413},
		// Accepted, but nothing is ours and firing.
		{"other node", post(foPayload(foGroupKey(foOther), foLinkAlert("firing", foOther, foPri))), 200},
		{"device in no policy", post(labelsWith("firing", link("device", foBak))), 200},
		{"unknown device", post(labelsWith("firing", link("device", "lwt-nope"))), 200},
		{"other alertname", post(labelsWith("firing", link("alertname", "LinkwatchLinkFlapping"))), 200},
		{"ours but resolved", post(labelsWith("resolved", link())), 200},
		{"odd label characters", post(labelsWith("firing", link(
			"device", foPri+"\"; ip route flush table main #",
			"instance", "r1:9957\n",
			"\u2603 snow", "\x00nul\u202e",
			"empty", ""))), 200},
		{"invalid UTF-8 in a label value", post(mutate(`"device": "lwt-pri"`, "\"device\": \"lwt-pri\xff\"")), 200},
		{"nested 5000 deep, other node", post(bytes.Replace(nested(5000), []byte(foInstance), []byte(foOther), -1)), 200},
		{"empty alerts", post(foPayload(gk)), 200},
		{"exactly 1 MiB, other node", post(bytes.Replace(pad(limit), []byte(foInstance), []byte(foOther), -1)), 200},
		{"lower-case scheme, other node", func() *http.Request {
			r := e.newRequest(http.MethodPost, foPayload(foGroupKey(foOther), foLinkAlert("firing", foOther, foPri)))
			r.Header.Set("Authorization", "bearer "+token)
			return r
		}, 200},
	}
	counts := make(map[int]float64)
	for _, c := range cases {
		client := clients[c.name]
		if client == nil {
			client = foClient
		}
		code, body, took, err := e.webhookWith(client, c.req())
		if err != nil && tooBig[c.name] && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) {
			t.Logf("%-34s -> connection reset while sending the body, after %s (the server refused it unread)", c.name, ms(took))
			counts[c.code]++ // as the server counts it
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		counts[code]++
		t.Logf("%-34s -> %d in %6s: %.80q", c.name, code, ms(took), strings.TrimSpace(body))
		if code != c.code {
			t.Errorf("%s: status %d (%q), want %d", c.name, code, body, c.code)
		}
		if err := foInstalled(topo, 0); err != nil {
			t.Fatalf("after %s: %v", c.name, err)
		}
		if e.exited() {
			t.Fatalf("exporter exited after %s: %v", c.name, e.waitErr)
		}
	}
	t.Logf("%d hostile or malformed requests", len(cases))
	time.Sleep(foRepair + 200*time.Millisecond) // a step or two later
	if after := foAllRoutes(t, topo.router); after != before {
		t.Errorf("routes changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	f := e.scrape(t)
	for code, n := range counts {
		c := fmt.Sprint(code)
		b, _ := base.num("linkwatch_webhook_requests_total", "code", c)
		if err := f.want("linkwatch_webhook_requests_total", b+n, "code", c); err != nil {
			t.Error(err)
		}
	}
	e.wantTransitions(t, 0, map[[2]string]float64{{"failover", "link"}: 0, {"failover", "alert"}: 0})
}

// foNobody drops to uid/gid 65534 with no groups and no capabilities.
var foNobody = []string{"--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"}

// TestFailoverConfig checks --config.check, reloads and the capability check.
func TestFailoverConfig(t *testing.T) {
	t.Run("check", func(t *testing.T) {
		dir := foDir(t)
		good := foWrite(t, filepath.Join(dir, "good.yml"), foPolicy{}.yaml())
		out, code, _ := runBinary(t, 10*time.Second, binary, "--config.check", "--config.file", good)
		t.Logf("good: exit %d: %s", code, strings.TrimSpace(out))
		if code != 0 || !strings.Contains(out, "OK") {
			t.Errorf("--config.check on a good file: exit %d, output %q; want 0 and OK", code, out)
		}
		text := foPolicy{Bogus: true}.yaml()
		line := 1 + strings.Count(text[:strings.Index(text, "failback_delay")], "\n")
		bad := foWrite(t, filepath.Join(dir, "bad.yml"), text)
		out, code, _ = runBinary(t, 10*time.Second, binary, "--config.check", "--config.file", bad)
		t.Logf("bad: exit %d: %s", code, strings.TrimSpace(out))
		if want := fmt.Sprintf("%s:%d:", bad, line); code != 1 || !strings.Contains(out, want) || !strings.Contains(out, "failback_delay") {
			t.Errorf("--config.check on a bad file: exit %d, output %q; want 1 and %q naming failback_delay", code, out, want)
		}
	})

	t.Run("reload", func(t *testing.T) {
		topo := foNewTopology(t, "forl")
		dir := foDir(t)
		policy := foWrite(t, filepath.Join(dir, "policy.yml"), foPolicy{}.yaml())
		e := foStart(t, topo, policy, "")

		foWrite(t, policy, foPolicy{Metric: 60, Bogus: true}.yaml())
		resp, err := foClient.Post("http://"+e.addr+"/-/reload", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Logf("POST /-/reload with a bad file: %s: %s", resp.Status, strings.TrimSpace(string(body)))
		if resp.StatusCode != http.StatusInternalServerError {
			t.Errorf("POST /-/reload with a bad file: %s, want 500", resp.Status)
		}
		if got := e.metric(t, "linkwatch_config_last_reload_successful"); got != 0 {
			t.Errorf("linkwatch_config_last_reload_successful = %v after a failed reload, want 0", got)
		}
		// The previous policy is still in force.
		foCut(t, topo)
		foWaitInstalled(t, topo, 50, 2*time.Second)

		// SIGHUP with a fixed file: the new metric replaces the route of
		// the ongoing failover.
		foWrite(t, policy, foPolicy{Metric: 60}.yaml())
		if err := syscall.Kill(e.cmd.Process.Pid, syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		foPoll(t, 5*time.Second, 20*time.Millisecond, func() error {
			f, err := e.tryScrape()
			if err != nil {
				return err
			}
			return f.want("linkwatch_config_last_reload_successful", 1)
		})
		foWaitInstalled(t, topo, 60, 2*time.Second)
		foRestore(t, topo)
		foWaitInstalled(t, topo, 0, foUpDelay+2*time.Second)
		// And a new failover uses the new metric.
		foCut(t, topo)
		foWaitInstalled(t, topo, 60, 2*time.Second)
		e.wantTransitions(t, 1, map[[2]string]float64{{"failover", "link"}: 2, {"failback", "link"}: 1})
		foRestore(t, topo)
	})

	t.Run("unprivileged", func(t *testing.T) {
		requireRoot(t)
		setpriv := requireTool(t, "setpriv")
		ns := newNetns(t, "fonp")
		ipBatch(t, ns, []string{
			"link add " + foPri + " index 3501 type veth peer name " + foBak + " index 3502",
			"link set " + foPri + " up",
			"link set " + foBak + " up",
		})
		dir := foDir(t)
		// The exporter runs inside the namespace, so any port is free on
		// its loopback; the test reaches it with nsGet.
		const addr = "127.0.0.1:9957"
		run := func(policy string) []string {
			args := append([]string{"netns", "exec", ns.Name, setpriv}, foNobody...)
			return append(args, binary, "--web.listen-address="+addr, "--config.file", policy)
		}

		out, code, took := runBinary(t, 10*time.Second, "ip", run(foWrite(t, filepath.Join(dir, "policy.yml"), foPolicy{}.yaml()))...)
		t.Logf("as nobody: exit %d after %v:\n%s", code, took.Round(time.Millisecond), out)
		if code <= 0 || !strings.Contains(out, "CAP_NET_ADMIN") {
			t.Errorf("as nobody with a policy: exit %d, want a failure naming CAP_NET_ADMIN", code)
		}
		if strings.Contains(out, "Listening on") {
			t.Error("the exporter started serving without CAP_NET_ADMIN")
		}

		p := launch(t, exec.Command("ip", run(foWrite(t, filepath.Join(dir, "dry.yml"), foPolicy{DryRun: true}.yaml()))...))
		get := func(want float64) error {
			if p.exited() {
				t.Fatalf("dry-run exporter exited: %v\n%s", p.waitErr, p.out.String())
			}
			body, err := nsGet(ns.Path, addr, "/metrics")
			if err != nil {
				return err
			}
			f, err := parseText(body)
			if err != nil {
				return err
			}
			if err := f.want("linkwatch_watcher_up", 1); err != nil {
				return err
			}
			return f.want("linkwatch_failover_active", want, "policy", foPolicyName)
		}
		eventually(t, 20*time.Second, func() error { return get(0) })
		// A dry-run failover: counted, logged, and no route.
		ip(t, ns, "link", "set", foBak, "down")
		eventually(t, 5*time.Second, func() error { return get(1) })
		if !strings.Contains(p.out.String(), "dry run: would install route") {
			t.Errorf("no dry-run log line:\n%s", p.out.String())
		}
		for _, fam := range []string{"-4", "-6"} {
			if r, err := foOurRoutes(ns, fam); err != nil || len(r) != 0 {
				t.Errorf("dry run installed routes: %q %v", r, err)
			}
		}
	})
}

// TestFailoverForeignSameKey puts a foreign route on the key (table,
// destination, metric) of the IPv4 backup route: the exporter must leave it
// alone, count and log the failure, and still install the IPv6 route.
func TestFailoverForeignSameKey(t *testing.T) {
	topo := foNewTopology(t, "fofk")
	foreign := []string{"route", "add", "default", "via", foGW1, "dev", foPri, "proto", "static", "metric", "50"}
	ip(t, topo.router, foreign...)
	dir := foDir(t)
	e := foStart(t, topo, foWrite(t, filepath.Join(dir, "policy.yml"), foPolicy{}.yaml()), "")
	before := foForeignRoutes(t, topo.router)
	foCut(t, topo)
	_, want6 := foBackup(50)
	foPoll(t, 2*time.Second, 20*time.Millisecond, func() error {
		v6, err := foOurRoutes(topo.router, "-6")
		if err != nil {
			return err
		}
		if !slices.Equal(v6, []string{want6}) {
			return fmt.Errorf("IPv6 routes with proto %s: %q", foOurProt, v6)
		}
		return nil
	})
	time.Sleep(foRepair + 200*time.Millisecond) // a repair pass too
	if v4, err := foOurRoutes(topo.router, "-4"); err != nil || len(v4) != 0 {
		t.Errorf("IPv4 routes with proto %s: %q %v; want none (the key is taken)", foOurProt, v4, err)
	}
	// The linkdown flags differ while the primary is cut; compare
	// everything else.
	strip := func(s string) string { return strings.ReplaceAll(s, " linkdown", "") }
	if after := foForeignRoutes(t, topo.router); strip(after) != strip(before) {
		t.Errorf("foreign routes changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	f := e.scrape(t)
	if err := f.want("linkwatch_failover_active", 1, "policy", foPolicyName); err != nil {
		t.Error(err)
	}
	if n := f.get(t, "linkwatch_failover_errors_total", "policy", foPolicyName); n < 1 {
		t.Errorf("linkwatch_failover_errors_total = %v, want > 0", n)
	}
	if out := e.out.String(); !strings.Contains(out, "owned by another protocol") {
		t.Errorf("the exporter did not log why the IPv4 route is not installed:\n%s", out)
	}
	foRestore(t, topo)
	foWaitInstalled(t, topo, 0, foUpDelay+2*time.Second)
	if out := e.out.String(); !strings.Contains(out, "installed routes match the policies again") {
		t.Errorf("the exporter did not log that the routes match again after failback:\n%s", out)
	}
	if n := strings.Count(e.out.String(), "cannot make the installed routes match"); n != 1 {
		t.Errorf("the persisting failure was logged %d times, want once", n)
	}
	ip(t, topo.router, slices.Replace(foreign, 1, 2, "del")...)
}
