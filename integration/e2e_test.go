package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/linkwatch/linkwatch_exporter/dashboards"
)

// The end-to-end test runs the whole alert-triggered failover chain with
// real components: the exporter watches the router of the failover topology
// (topology_test.go), Prometheus scrapes it and evaluates the repository's
// own rules (deploy/prometheus), and Alertmanager, configured from
// deploy/alertmanager/alertmanager.yml, calls the exporter's webhook, which
// installs the backup routes. Only the intervals, addresses and credentials
// of those files are changed. Everything listens on 127.0.0.1; measured
// stage times are logged with the prefix "MEASURED:".

const (
	// e2eInstance is the instance label Prometheus gives the exporter
	// (see e2ePrometheusConfig): the node "router1" that
	// deploy/alertmanager/alertmanager.yml routes to the receiver
	// linkwatch-failover-router1, as a node scraped as router1:9957 would
	// be labelled.
	e2eInstance = "router1:9957"
	// e2eNode is the policy's alert.node.instance, the same expression as
	// the Alertmanager route's instance matcher.
	e2eNode      = "router1(:[0-9]+)?"
	e2eReceiver  = "linkwatch-failover-router1"
	e2eToken     = "e2e-b3arer-t0ken"
	e2eFlapAlert = "LinkwatchLinkFlapping"
	e2eFlaps     = 5
	e2eFlapGap   = 50 * time.Millisecond
	e2ePoll      = 50 * time.Millisecond
	e2eSlowPoll  = 500 * time.Millisecond
	e2eRange     = 3 * time.Minute
)

// e2eDampening makes the flap penalty panels have data. One carrier loss
// (the outage of the failover scenario) stays below suppress, so failback
// is not held up; the burst of flaps afterwards is suppressed, which delays
// nothing because no failover is active then.
const e2eDampening = "{penalty: 1000, half_life: 10s, suppress: 2500, reuse: 1200, max_suppress: 30s}"

// e2ePolicy is the policy file: failover of lwt-pri by alert only, so that
// only the webhook can install the backup routes.
func e2ePolicy() string {
	return fmt.Sprintf(`# written by TestE2EAlertFailover
global:
  repair_interval: %s
policies:
  - name: %s
    device: %s
    triggers: [alert]
    alert:
      alertnames: [%s]
      device_label: device
      node:
        instance: %q
    routes:
      - destination: default
        gateway: %s
        device: %s
        metric: 50
      - destination: default
        gateway: "%s"
        device: %s
        metric: 50
    down_delay: 0s
    up_delay: %s
    min_failover_time: %s
    dampening: %s
`, foRepair, foPolicyName, foPri, foAlertName, e2eNode, foGW2, foBak, foGW2v6, foBak, foUpDelay, foMinFail, e2eDampening)
}

// e2eClient keeps connections alive: the stage pollers query every few
// tens of milliseconds for more than a minute.
var e2eClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 16},
}

// e2eField returns m[key] as a T, failing the test if it is missing or of
// another type (the deploy file changed shape).
func e2eField[T any](t *testing.T, m map[string]any, key, file string) T {
	t.Helper()
	v, ok := m[key].(T)
	if !ok {
		var zero T
		t.Fatalf("%s: %q is %T, want %T", file, key, m[key], zero)
	}
	return v
}

// e2eRead parses a YAML file of the repository into generic maps.
func e2eRead(t *testing.T, path string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

func e2eWrite(t *testing.T, path string, m map[string]any) string {
	t.Helper()
	out, err := yaml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// e2ePrometheusConfig writes dst from deploy/prometheus/prometheus.yml at
// src with 1s intervals, the repository's rule files by absolute path, the
// test's Alertmanager, and the test's exporter as the only target.
func e2ePrometheusConfig(t *testing.T, src, dst, exporterAddr, amAddr string) string {
	t.Helper()
	cfg := e2eRead(t, src)
	global := e2eField[map[string]any](t, cfg, "global", src)
	global["scrape_interval"] = "1s"
	global["evaluation_interval"] = "1s"

	files := e2eField[[]any](t, cfg, "rule_files", src)
	for i, f := range files {
		s, ok := f.(string)
		if !ok {
			t.Fatalf("%s: rule_files[%d] is %T", src, i, f)
		}
		if !filepath.IsAbs(s) {
			files[i] = filepath.Join(filepath.Dir(src), s)
		}
	}

	ams := e2eField[[]any](t, e2eField[map[string]any](t, cfg, "alerting", src), "alertmanagers", src)
	if len(ams) != 1 {
		t.Fatalf("%s: %d alertmanagers configs, want 1", src, len(ams))
	}
	am, ok := ams[0].(map[string]any)
	if !ok {
		t.Fatalf("%s: alertmanagers[0] is %T", src, ams[0])
	}
	e2eField[[]any](t, am, "static_configs", src)
	am["static_configs"] = []any{map[string]any{"targets": []any{amAddr}}}

	var jobs []any
	for _, s := range e2eField[[]any](t, cfg, "scrape_configs", src) {
		job, ok := s.(map[string]any)
		if !ok || job["job_name"] != "linkwatch" {
			// Anything else would scrape outside the test.
			t.Logf("%s: leaving out scrape config %v", src, s)
			continue
		}
		if _, ok := job["scrape_interval"]; ok {
			job["scrape_interval"] = "1s"
		}
		e2eField[[]any](t, job, "static_configs", src)
		// A target label "instance" is kept as it is: Prometheus sets
		// instance to the address only when no instance label is
		// left after relabelling. So the alerts carry
		// instance="router1:9957", which the Alertmanager route for
		// router1 (instance=~"router1(:[0-9]+)?") and the policy's
		// alert.node.instance match, while the scrape goes to the
		// exporter's loopback address.
		job["static_configs"] = []any{map[string]any{
			"targets": []any{exporterAddr},
			"labels":  map[string]any{"instance": e2eInstance},
		}}
		jobs = append(jobs, job)
	}
	if len(jobs) != 1 {
		t.Fatalf("%s: %d scrape configs of job linkwatch, want 1", src, len(jobs))
	}
	cfg["scrape_configs"] = jobs
	return e2eWrite(t, dst, cfg)
}

// e2eAlertmanagerConfig writes dst from deploy/alertmanager/alertmanager.yml
// at src with short grouping timers, router1's failover receiver pointing
// at the exporter with the test's token file, and every other webhook
// pointing at the local sink.
func e2eAlertmanagerConfig(t *testing.T, src, dst, webhookURL, tokenFile, sinkURL string) string {
	t.Helper()
	cfg := e2eRead(t, src)
	timers := map[string]string{"group_wait": "0s", "group_interval": "1s", "repeat_interval": "30s"}
	var walk func(r map[string]any, top bool)
	walk = func(r map[string]any, top bool) {
		for k, v := range timers {
			if _, ok := r[k]; ok || top {
				r[k] = v
			}
		}
		if sub, ok := r["routes"].([]any); ok {
			for _, s := range sub {
				m, ok := s.(map[string]any)
				if !ok {
					t.Fatalf("%s: route %v is %T", src, s, s)
				}
				walk(m, false)
			}
		}
	}
	walk(e2eField[map[string]any](t, cfg, "route", src), true)

	found := false
	for _, r := range e2eField[[]any](t, cfg, "receivers", src) {
		rec, ok := r.(map[string]any)
		if !ok {
			t.Fatalf("%s: receiver %v is %T", src, r, r)
		}
		name, _ := rec["name"].(string)
		for k := range rec {
			if k != "name" && k != "webhook_configs" {
				// It would notify outside the test.
				t.Fatalf("%s: receiver %s has %s; the test only redirects webhooks", src, name, k)
			}
		}
		wcs, _ := rec["webhook_configs"].([]any)
		for _, w := range wcs {
			wc, ok := w.(map[string]any)
			if !ok {
				t.Fatalf("%s: receiver %s: webhook config %v is %T", src, name, w, w)
			}
			if name != e2eReceiver {
				wc["url"] = sinkURL + "/" + name
				continue
			}
			found = true
			wc["url"] = webhookURL
			hc := e2eField[map[string]any](t, wc, "http_config", src)
			auth := e2eField[map[string]any](t, hc, "authorization", src)
			e2eField[string](t, auth, "credentials_file", src)
			auth["credentials_file"] = tokenFile
		}
	}
	if !found {
		t.Fatalf("%s: no webhook config of receiver %s", src, e2eReceiver)
	}
	return e2eWrite(t, dst, cfg)
}

// An e2eDaemon is Prometheus or Alertmanager, run by the test.
type e2eDaemon struct {
	name string
	addr string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

// e2eStart runs the daemon and waits until GET /-/ready answers 200. The
// cleanup ends it (by its PID) with SIGTERM and, after 10s, SIGKILL.
func e2eStart(t *testing.T, name, addr, path string, args ...string) *e2eDaemon {
	t.Helper()
	d := &e2eDaemon{name: name, addr: addr, out: &syncBuffer{}, done: make(chan struct{})}
	d.cmd = exec.Command(path, args...)
	d.cmd.Dir = t.TempDir()
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", d.cmd, err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() { d.stop(t) })
	start := time.Now()
	eventually(t, 60*time.Second, func() error {
		select {
		case <-d.done:
			t.Fatalf("%s exited while starting: %v\n%s", name, d.err, d.out.String())
		default:
		}
		resp, err := e2eClient.Get("http://" + addr + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s /-/ready: %s", name, resp.Status)
		}
		return nil
	})
	t.Logf("%s pid %d ready on %s after %v", name, d.cmd.Process.Pid, addr, time.Since(start).Round(time.Millisecond))
	return d
}

func (d *e2eDaemon) stop(t *testing.T) {
	pid := d.cmd.Process.Pid
	select {
	case <-d.done:
		t.Errorf("%s (pid %d) exited before the test ended: %v", d.name, pid, d.err)
	default:
		_ = syscall.Kill(pid, syscall.SIGTERM)
		start := time.Now()
		select {
		case <-d.done:
			t.Logf("%s (pid %d) exited %v after SIGTERM: %v", d.name, pid, time.Since(start).Round(time.Millisecond), d.err)
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(pid, syscall.SIGKILL)
			<-d.done
			t.Errorf("%s (pid %d) still running 10s after SIGTERM; killed it", d.name, pid)
		}
	}
	if t.Failed() {
		out := d.out.String()
		if len(out) > 16<<10 {
			out = "…" + out[len(out)-16<<10:]
		}
		t.Logf("%s output:\n%s", d.name, out)
	}
}

// e2eGet GETs http://addr+path and decodes the JSON answer into v.
func e2eGet(addr, path string, q url.Values, v any) error {
	u := "http://" + addr + path
	if q != nil {
		u += "?" + q.Encode()
	}
	resp, err := e2eClient.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %s: %.300s", path, resp.Status, body)
	}
	return nil
}

// e2eProm is the Prometheus HTTP API.
type e2eProm struct{ addr string }

// api GETs an API path and returns its data, or an error unless the status
// is "success".
func (p e2eProm) api(path string, q url.Values) (json.RawMessage, error) {
	var r struct {
		Status    string          `json:"status"`
		Data      json.RawMessage `json:"data"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
	}
	if err := e2eGet(p.addr, path, q, &r); err != nil {
		return nil, err
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s: status %q: %s: %s", path, r.Status, r.ErrorType, r.Error)
	}
	return r.Data, nil
}

// e2eSeries is one series of a vector or matrix result; Value is [time,
// "value"] of an instant vector, Values those of a range vector.
type e2eSeries struct {
	Metric map[string]string `json:"metric"`
	Value  []any             `json:"value"`
	Values [][]any           `json:"values"`
}

// e2eResult is a query result.
type e2eResult struct {
	Type   string
	Series []e2eSeries // vector and matrix
	Scalar bool        // a scalar or string result (always data)
}

// samples returns the number of samples and how many are not NaN.
func (r e2eResult) samples() (n, numbers int) {
	count := func(v []any) {
		if len(v) != 2 {
			return
		}
		n++
		if s, ok := v[1].(string); ok {
			if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) {
				numbers++
			}
		}
	}
	for _, s := range r.Series {
		if s.Value != nil {
			count(s.Value)
		}
		for _, v := range s.Values {
			count(v)
		}
	}
	return n, numbers
}

func e2eDecode(data json.RawMessage) (e2eResult, error) {
	var raw struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return e2eResult{}, err
	}
	r := e2eResult{Type: raw.ResultType}
	switch raw.ResultType {
	case "vector", "matrix":
		err := json.Unmarshal(raw.Result, &r.Series)
		return r, err
	case "scalar", "string":
		r.Scalar = true
		return r, nil
	}
	return r, fmt.Errorf("unknown result type %q", raw.ResultType)
}

func e2eTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixNano())/1e9, 'f', 3, 64)
}

// query runs an instant query at time at.
func (p e2eProm) query(q string, at time.Time) (e2eResult, error) {
	data, err := p.api("/api/v1/query", url.Values{"query": {q}, "time": {e2eTime(at)}})
	if err != nil {
		return e2eResult{}, err
	}
	return e2eDecode(data)
}

// queryRange runs a range query.
func (p e2eProm) queryRange(q string, start, end time.Time, step time.Duration) (e2eResult, error) {
	data, err := p.api("/api/v1/query_range", url.Values{
		"query": {q}, "start": {e2eTime(start)}, "end": {e2eTime(end)}, "step": {step.String()},
	})
	if err != nil {
		return e2eResult{}, err
	}
	return e2eDecode(data)
}

type e2ePromAlert struct {
	Labels   map[string]string `json:"labels"`
	State    string            `json:"state"`
	ActiveAt time.Time         `json:"activeAt"`
}

// alert returns the alert for lwt-pri of the exporter as Prometheus has
// it; the zero value (state "") if it is not pending or firing.
func (p e2eProm) alert(alertname string) (e2ePromAlert, error) {
	data, err := p.api("/api/v1/alerts", nil)
	if err != nil {
		return e2ePromAlert{}, err
	}
	var d struct {
		Alerts []e2ePromAlert `json:"alerts"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return e2ePromAlert{}, err
	}
	for _, a := range d.Alerts {
		l := a.Labels
		if l["alertname"] == alertname && l["device"] == foPri && l["instance"] == e2eInstance && l["job"] == "linkwatch" {
			return a, nil
		}
	}
	return e2ePromAlert{}, nil
}

type e2eRules struct {
	Groups []struct {
		Name           string    `json:"name"`
		File           string    `json:"file"`
		LastEvaluation time.Time `json:"lastEvaluation"`
		Rules          []struct {
			Name      string `json:"name"`
			Type      string `json:"type"`
			Health    string `json:"health"`
			LastError string `json:"lastError"`
		} `json:"rules"`
	} `json:"groups"`
}

func (p e2eProm) rules() (e2eRules, error) {
	var r e2eRules
	data, err := p.api("/api/v1/rules", nil)
	if err != nil {
		return r, err
	}
	err = json.Unmarshal(data, &r)
	return r, err
}

// firedAt returns the time of the evaluation at which the alert for lwt-pri
// of the exporter first fired since since: the first sample of its ALERTS
// series with alertstate="firing".
func (p e2eProm) firedAt(alertname string, since time.Time) (time.Time, error) {
	q := fmt.Sprintf(`ALERTS{alertname=%q,alertstate="firing",device=%q,instance=%q}[%dms]`,
		alertname, foPri, e2eInstance, time.Since(since).Milliseconds()+1000)
	r, err := p.query(q, time.Now())
	if err != nil {
		return time.Time{}, err
	}
	if len(r.Series) != 1 || len(r.Series[0].Values) == 0 {
		return time.Time{}, fmt.Errorf("%s: %+v", q, r.Series)
	}
	ts, _ := r.Series[0].Values[0][0].(float64)
	return time.UnixMilli(int64(math.Round(ts * 1000))), nil
}

// e2eScrapeInfo is one scrape of the exporter as the TSDB holds it.
type e2eScrapeInfo struct {
	at    time.Time     // its timestamp: when it started
	dur   time.Duration // scrape_duration_seconds
	up    string        // linkwatch_link_up of the selected series, "" if none (failed)
	downs string        // linkwatch_link_carrier_down_changes_total of it
}

// scrapes returns the scrapes of the exporter since since, in order, with
// the values of the linkwatch_link_up and carrier down counter series that
// sel selects.
func (p e2eProm) scrapes(sel string, since time.Time) ([]e2eScrapeInfo, error) {
	now := time.Now()
	window := fmt.Sprintf("[%dms]", now.Sub(since).Milliseconds())
	values := func(q string) (map[int64]string, error) {
		r, err := p.query(q+window, now)
		if err != nil {
			return nil, err
		}
		if len(r.Series) != 1 {
			return nil, fmt.Errorf("%s%s: %d series, want 1", q, window, len(r.Series))
		}
		m := make(map[int64]string)
		for _, v := range r.Series[0].Values {
			ts, _ := v[0].(float64)
			m[int64(math.Round(ts*1000))] = fmt.Sprint(v[1])
		}
		return m, nil
	}
	durs, err := values(`scrape_duration_seconds{job="linkwatch"}`)
	if err != nil {
		return nil, err
	}
	up, err := values("linkwatch_link_up" + sel)
	if err != nil {
		return nil, err
	}
	downs, err := values("linkwatch_link_carrier_down_changes_total" + sel)
	if err != nil {
		return nil, err
	}
	var res []e2eScrapeInfo
	for ts, d := range durs {
		f, err := strconv.ParseFloat(d, 64)
		if err != nil {
			return nil, err
		}
		res = append(res, e2eScrapeInfo{at: time.UnixMilli(ts), dur: secs(f), up: up[ts], downs: downs[ts]})
	}
	sort.Slice(res, func(i, j int) bool { return res[i].at.Before(res[j].at) })
	return res, nil
}

// lastScrape returns when Prometheus last scraped the exporter.
func (p e2eProm) lastScrape() (time.Time, error) {
	data, err := p.api("/api/v1/targets", url.Values{"state": {"active"}})
	if err != nil {
		return time.Time{}, err
	}
	var d struct {
		ActiveTargets []struct {
			Labels     map[string]string `json:"labels"`
			LastScrape time.Time         `json:"lastScrape"`
			Health     string            `json:"health"`
			LastError  string            `json:"lastError"`
		} `json:"activeTargets"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return time.Time{}, err
	}
	for _, tg := range d.ActiveTargets {
		if tg.Labels["job"] == "linkwatch" {
			if tg.Health != "up" {
				return time.Time{}, fmt.Errorf("target health %q: %s", tg.Health, tg.LastError)
			}
			return tg.LastScrape, nil
		}
	}
	return time.Time{}, fmt.Errorf("no active target of job linkwatch")
}

type e2eAMAlert struct {
	Labels    map[string]string `json:"labels"`
	UpdatedAt time.Time         `json:"updatedAt"` // when Alertmanager last received it
	Status    struct {
		State string `json:"state"`
	} `json:"status"`
	Receivers []struct {
		Name string `json:"name"`
	} `json:"receivers"`
}

// e2eAMLinkDown returns the LinkwatchLinkDown alert for lwt-pri of the
// exporter that Alertmanager holds (active, suppressed or unprocessed; it
// does not list resolved alerts), or nil.
func e2eAMLinkDown(addr string) (*e2eAMAlert, error) {
	var alerts []e2eAMAlert
	if err := e2eGet(addr, "/api/v2/alerts", nil, &alerts); err != nil {
		return nil, err
	}
	for i, a := range alerts {
		l := a.Labels
		if l["alertname"] == foAlertName && l["device"] == foPri && l["instance"] == e2eInstance {
			return &alerts[i], nil
		}
	}
	return nil, nil
}

// e2eScrape scrapes the exporter over a kept-alive connection.
func e2eScrape(addr string) (families, error) {
	resp, err := e2eClient.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return parseText(b)
}

// e2eWebhookAlerts returns linkwatch_webhook_alerts_total{status, matched="true"}.
func e2eWebhookAlerts(addr, status string) (float64, error) {
	f, err := e2eScrape(addr)
	if err != nil {
		return 0, err
	}
	return f.num("linkwatch_webhook_alerts_total", "status", status, "matched", "true")
}

// e2eLogLine is a line of the exporter's logfmt log with its time.
type e2eLogLine struct {
	at   time.Time
	line string
}

// e2eLog returns the lines of the exporter's log from since on whose
// message is msg and that contain all of the strings in with.
func e2eLog(out string, since time.Time, msg string, with ...string) []e2eLogLine {
	var res []e2eLogLine
	for line := range strings.Lines(out) {
		if m, _ := logValue(line, "msg"); m != msg {
			continue
		}
		ts, ok := logValue(line, "time")
		if !ok {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, ts)
		// The log has milliseconds: a line of since's millisecond counts.
		if err != nil || at.Before(since.Truncate(time.Millisecond)) {
			continue
		}
		all := true
		for _, w := range with {
			all = all && strings.Contains(line, w)
		}
		if all {
			res = append(res, e2eLogLine{at, strings.TrimSpace(line)})
		}
	}
	return res
}

// e2eFlap takes dev in ns down and up again n times, each for gap, with
// gap between, starting at start. The commands go to one `ip -batch -`
// started beforehand and fed line by line, so that no process start
// delays them. It returns when the first command was written and when ip
// exited after the last.
func e2eFlap(t *testing.T, ns netns, dev string, n int, gap time.Duration, start time.Time) (first, last time.Time) {
	t.Helper()
	cmd := exec.Command("ip", "-n", ns.Name, "-batch", "-")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", cmd, err)
	}
	time.Sleep(time.Until(start))
	first = time.Now()
	var werr error
	for i := range n {
		for _, state := range []string{"down", "up"} {
			if _, err := io.WriteString(in, "link set dev "+dev+" "+state+"\n"); err != nil && werr == nil {
				werr = err
			}
			if state == "down" || i < n-1 {
				time.Sleep(gap)
			}
		}
	}
	in.Close()
	err = cmd.Wait()
	last = time.Now()
	if err != nil || werr != nil {
		t.Fatalf("ip -n %s -batch: %v, %v: %s", ns.Name, err, werr, out.String())
	}
	return first, last
}

// An e2eStage is a condition that becomes true at some point of a scenario.
type e2eStage struct {
	name string
	// gate is the index of a stage that must have been seen before this
	// one is polled every e2ePoll; until then it is polled every
	// e2eSlowPoll (still catching a stage that comes too early). -1: none.
	gate int
	// check reports whether the stage has happened, and when if it knows
	// exactly (from a log line); a zero time means "by now".
	check func() (time.Time, bool, error)
}

// e2eWatch polls all stages concurrently and returns, for each, how long
// after ref it happened: the time its check reported, or else the time the
// first positive answer arrived (at most a poll interval and the query's
// own time late). It fails the test if a stage is not
// seen within timeout of ref, after logging what diag returns (if not nil).
func e2eWatch(t *testing.T, ref time.Time, timeout time.Duration, diag func() string, stages []e2eStage) []time.Duration {
	t.Helper()
	var (
		mu      sync.Mutex
		seen    = make([]time.Duration, len(stages))
		ok      = make([]bool, len(stages))
		lastErr = make([]error, len(stages))
		wg      sync.WaitGroup
	)
	ctx, cancel := context.WithDeadline(context.Background(), ref.Add(timeout))
	defer cancel()
	for i, s := range stages {
		wg.Go(func() {
			var last time.Time
			for {
				mu.Lock()
				fast := s.gate < 0 || ok[s.gate]
				mu.Unlock()
				if !fast && time.Since(last) < e2eSlowPoll {
					select {
					case <-ctx.Done():
						return
					case <-time.After(e2ePoll):
					}
					continue
				}
				last = time.Now()
				when, done, err := s.check()
				if when.IsZero() {
					when = time.Now()
				}
				mu.Lock()
				if done {
					seen[i], ok[i] = when.Sub(ref), true
					mu.Unlock()
					return
				}
				lastErr[i] = err
				mu.Unlock()
				select {
				case <-ctx.Done():
					return
				case <-time.After(e2ePoll):
				}
			}
		})
	}
	wg.Wait()
	if diag != nil && slices.Contains(ok, false) {
		t.Logf("diagnostics:\n%s", diag())
	}
	var missing []string
	for i, s := range stages {
		if !ok[i] {
			missing = append(missing, fmt.Sprintf("%s (last error: %v)", s.name, lastErr[i]))
		}
	}
	if len(missing) > 0 {
		var got []string
		for i, s := range stages {
			if ok[i] {
				got = append(got, fmt.Sprintf("%s after %s", s.name, ms(seen[i])))
			}
		}
		t.Fatalf("not seen within %v: %s; seen: %s", timeout, strings.Join(missing, "; "), strings.Join(got, "; "))
	}
	return seen
}

// e2eRuleExprs returns the expressions of the alerting and recording rules
// of a rule file, by rule name.
func e2eRuleExprs(t *testing.T, path string) (names, exprs []string) {
	t.Helper()
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert  string `yaml:"alert"`
				Record string `yaml:"record"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			names = append(names, r.Alert+r.Record)
			exprs = append(exprs, r.Expr)
		}
	}
	if len(exprs) == 0 {
		t.Fatalf("%s: no rules", path)
	}
	return names, exprs
}

// TestE2EAlertFailover checks the acceptance criteria of alert-triggered
// failover end to end: Prometheus with the repository's rules scrapes the
// exporter, LinkwatchLinkDown fires after its for: 1m, Alertmanager with the
// repository's routing calls the webhook, the exporter installs the backup
// routes and fails back once the link is back and the alert resolved. A
// burst of flaps between two scrapes then fires LinkwatchLinkFlapping, and
// finally every dashboard, alert and recording rule expression must run
// against the data of the scenario.
func TestE2EAlertFailover(t *testing.T) {
	testStart := time.Now()
	var summary []string
	measured := func(format string, args ...any) {
		t.Helper()
		s := fmt.Sprintf(format, args...)
		t.Logf("MEASURED: %s", s)
		summary = append(summary, s)
	}
	t.Cleanup(func() {
		var b strings.Builder
		for _, s := range summary {
			b.WriteString("\n  MEASURED: " + s)
		}
		t.Logf("summary after %v:%s", time.Since(testStart).Round(time.Millisecond), b.String())
	})

	requireRoot(t)
	promtool := requireTool(t, "promtool")
	prometheus := requireTool(t, "prometheus")
	amtool := requireTool(t, "amtool")
	alertmanager, err := exec.LookPath("prometheus-alertmanager") // Debian's name
	if err != nil {
		alertmanager = requireTool(t, "alertmanager")
	}
	deploy, err := filepath.Abs("../deploy")
	if err != nil {
		t.Fatal(err)
	}
	promSrc := filepath.Join(deploy, "prometheus", "prometheus.yml")
	amSrc := filepath.Join(deploy, "alertmanager", "alertmanager.yml")
	ruleFiles := []string{filepath.Join(deploy, "prometheus", "alerts.yml"), filepath.Join(deploy, "prometheus", "rules.yml")}
	exprs, err := dashboards.Expressions("../dashboards/linkwatch.json")
	if err != nil {
		t.Fatal(err)
	}

	topo := foNewTopology(t, "e2e")

	// A sink for the receivers meant for people.
	var sinkMu sync.Mutex
	sunk := make(map[string]int)
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		sinkMu.Lock()
		sunk[r.URL.Path]++
		sinkMu.Unlock()
	}))
	t.Cleanup(sink.Close)
	t.Cleanup(e2eClient.CloseIdleConnections)

	dir := foDir(t)
	e := foStart(t, topo, foWrite(t, filepath.Join(dir, "policy.yml"), e2ePolicy()), e2eToken, "--log.level=debug")
	tokenFile := filepath.Join(dir, "token") // written by foStart

	cfgDir := t.TempDir()
	amAddr, promAddr := freeAddr(t), freeAddr(t)
	amCfg := e2eAlertmanagerConfig(t, amSrc, filepath.Join(cfgDir, "alertmanager.yml"),
		"http://"+e.addr+"/webhook/alertmanager", tokenFile, sink.URL)
	promCfg := e2ePrometheusConfig(t, promSrc, filepath.Join(cfgDir, "prometheus.yml"), e.addr, amAddr)
	for _, c := range [][]string{{promtool, "check", "config", promCfg}, {amtool, "check-config", amCfg}} {
		out, err := exec.Command(c[0], c[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(c, " "), err, out)
		}
		t.Logf("%s %s: OK", filepath.Base(c[0]), c[1])
	}

	e2eStart(t, "alertmanager", amAddr, alertmanager,
		"--config.file="+amCfg,
		"--storage.path="+t.TempDir(),
		"--web.listen-address="+amAddr,
		"--cluster.listen-address=", // no cluster, no gossip port
		"--log.level=debug")
	e2eStart(t, "prometheus", promAddr, prometheus,
		"--config.file="+promCfg,
		"--storage.tsdb.path="+t.TempDir(),
		"--web.listen-address="+promAddr)
	prom := e2eProm{promAddr}

	// diag says what Prometheus saw of the scrapes and the alert in the
	// last two minutes, for a stage that did not happen.
	diag := func() string {
		var b strings.Builder
		if r, err := prom.query(`count_over_time(up{job="linkwatch"}[3m]) - sum_over_time(up{job="linkwatch"}[3m])`, time.Now()); err == nil && len(r.Series) == 1 {
			fmt.Fprintf(&b, "failed scrapes (slower than the 1s scrape timeout) in the last 3m: %v; each restarts LinkwatchLinkDown's for: 1m\n", r.Series[0].Value[1])
		}
		for _, q := range []string{
			`up{job="linkwatch"}[2m]`,
			`scrape_duration_seconds{job="linkwatch"}[2m]`,
			`linkwatch_link_up{job="linkwatch",device="lwt-pri"}[2m]`,
			`ALERTS{alertname="LinkwatchLinkDown"}[2m]`,
			`ALERTS_FOR_STATE{alertname="LinkwatchLinkDown"}[2m]`,
		} {
			r, err := prom.query(q, time.Now())
			fmt.Fprintf(&b, "%s: %v\n", q, err)
			for _, s := range r.Series {
				fmt.Fprintf(&b, "  %v:", s.Metric)
				prev := ""
				for _, v := range s.Values {
					// Only changes of value, with their time.
					val := fmt.Sprint(v[1])
					if f, _ := strconv.ParseFloat(val, 64); strings.HasPrefix(q, "scrape_duration") && f < 0.2 {
						continue // only slow scrapes
					}
					if val != prev || strings.HasPrefix(q, "scrape_duration") {
						ts, _ := v[0].(float64)
						fmt.Fprintf(&b, " %s=%s", time.UnixMilli(int64(ts*1000)).UTC().Format("15:04:05.000"), val)
						prev = val
					}
				}
				b.WriteString("\n")
			}
		}
		if data, err := prom.api("/api/v1/alerts", nil); err == nil {
			fmt.Fprintf(&b, "alerts: %s\n", data)
		}
		if data, err := prom.api("/api/v1/targets", nil); err == nil {
			fmt.Fprintf(&b, "targets: %.2000s\n", data)
		}
		return b.String()
	}

	// 1. Prometheus scrapes the exporter and evaluates the rules.
	eventually(t, 30*time.Second, func() error {
		r, err := prom.query(`up{job="linkwatch"}`, time.Now())
		if err != nil {
			return err
		}
		if len(r.Series) != 1 || r.Series[0].Metric["instance"] != e2eInstance || r.Series[0].Value[1] != "1" {
			return fmt.Errorf(`up{job="linkwatch"}: %+v`, r.Series)
		}
		return nil
	})
	wantRules := 0
	for _, f := range ruleFiles {
		names, _ := e2eRuleExprs(t, f)
		wantRules += len(names)
	}
	evals := make(map[string]map[time.Time]bool)
	took := eventually(t, 30*time.Second, func() error {
		r, err := prom.rules()
		if err != nil {
			return err
		}
		n := 0
		for _, g := range r.Groups {
			if !strings.HasPrefix(g.File, filepath.Join(deploy, "prometheus")+"/") {
				t.Fatalf("rule group %s from %s, not from the repository", g.Name, g.File)
			}
			for _, rule := range g.Rules {
				n++
				if rule.Health == "err" || rule.LastError != "" {
					t.Fatalf("rule %s (%s): health %q: %s", rule.Name, g.File, rule.Health, rule.LastError)
				}
				if rule.Health != "ok" {
					return fmt.Errorf("rule %s: health %q", rule.Name, rule.Health)
				}
			}
			if evals[g.Name] == nil {
				evals[g.Name] = make(map[time.Time]bool)
			}
			evals[g.Name][g.LastEvaluation] = true
			if len(evals[g.Name]) < 3 {
				return fmt.Errorf("group %s: %d evaluations seen", g.Name, len(evals[g.Name]))
			}
		}
		if n != wantRules {
			return fmt.Errorf("%d rules loaded, want %d", n, wantRules)
		}
		return nil
	})
	t.Logf("Prometheus scrapes %s as instance %s; %d rules in %d groups healthy over several evaluations (%v)",
		e.addr, e2eInstance, wantRules, len(evals), took.Round(time.Millisecond))
	eventually(t, 10*time.Second, func() error {
		data, err := prom.api("/api/v1/alertmanagers", nil)
		if err != nil {
			return err
		}
		if !strings.Contains(string(data), amAddr) {
			return fmt.Errorf("alertmanager %s not active: %s", amAddr, data)
		}
		return nil
	})
	if a, err := prom.alert(e2eFlapAlert); err != nil || a.State != "" {
		t.Fatalf("%s before any flap: state %q, %v", e2eFlapAlert, a.State, err)
	}

	// 2. Cut the primary uplink and follow the alert through the chain.
	foRequireInstalled(t, topo, 0, "before the cut")
	firing0, err := e2eWebhookAlerts(e.addr, "firing")
	if err != nil {
		t.Fatal(err)
	}
	resolved0, err := e2eWebhookAlerts(e.addr, "resolved")
	if err != nil {
		t.Fatal(err)
	}
	promState := func(want ...string) func() (time.Time, bool, error) {
		return func() (time.Time, bool, error) {
			a, err := prom.alert(foAlertName)
			if err != nil {
				return time.Time{}, false, err
			}
			for _, w := range want {
				if a.State == w {
					return time.Time{}, true, nil
				}
			}
			return time.Time{}, false, fmt.Errorf("state %q", a.State)
		}
	}
	var amReceivers []string
	inAM := func() (time.Time, bool, error) {
		a, err := e2eAMLinkDown(amAddr)
		if a == nil || a.Status.State != "active" {
			return time.Time{}, false, err
		}
		for _, r := range a.Receivers {
			amReceivers = append(amReceivers, r.Name)
		}
		// Prometheus sends a firing alert again only after its
		// resend delay (1m), so this is when it first arrived.
		return a.UpdatedAt, true, nil
	}
	// The exporter's answer to the first notification with our alert,
	// from its debug log: applied, or refused (a 503 is retried by
	// Alertmanager).
	webhookAnswer := func(since time.Time) func() (time.Time, bool, error) {
		return func() (time.Time, bool, error) {
			out := e.out.String()
			var first time.Time
			if l := e2eLog(out, since, "Webhook notification applied", "matched=1"); len(l) > 0 {
				first = l[0].at
			}
			if l := e2eLog(out, since, "Webhook request refused"); len(l) > 0 && (first.IsZero() || l[0].at.Before(first)) {
				first = l[0].at
			}
			return first, !first.IsZero(), fmt.Errorf("no webhook request with our alert logged")
		}
	}
	// What `ip route show proto 229` in the router shows.
	v4, _ := foBackup(50)
	routeShown := func(want bool) func() (time.Time, bool, error) {
		return func() (time.Time, bool, error) {
			out, err := exec.Command("ip", "-n", topo.router.Name, "route", "show", "proto", foOurProt).CombinedOutput()
			if err != nil {
				return time.Time{}, false, fmt.Errorf("ip route show proto %s: %v: %s", foOurProt, err, out)
			}
			return time.Time{}, strings.Contains(string(out), v4) == want, fmt.Errorf("ip route show proto %s: %q", foOurProt, out)
		}
	}
	// The time of the exporter's log line of a failover or failback.
	logged := func(since time.Time, msg string) (time.Duration, string) {
		l := e2eLog(e.out.String(), since, msg, "policy="+foPolicyName)
		if len(l) != 1 {
			t.Errorf("%d %s log lines since %s, want 1: %v", len(l), msg, since.Format(time.StampMilli), l)
			return 0, ""
		}
		return l[0].at.Sub(since), l[0].line
	}
	// A failed scrape (one slower than the 1s scrape timeout, on a busy
	// machine) marks the series stale: the alert goes away and its for: 1m
	// starts again. Such restarts are recorded, measured and tolerated
	// within the stage timeout.
	var activeAts []time.Time
	firing := func() (time.Time, bool, error) {
		a, err := prom.alert(foAlertName)
		if err != nil {
			return time.Time{}, false, err
		}
		if !a.ActiveAt.IsZero() && (len(activeAts) == 0 || !a.ActiveAt.Equal(activeAts[len(activeAts)-1])) {
			activeAts = append(activeAts, a.ActiveAt)
		}
		return time.Time{}, a.State == "firing", fmt.Errorf("state %q since %v", a.State, a.ActiveAt)
	}
	rxBak := foRxPackets(t, topo.gw2, foG2R)

	cut := foCut(t, topo)
	t.Logf("cut the primary uplink (%s down in %s); LinkwatchLinkDown has for: 1m", foG1R, topo.gw1.Name)
	const (
		sPending = iota
		sFiring
		sAM
		sWebhook
		sRoute
	)
	st := e2eWatch(t, cut, 170*time.Second, diag, []e2eStage{
		sPending: {"pending in Prometheus", -1, promState("pending", "firing")},
		sFiring:  {"firing in Prometheus", sPending, firing},
		sAM:      {"active in Alertmanager", sFiring, inAM},
		sWebhook: {"webhook request with the firing alert", sFiring, webhookAnswer(cut)},
		sRoute:   {"backup route shown", sFiring, routeShown(true)},
	})
	var pingAt time.Duration
	foPoll(t, 5*time.Second, 10*time.Millisecond, func() error {
		if err := foPing(t, topo.router, foTarget, 300*time.Millisecond); err != nil {
			return err
		}
		pingAt = time.Since(cut)
		return nil
	})
	foRequireInstalled(t, topo, 50, "after the ping")
	if dev := foRouteDev(t, topo.router, foTarget); dev != foBak {
		t.Errorf("failed over, traffic to %s leaves through %s, want %s", foTarget, dev, foBak)
	}
	if got := foRxPackets(t, topo.gw2, foG2R); got <= rxBak {
		t.Errorf("gw2 received no packet on %s (%d -> %d)", foG2R, rxBak, got)
	}
	failoverAt, failoverLine := logged(cut, "failover")
	// The evaluation at which the alert fired, exactly; the poll saw it
	// up to a poll interval (and a busy Prometheus) later.
	firedAt := st[sFiring]
	if at, err := prom.firedAt(foAlertName, cut); err != nil {
		t.Errorf("firing time of %s: %v", foAlertName, err)
	} else {
		firedAt = at.Sub(cut)
	}
	if len(activeAts) == 0 {
		t.Fatalf("%s never seen pending", foAlertName)
	}
	pending := activeAts[len(activeAts)-1]
	measured("cut -> LinkwatchLinkDown pending in Prometheus: %s (activeAt)", ms(activeAts[0].Sub(cut)))
	if n := len(activeAts); n > 1 {
		measured("LinkwatchLinkDown's for: 1m restarted %d time(s) after failed scrapes, last pending %s after the cut",
			n-1, ms(pending.Sub(cut)))
	}
	measured("cut -> LinkwatchLinkDown firing in Prometheus: %s (evaluation time; for: 1m, %s after pending)", ms(firedAt), ms(cut.Add(firedAt).Sub(pending)))
	if r, err := prom.query(fmt.Sprintf(`up{job="linkwatch"}[%dms]`, time.Since(cut).Milliseconds()), time.Now()); err == nil && len(r.Series) == 1 {
		failed := 0
		for _, v := range r.Series[0].Values {
			if v[1] != "1" {
				failed++
			}
		}
		slowest := "?"
		if r, err := prom.query(fmt.Sprintf(`max_over_time(scrape_duration_seconds{job="linkwatch"}[%dms])`, time.Since(cut).Milliseconds()), time.Now()); err == nil && len(r.Series) == 1 {
			slowest = fmt.Sprint(r.Series[0].Value[1]) + "s"
		}
		measured("scrapes from the cut to the failover: %d, %d failed, slowest %s", len(r.Series[0].Values), failed, slowest)
	}
	measured("cut -> LinkwatchLinkDown received by Alertmanager: %s (its updatedAt; receivers %v)", ms(st[sAM]), amReceivers)
	measured("cut -> exporter's webhook answered the first notification with the alert: %s (exporter log)", ms(st[sWebhook]))
	measured("cut -> exporter logged the failover (routes installed): %s", ms(failoverAt))
	measured("cut -> backup route shown by ip route show proto %s: %s (polled every %v)", foOurProt, ms(st[sRoute]), e2ePoll)
	measured("cut -> ping to %s answered via the backup (gw2): %s", foTarget, ms(pingAt))
	measured("alert fired in Prometheus -> failover logged by the exporter: %s", ms(failoverAt-firedAt))
	if cut.Add(firedAt).Before(pending.Add(time.Minute).Truncate(time.Millisecond)) {
		t.Errorf("LinkwatchLinkDown fired %v after the cut, less than its for: 1m after it became pending (%v)", firedAt, pending.Sub(cut))
	}
	// The policy has triggers [alert]: only the notification may fail
	// over, so neither the failover nor the route can precede the alert
	// firing in Prometheus, or the notification (log times are in ms).
	if failoverAt < firedAt-time.Millisecond || st[sRoute] < firedAt || st[sAM] < firedAt-time.Millisecond || st[sWebhook] < st[sAM]-time.Millisecond {
		t.Errorf("out of order after the cut: fired %v, in Alertmanager %v, webhook answered %v, failover logged %v, route shown %v",
			firedAt, st[sAM], st[sWebhook], failoverAt, st[sRoute])
	}
	var refused []string
	for _, l := range e2eLog(e.out.String(), cut, "Webhook request refused") {
		refused = append(refused, l.line)
		if !strings.Contains(l.line, "code=503") {
			t.Errorf("the webhook refused a notification of Alertmanager: %s", l.line)
		}
	}
	if len(refused) > 0 {
		// Alertmanager retries 5xx; the route change went on.
		measured("webhook attempts answered 503 and retried by Alertmanager: %d", len(refused))
		t.Logf("refused webhook requests:\n%s", strings.Join(refused, "\n"))
	}
	if !strings.Contains(failoverLine, "trigger=alert") {
		t.Errorf("failover log line without trigger=alert: %s", failoverLine)
	}
	if !strings.Contains(fmt.Sprint(amReceivers), e2eReceiver) {
		t.Errorf("Alertmanager routes the alert to %v, want %s among them", amReceivers, e2eReceiver)
	}
	foPoll(t, 5*time.Second, 50*time.Millisecond, func() error {
		n, err := e2eWebhookAlerts(e.addr, "firing")
		if err == nil && n <= firing0 {
			err = fmt.Errorf(`linkwatch_webhook_alerts_total{status="firing",matched="true"} = %v`, n)
		}
		return err
	})
	e.wantTransitions(t, 1, map[[2]string]float64{{"failover", "alert"}: 1, {"failover", "link"}: 0})

	restored := foRestore(t, topo)
	const (
		sResolved = iota
		sAMGone
		sWebhookResolved
		sFailback
	)
	st = e2eWatch(t, restored, 30*time.Second, diag, []e2eStage{
		sResolved: {"resolved in Prometheus", -1, promState("")},
		sAMGone: {"resolved in Alertmanager", -1, func() (time.Time, bool, error) {
			a, err := e2eAMLinkDown(amAddr)
			return time.Time{}, err == nil && a == nil, err
		}},
		sWebhookResolved: {"resolved notification counted by the exporter", -1, func() (time.Time, bool, error) {
			n, err := e2eWebhookAlerts(e.addr, "resolved")
			return time.Time{}, err == nil && n > resolved0, err
		}},
		sFailback: {"backup route gone", -1, routeShown(false)},
	})
	foRequireInstalled(t, topo, 0, "after failback")
	failbackAt, _ := logged(restored, "failback")
	measured("restore -> LinkwatchLinkDown resolved in Prometheus: %s", ms(st[sResolved]))
	measured("restore -> LinkwatchLinkDown resolved in Alertmanager: %s", ms(st[sAMGone]))
	measured("restore -> resolved notification counted by the exporter: %s", ms(st[sWebhookResolved]))
	measured("restore -> exporter logged the failback: %s (up_delay %v, min_failover_time %v)", ms(failbackAt), foUpDelay, foMinFail)
	measured("restore -> backup route gone from ip route show proto %s: %s", foOurProt, ms(st[sFailback]))
	if failbackAt < foUpDelay-10*time.Millisecond {
		t.Errorf("failback %v after the restore, before up_delay %v", failbackAt, foUpDelay)
	}
	// Failback also needs the alert to be resolved (seen by polling the
	// exporter's counter, so up to a poll interval late).
	if failbackAt < st[sWebhookResolved]-4*e2ePoll {
		t.Errorf("failback %v after the restore, before the resolved notification (%v)", failbackAt, st[sWebhookResolved])
	}
	e.wantTransitions(t, 0, map[[2]string]float64{{"failover", "alert"}: 1, {"failback", "link"}: 1, {"failover", "link"}: 0})
	if dev := foRouteDev(t, topo.router, foTarget); dev != foPri {
		t.Errorf("after failback, traffic to %s leaves through %s, want %s", foTarget, dev, foPri)
	}
	if err := foPing(t, topo.router, foTarget, time.Second); err != nil {
		t.Errorf("ping through the primary after failback: %v", err)
	}

	// 3. Flap the primary faster than the scrape interval, between two
	// scrapes: no scrape sees it down, the kernel's counters still carry
	// every loss.
	if a, err := prom.alert(e2eFlapAlert); err != nil || a.State != "" {
		t.Errorf("%s after a single outage: state %q, %v", e2eFlapAlert, a.State, err)
	}
	downs0 := sysfsCounters(t, topo.router, foPri)[foPri].Down
	sel := fmt.Sprintf(`{job="linkwatch",instance=%q,device=%q}`, e2eInstance, foPri)
	type burst struct{ start, end time.Time }
	var bursts []burst
	var clean *burst           // a burst during which no scrape was served
	var around []e2eScrapeInfo // the scrapes around it
	for attempt := 1; attempt <= 4 && clean == nil; attempt++ {
		last, err := prom.lastScrape()
		if err != nil {
			t.Fatal(err)
		}
		next := last.Add(time.Second)
		for time.Until(next) < 100*time.Millisecond {
			next = next.Add(time.Second)
		}
		// Start a quarter second after a scrape starts, when it has
		// been served (unless the machine is busy); the next one
		// starts a second after it.
		b := burst{}
		b.start, b.end = e2eFlap(t, topo.gw1, foG1R, e2eFlaps, e2eFlapGap, next.Add(250*time.Millisecond))
		bursts = append(bursts, b)
		// Two scrapes after the burst, see which scrapes were served
		// when: each ran from its timestamp for its
		// scrape_duration_seconds.
		time.Sleep(time.Until(b.end.Add(2500 * time.Millisecond)))
		scrapes, err := prom.scrapes(sel, b.start.Add(-2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var overlap []string
		for _, sc := range scrapes {
			if sc.at.Before(b.end) && sc.at.Add(sc.dur).After(b.start) {
				overlap = append(overlap, fmt.Sprintf("%s for %s", sc.at.Format(time.StampMilli), ms(sc.dur)))
			}
		}
		if len(overlap) == 0 {
			clean, around = &b, scrapes
			break
		}
		t.Logf("burst %d (%s to %s, %s) overlapped the scrape(s) at %s", attempt, b.start.Format(time.StampMilli),
			b.end.Format(time.StampMilli), ms(b.end.Sub(b.start)), strings.Join(overlap, ", "))
	}
	foPoll(t, 5*time.Second, 20*time.Millisecond, func() error {
		got := sysfsCounters(t, topo.router, foPri)[foPri].Down
		if want := downs0 + uint64(len(bursts)*e2eFlaps); got != want {
			return fmt.Errorf("%s carrier_down_count %d, want %d (%d bursts of %d flaps since %d)", foPri, got, want, len(bursts), e2eFlaps, downs0)
		}
		return nil
	})
	first := bursts[0]
	e2eWatch(t, first.end, 20*time.Second, diag, []e2eStage{
		{"LinkwatchLinkFlapping firing", -1, func() (time.Time, bool, error) {
			a, err := prom.alert(e2eFlapAlert)
			return time.Time{}, a.State == "firing", err
		}},
	})
	if at, err := prom.firedAt(e2eFlapAlert, first.start); err != nil {
		t.Errorf("firing time of %s: %v", e2eFlapAlert, err)
	} else {
		measured("end of the (first) burst of flaps -> LinkwatchLinkFlapping firing in Prometheus: %s (evaluation time)", ms(at.Sub(first.end)))
	}
	if clean == nil {
		// Not an error: the machine is too busy to serve a scrape
		// within a quarter second; the alert fired all the same.
		t.Logf("no burst of flaps fitted between two scrapes in %d attempts: linkwatch_link_up in the TSDB not checked", len(bursts))
	} else {
		// What the TSDB holds around the burst: linkwatch_link_up
		// stayed 1 in the scrapes before and after it, while the
		// carrier down counter moved by the number of flaps.
		var before, after []e2eScrapeInfo
		for _, sc := range around {
			switch {
			case sc.up == "":
				continue // a failed scrape
			case !sc.at.Add(sc.dur).After(clean.start):
				before = append(before, sc)
			case !sc.at.Before(clean.end):
				after = append(after, sc)
			}
			if sc.up != "1" {
				t.Errorf("linkwatch_link_up %s in the scrape at %s (%s after the burst started): a scrape outside the burst saw the link down",
					sc.up, sc.at.Format(time.StampMilli), ms(sc.at.Sub(clean.start)))
			}
		}
		if len(before) < 1 || len(after) < 2 {
			t.Fatalf("scrapes around the burst: %d before, %d after, want at least 1 and 2", len(before), len(after))
		}
		prev, next := before[len(before)-1], after[0]
		measured("%d flaps (%v down, %v up) took %s, %s after the scrape before them was served and %s before the next scrape",
			e2eFlaps, e2eFlapGap, e2eFlapGap, ms(clean.end.Sub(clean.start)), ms(clean.start.Sub(prev.at.Add(prev.dur))), ms(next.at.Sub(clean.end)))
		d0, _ := strconv.ParseFloat(prev.downs, 64)
		d1, _ := strconv.ParseFloat(next.downs, 64)
		if int(d1-d0) != e2eFlaps {
			t.Errorf("linkwatch_link_carrier_down_changes_total in the TSDB went %v -> %v across the burst, want +%d", d0, d1, e2eFlaps)
		}
		measured("TSDB around the burst: linkwatch_link_up 1 in all %d scrapes (%d before, %d after), carrier down counter %v -> %v",
			len(before)+len(after), len(before), len(after), d0, d1)
	}
	if f, err := e2eScrape(e.addr); err == nil {
		p, _ := f.num("linkwatch_link_flap_penalty", "device", foPri)
		s, _ := f.num("linkwatch_link_suppressed", "device", foPri)
		t.Logf("after the burst: flap penalty %.0f, suppressed %v", p, s)
	}

	// 4. Every expression of the dashboard and of the rules, against the
	// data of the scenario.
	scenario := dashboards.Scenario{Failover: true, Dampening: true, Events: true}
	end := time.Now()
	start := end.Add(-e2eRange)
	run, withData := 0, 0
	for _, x := range exprs {
		var r e2eResult
		var err error
		kind := "range"
		if x.Instant {
			kind = "instant"
			r, err = prom.query(x.Query, end)
		} else {
			r, err = prom.queryRange(x.Query, start, end, time.Second)
		}
		run++
		if err != nil {
			t.Errorf("dashboard %q %s (%s query): %v\n  %s", x.Panel, x.RefID, kind, err, x.Query)
			continue
		}
		n, numbers := r.samples()
		has := len(r.Series) > 0 || r.Scalar
		if has {
			withData++
		}
		t.Logf("dashboard %-45q %-4s %-7s needs %-9s: %d series, %d samples (%d not NaN)", x.Panel, x.RefID, kind, x.Needs, len(r.Series), n, numbers)
		if !has && x.Needs.MetBy(scenario) {
			t.Errorf("dashboard %q %s needs %s, met by this scenario, but returned no data:\n  %s", x.Panel, x.RefID, x.Needs, x.Query)
		}
	}
	dashRun, dashData := run, withData
	for _, f := range ruleFiles {
		names, rexprs := e2eRuleExprs(t, f)
		for i, q := range rexprs {
			r, err := prom.query(q, end)
			run++
			if err != nil {
				t.Errorf("%s %s: %v\n  %s", filepath.Base(f), names[i], err, q)
				continue
			}
			if len(r.Series) > 0 || r.Scalar {
				withData++
			}
			t.Logf("%s %-60s: %d series", filepath.Base(f), names[i], len(r.Series))
		}
	}
	// The rules are still healthy after the scenario.
	if rs, err := prom.rules(); err != nil {
		t.Error(err)
	} else {
		for _, g := range rs.Groups {
			for _, rule := range g.Rules {
				if rule.Health != "ok" || rule.LastError != "" {
					t.Errorf("rule %s: health %q: %s", rule.Name, rule.Health, rule.LastError)
				}
			}
		}
	}
	measured("expressions: %d run, %d with data (dashboard %d run, %d with data; rules %d run, %d with data)",
		run, withData, dashRun, dashData, run-dashRun, withData-dashData)

	sinkMu.Lock()
	var paths []string
	for p, n := range sunk {
		paths = append(paths, fmt.Sprintf("%s: %d", p, n))
	}
	sinkMu.Unlock()
	sort.Strings(paths)
	t.Logf("notifications to the receivers for people: %v", paths)
}
