package routes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
)

// whSink records the notifications it gets. An alert matches when it is
// about router1. err, delay (honouring the context) and block (ignoring it)
// simulate failures and slowness.
type whSink struct {
	err   error
	delay time.Duration
	block chan struct{}
	panic bool
	short bool // return one result too few

	mu    sync.Mutex
	calls []whCall
}

type whCall struct {
	GroupKey string
	Alerts   []Alert
}

func (s *whSink) Alerts(ctx context.Context, groupKey string, alerts []Alert) ([]bool, error) {
	s.mu.Lock()
	s.calls = append(s.calls, whCall{groupKey, alerts})
	s.mu.Unlock()
	if s.delay > 0 {
		select {
		case <-time.After(s.delay):
		case <-ctx.Done():
			return nil, fmt.Errorf("applying routes: %w", ctx.Err())
		}
	}
	if s.block != nil {
		<-s.block
	}
	if s.panic {
		panic("boom")
	}
	if s.err != nil {
		return nil, s.err
	}
	matched := make([]bool, len(alerts))
	for i, a := range alerts {
		matched[i] = a.Labels["alertname"] == "LinkwatchLinkDown" && a.Labels["instance"] == "router1:9957"
	}
	if s.short {
		matched = matched[1:]
	}
	return matched, nil
}

func (s *whSink) Calls() []whCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]whCall(nil), s.calls...)
}

func whFixture(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "webhook", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func whTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

// whLinkDown is an alert of the LinkwatchLinkDown rule as the fixtures have it.
func whLinkDown(t *testing.T, status, device, instance, startsAt, endsAt, fp string) Alert {
	return Alert{
		Status: status,
		Labels: map[string]string{
			"alertname": "LinkwatchLinkDown", "device": device, "instance": instance,
			"job": "linkwatch", "severity": "critical",
		},
		StartsAt:    whTime(t, startsAt),
		EndsAt:      whTime(t, endsAt),
		Fingerprint: fp,
	}
}

const whToken = "s3cret-t0ken"

func whOpts() WebhookOptions {
	return WebhookOptions{BearerToken: func() []byte { return []byte(whToken) }}
}

// whPost builds a webhook request as Alertmanager sends it.
func whPost(body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/webhook", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("User-Agent", "Alertmanager/0.34.0")
	r.Header.Set("Authorization", "Bearer "+whToken)
	return r
}

func whServe(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestWebhookFixtures(t *testing.T) {
	t.Parallel()
	const zero = "0001-01-01T00:00:00Z"
	tests := []struct {
		file     string
		wantCall whCall
		wantBody string
	}{
		{
			file: "firing.json",
			wantCall: whCall{
				GroupKey: `{}/{severity="critical"}:{alertname="LinkwatchLinkDown", instance="router1:9957"}`,
				Alerts: []Alert{
					whLinkDown(t, "firing", "eth0", "router1:9957", "2026-03-14T09:26:53.589Z", zero, "014007e604c3e357"),
				},
			},
			wantBody: `{"status":"ok","alerts":1,"matched":1}`,
		},
		{
			file: "resolved.json",
			wantCall: whCall{
				GroupKey: `{}/{severity="critical"}:{alertname="LinkwatchLinkDown", instance="router1:9957"}`,
				Alerts: []Alert{
					whLinkDown(t, "resolved", "eth0", "router1:9957", "2026-03-14T09:26:53.589Z", "2026-03-14T09:41:23.589Z", "014007e604c3e357"),
				},
			},
			wantBody: `{"status":"ok","alerts":1,"matched":1}`,
		},
		{
			file: "group.json",
			wantCall: whCall{
				GroupKey: `{}/{severity="critical"}:{alertname="LinkwatchLinkDown"}`,
				Alerts: []Alert{
					whLinkDown(t, "firing", "eth0", "router1:9957", "2026-03-14T09:26:53.589Z", zero, "014007e604c3e357"),
					whLinkDown(t, "resolved", "eth1", "router1:9957", "2026-03-14T08:02:11.004917362Z", "2026-03-14T09:12:41.004917362Z", "36476e4eb39d1776"),
					whLinkDown(t, "firing", "eth0", "router2:9957", "2026-03-14T09:27:08.112Z", zero, "8ce15bdd7262b53a"),
					whLinkDown(t, "firing", "wwan0", "router1:9957", "2026-03-14T09:30:00Z", zero, "fc55aaea37945681"),
				},
			},
			wantBody: `{"status":"ok","alerts":4,"matched":3}`,
		},
		{
			file: "other-node.json",
			wantCall: whCall{
				GroupKey: `{}/{severity="critical"}:{alertname="LinkwatchLinkDown", instance="router2:9957"}`,
				Alerts: []Alert{
					whLinkDown(t, "firing", "eth0", "router2:9957", "2026-03-14T09:27:08.112Z", zero, "8ce15bdd7262b53a"),
				},
			},
			wantBody: `{"status":"ok","alerts":1,"matched":0}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			sink := &whSink{}
			h := NewWebhookHandler(sink, whOpts())
			w := whServe(h, whPost(whFixture(t, tt.file)))
			if w.Code != http.StatusOK {
				t.Fatalf("status %d, want 200; body %q", w.Code, w.Body)
			}
			if got, want := w.Header().Get("Content-Type"), "application/json"; got != want {
				t.Errorf("Content-Type %q, want %q", got, want)
			}
			if diff := cmp.Diff(tt.wantBody, strings.TrimSpace(w.Body.String())); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]whCall{tt.wantCall}, sink.Calls()); diff != "" {
				t.Errorf("sink calls (-want +got):\n%s", diff)
			}
			for _, a := range sink.Calls()[0].Alerts {
				if a.Firing() != a.EndsAt.IsZero() {
					t.Errorf("alert %s: firing %v but endsAt %v", a.Fingerprint, a.Firing(), a.EndsAt)
				}
			}
		})
	}
}

// The fixtures carry the fingerprints Alertmanager would compute.
func TestWebhookFixtureFingerprints(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"firing.json", "resolved.json", "group.json", "other-node.json"} {
		var n struct {
			Alerts []struct {
				Labels      model.LabelSet `json:"labels"`
				Fingerprint string         `json:"fingerprint"`
			} `json:"alerts"`
		}
		if err := json.Unmarshal([]byte(whFixture(t, name)), &n); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, a := range n.Alerts {
			if got, want := a.Fingerprint, a.Labels.Fingerprint().String(); got != want {
				t.Errorf("%s: fingerprint %s, want %s for %v", name, got, want, a.Labels)
			}
		}
	}
}

// A valid alert, and notifications built around alerts.
const whOKAlert = `{"status":"firing","labels":{"alertname":"LinkwatchLinkDown","device":"eth0"},` +
	`"startsAt":"2026-03-14T09:26:53.589Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"f"}`

func whNotification(alerts ...string) string {
	return `{"version":"4","groupKey":"g","status":"firing","alerts":[` + strings.Join(alerts, ",") + `]}`
}

func whNested(depth int) string {
	return strings.Repeat("[", depth) + strings.Repeat("]", depth)
}

func TestWebhookRejects(t *testing.T) {
	t.Parallel()
	firing := whFixture(t, "firing.json")
	const limit = 1 << 16
	padded := func(n int) string { return firing + strings.Repeat(" ", n-len(firing)) }
	tests := []struct {
		name       string
		method     string
		body       string
		header     http.Header // replaces the defaults of whPost for these keys
		unknownLen bool        // send without Content-Length
		want       int
		wantReason string
		wantHeader http.Header
	}{
		{name: "empty body", body: "", want: 400, wantReason: "empty body"},
		{name: "bad JSON", body: `{version: "4"}`, want: 400, wantReason: "malformed JSON"},
		{name: "truncated JSON", body: firing[:len(firing)/2], want: 400, wantReason: "malformed JSON"},
		{name: "JSON array", body: "[" + firing + "]", want: 400, wantReason: "not a JSON object"},
		{name: "JSON string", body: `"4"`, want: 400, wantReason: "not a JSON object"},
		{name: "JSON null", body: `null`, want: 400, wantReason: "not a JSON object"},
		{name: "trailing garbage", body: firing + "x", want: 400, wantReason: "after top-level value"},
		{name: "two objects", body: firing + firing, want: 400, wantReason: "after top-level value"},
		{name: "control character in string", body: whNotification(strings.Replace(whOKAlert, `"eth0"`, "\"eth\n0\"", 1)), want: 400, wantReason: "malformed JSON"},
		{name: "version 3", body: strings.Replace(firing, `"version": "4"`, `"version": "3"`, 1), want: 400, wantReason: `unsupported payload version "3"`},
		{name: "missing version", body: strings.Replace(firing, `"version": "4",`, "", 1), want: 400, wantReason: "missing version"},
		{name: "version number", body: strings.Replace(firing, `"version": "4"`, `"version": 4`, 1), want: 400, wantReason: "version must be"},
		{name: "huge version", body: strings.Replace(firing, `"version": "4"`, `"version": "`+strings.Repeat("9", 3000)+`"`, 1), want: 400, wantReason: `unsupported payload version "999`},
		{name: "groupKey number", body: strings.Replace(firing, `"groupKey": "{}`, `"groupKey": 7, "x": "{}`, 1), want: 400, wantReason: "groupKey must be a string"},
		{name: "missing alerts", body: `{"version":"4","groupKey":"g"}`, want: 400, wantReason: "missing alerts"},
		{name: "alerts object", body: `{"version":"4","groupKey":"g","alerts":{"0":` + whOKAlert + `}}`, want: 400, wantReason: "alerts must be an array"},
		{name: "null alert", body: whNotification(whOKAlert, "null"), want: 400, wantReason: "alert 1: not a JSON object"},
		{name: "alert is a string", body: whNotification(`"firing"`), want: 400, wantReason: "alert 0: not a JSON object"},
		{name: "status pending", body: whNotification(whOKAlert, strings.Replace(whOKAlert, `"firing"`, `"pending"`, 1)), want: 400, wantReason: `alert 1: status "pending"`},
		{name: "status missing", body: whNotification(strings.Replace(whOKAlert, `"status":"firing",`, "", 1)), want: 400, wantReason: `status ""`},
		{name: "status uppercase", body: whNotification(strings.Replace(whOKAlert, `"firing"`, `"FIRING"`, 1)), want: 400, wantReason: `status "FIRING"`},
		{name: "labels array", body: whNotification(strings.Replace(whOKAlert, `{"alertname":"LinkwatchLinkDown","device":"eth0"}`, `["alertname","LinkwatchLinkDown"]`, 1)), want: 400, wantReason: "labels must be an object of strings"},
		{name: "label value number", body: whNotification(strings.Replace(whOKAlert, `"eth0"`, `0`, 1)), want: 400, wantReason: "labels must be an object of strings"},
		{name: "label value object", body: whNotification(strings.Replace(whOKAlert, `"eth0"`, `{"a":"b"}`, 1)), want: 400, wantReason: "labels must be an object of strings"},
		{name: "startsAt not a time", body: whNotification(strings.Replace(whOKAlert, `"2026-03-14T09:26:53.589Z"`, `"yesterday"`, 1)), want: 400, wantReason: "alert 0: startsAt is not an RFC 3339 time"},
		{name: "startsAt number", body: whNotification(strings.Replace(whOKAlert, `"2026-03-14T09:26:53.589Z"`, `1773480413`, 1)), want: 400, wantReason: "startsAt is not an RFC 3339 time"},
		{name: "endsAt without zone", body: whNotification(strings.Replace(whOKAlert, `"0001-01-01T00:00:00Z"`, `"2026-03-14 09:41:23"`, 1)), want: 400, wantReason: "endsAt is not an RFC 3339 time"},
		{name: "fingerprint number", body: whNotification(strings.Replace(whOKAlert, `"fingerprint":"f"`, `"fingerprint":14`, 1)), want: 400, wantReason: "fingerprint must be a string"},
		{name: "nesting beyond 10000", body: `{"version":"4","alerts":[],"x":` + whNested(10000) + `}`, want: 400, wantReason: "exceeded max depth"},
		{name: "text/plain", body: firing, header: http.Header{"Content-Type": {"text/plain;charset=UTF-8"}}, want: 400, wantReason: "is not application/json"},
		{name: "form", body: "version=4", header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, want: 400, wantReason: "is not application/json"},
		{name: "unparsable content type", body: firing, header: http.Header{"Content-Type": {"application/json/x"}}, want: 400, wantReason: "is not application/json"},
		{name: "over limit with Content-Length", body: padded(limit + 1), want: 413, wantReason: "exceeds the limit of 65536"},
		{name: "over limit chunked", body: padded(limit + 1), unknownLen: true, want: 413, wantReason: "exceeds the limit of 65536"},
		{name: "far over limit chunked", body: padded(16 * limit), unknownLen: true, want: 413},
		{name: "GET", method: http.MethodGet, want: 405, wantHeader: http.Header{"Allow": {"POST"}}},
		{name: "PUT", method: http.MethodPut, body: firing, want: 405, wantHeader: http.Header{"Allow": {"POST"}}},
		{name: "DELETE", method: http.MethodDelete, want: 405, wantHeader: http.Header{"Allow": {"POST"}}},
		{name: "HEAD", method: http.MethodHead, want: 405, wantHeader: http.Header{"Allow": {"POST"}}},
		{name: "missing bearer token", body: firing, header: http.Header{"Authorization": nil}, want: 401, wantReason: "missing bearer token"},
		{name: "wrong bearer token", body: firing, header: http.Header{"Authorization": {"Bearer s3cret-t0kem"}}, want: 401, wantReason: "wrong bearer token"},
		{name: "short bearer token", body: firing, header: http.Header{"Authorization": {"Bearer s3cret"}}, want: 401, wantReason: "wrong bearer token"},
		{name: "long bearer token", body: firing, header: http.Header{"Authorization": {"Bearer " + whToken + "x"}}, want: 401, wantReason: "wrong bearer token"},
		{name: "empty bearer token", body: firing, header: http.Header{"Authorization": {"Bearer "}}, want: 401, wantReason: "missing bearer token"},
		{name: "scheme only", body: firing, header: http.Header{"Authorization": {"Bearer"}}, want: 401, wantReason: "missing bearer token"},
		{name: "no space after scheme", body: firing, header: http.Header{"Authorization": {"Bearer" + whToken}}, want: 401},
		{name: "basic auth", body: firing, header: http.Header{"Authorization": {"Basic YWxlcnRtYW5hZ2VyOnMzY3JldC10MGtlbg=="}}, want: 401, wantReason: "missing bearer token"},
		{name: "token as basic credentials", body: firing, header: http.Header{"Authorization": {"Basic " + whToken}}, want: 401},
		{name: "no token and bad JSON", body: "{", header: http.Header{"Authorization": nil}, want: 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sink := &whSink{}
			o := whOpts()
			o.MaxBodyBytes = limit
			h := NewWebhookHandler(sink, o)
			r := whPost(tt.body)
			if tt.method != "" {
				r.Method = tt.method
			}
			for k, v := range tt.header {
				r.Header[k] = v
			}
			if tt.unknownLen {
				r.ContentLength = -1
				r.Body = io.NopCloser(strings.NewReader(tt.body))
			}
			w := whServe(h, r)
			if w.Code != tt.want {
				t.Errorf("status %d, want %d; body %q", w.Code, tt.want, w.Body)
			}
			body := w.Body.String()
			if !strings.Contains(body, tt.wantReason) {
				t.Errorf("body %q does not contain %q", body, tt.wantReason)
			}
			if len(body) > 300 {
				t.Errorf("body of %d bytes, want a short reason", len(body))
			}
			if got := w.Header().Get("Content-Type"); got != "text/plain; charset=utf-8" {
				t.Errorf("Content-Type %q, want text/plain", got)
			}
			for k := range tt.wantHeader {
				if diff := cmp.Diff(tt.wantHeader[k], w.Header()[k]); diff != "" {
					t.Errorf("header %s (-want +got):\n%s", k, diff)
				}
			}
			if tt.want == 401 {
				if got, want := w.Header().Get("WWW-Authenticate"), `Bearer realm="linkwatch"`; got != want {
					t.Errorf("WWW-Authenticate %q, want %q", got, want)
				}
			}
			if calls := sink.Calls(); len(calls) != 0 {
				t.Errorf("sink called: %+v", calls)
			}
			if got := testutil.ToFloat64(h.requests.WithLabelValues(strconv.Itoa(tt.want))); got != 1 {
				t.Errorf("requests_total{code=%q} = %v, want 1", strconv.Itoa(tt.want), got)
			}
		})
	}
	if len(tests) < 20 {
		t.Errorf("only %d hostile requests", len(tests))
	}
}

// Odd but acceptable requests reach the sink with what they said.
func TestWebhookAccepts(t *testing.T) {
	t.Parallel()
	firing := whFixture(t, "firing.json")
	firingAlert := whLinkDown(t, "firing", "eth0", "router1:9957", "2026-03-14T09:26:53.589Z", "0001-01-01T00:00:00Z", "014007e604c3e357")
	const groupKey = `{}/{severity="critical"}:{alertname="LinkwatchLinkDown", instance="router1:9957"}`
	tests := []struct {
		name   string
		opts   WebhookOptions
		body   string
		header http.Header
		want   whCall
	}{
		{
			name: "odd label values verbatim",
			body: whNotification(`{"status":"firing","labels":{"alertname":"LinkwatchLinkDown",` +
				`"quotes":"say \"down\" and 'up'","lines":"a\nb\r\nc\t","unicode":"Zürich ✓ 🚀 \u2028 \u0000",` +
				`"esc":"\\\"}{\u003c/","key with \"quote\"=":"","":"empty name"},` +
				`"startsAt":"2026-03-14T11:26:53.589+02:00","endsAt":null,"fingerprint":"f"}`),
			want: whCall{GroupKey: "g", Alerts: []Alert{{
				Status: "firing",
				Labels: map[string]string{
					"alertname": "LinkwatchLinkDown", "quotes": `say "down" and 'up'`, "lines": "a\nb\r\nc\t",
					"unicode": "Zürich ✓ 🚀 \u2028 \x00", "esc": `\"}{</`, `key with "quote"=`: "", "": "empty name",
				},
				StartsAt:    whTime(t, "2026-03-14T09:26:53.589Z"),
				Fingerprint: "f",
			}}},
		},
		{
			// encoding/json replaces each invalid byte with U+FFFD.
			name: "invalid UTF-8 in a label value",
			body: whNotification("{\"status\":\"resolved\",\"labels\":{\"device\":\"eth\xff\xfe0\",\"k\xc3\":\"v\"}}"),
			want: whCall{GroupKey: "g", Alerts: []Alert{{
				Status: "resolved",
				Labels: map[string]string{"device": "eth\uFFFD\uFFFD0", "k\uFFFD": "v"},
			}}},
		},
		{
			name: "deeply nested unknown field",
			body: strings.Replace(firing, `"truncatedAlerts": 0`, `"truncatedAlerts": 0, "x": `+whNested(9999), 1),
			want: whCall{GroupKey: groupKey, Alerts: []Alert{firingAlert}},
		},
		{
			name: "huge unknown field",
			body: strings.Replace(firing, `"truncatedAlerts": 0`, `"truncatedAlerts": 0, "x": "`+strings.Repeat("x", 900_000)+`"`, 1),
			want: whCall{GroupKey: groupKey, Alerts: []Alert{firingAlert}},
		},
		{
			name:   "missing content type",
			body:   firing,
			header: http.Header{"Content-Type": nil},
			want:   whCall{GroupKey: groupKey, Alerts: []Alert{firingAlert}},
		},
		{
			name:   "content type with charset",
			body:   firing,
			header: http.Header{"Content-Type": {"Application/JSON; charset=utf-8"}},
			want:   whCall{GroupKey: groupKey, Alerts: []Alert{firingAlert}},
		},
		{
			name:   "lower-case scheme and extra space",
			body:   firing,
			header: http.Header{"Authorization": {"bearer  " + whToken}},
			want:   whCall{GroupKey: groupKey, Alerts: []Alert{firingAlert}},
		},
		{
			name:   "no token configured",
			opts:   WebhookOptions{BearerToken: func() []byte { return nil }},
			body:   firing,
			header: http.Header{"Authorization": {"Basic eDp5"}},
			want:   whCall{GroupKey: groupKey, Alerts: []Alert{firingAlert}},
		},
		{
			name: "body exactly at the limit",
			opts: WebhookOptions{MaxBodyBytes: int64(len(firing) + 10)},
			body: firing + strings.Repeat("\n", 10),
			want: whCall{GroupKey: groupKey, Alerts: []Alert{firingAlert}},
		},
		{
			name: "empty alerts, no groupKey",
			body: `{"version":"4","alerts":[]}`,
			want: whCall{Alerts: []Alert{}},
		},
		{
			name: "case-insensitive field names",
			body: `{"Version":"4","GROUPKEY":"g","Alerts":[{"Status":"resolved","FingerPrint":"f"}]}`,
			want: whCall{GroupKey: "g", Alerts: []Alert{{Status: "resolved", Fingerprint: "f"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sink := &whSink{}
			o := tt.opts
			if o.BearerToken == nil {
				o.BearerToken = whOpts().BearerToken
			}
			h := NewWebhookHandler(sink, o)
			r := whPost(tt.body)
			for k, v := range tt.header {
				r.Header[k] = v
			}
			w := whServe(h, r)
			if w.Code != http.StatusOK {
				t.Fatalf("status %d, want 200; body %q", w.Code, w.Body)
			}
			if diff := cmp.Diff([]whCall{tt.want}, sink.Calls()); diff != "" {
				t.Errorf("sink calls (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWebhookDefaultLimit(t *testing.T) {
	t.Parallel()
	sink := &whSink{}
	h := NewWebhookHandler(sink, WebhookOptions{})
	body := whFixture(t, "firing.json")
	body += strings.Repeat(" ", DefaultWebhookMaxBodyBytes-len(body))
	if w := whServe(h, whPost(body)); w.Code != http.StatusOK {
		t.Errorf("1 MiB body: status %d, want 200; body %q", w.Code, w.Body)
	}
	for _, unknownLen := range []bool{false, true} {
		r := whPost(body + " ")
		if unknownLen {
			r.ContentLength = -1
		}
		if w := whServe(h, r); w.Code != http.StatusRequestEntityTooLarge {
			t.Errorf("1 MiB + 1 body (unknown length %v): status %d, want 413; body %q", unknownLen, w.Code, w.Body)
		}
	}
	if n := len(sink.Calls()); n != 1 {
		t.Errorf("sink called %d times, want 1", n)
	}
}

// TestWebhookMaxInFlight holds MaxInFlight requests in the sink and checks
// that the next one is refused with 503 before its body is read, that an
// unauthenticated one is still refused with 401, and that a slot frees up
// when a request ends.
func TestWebhookMaxInFlight(t *testing.T) {
	t.Parallel()
	block := make(chan struct{})
	sink := &whSink{block: block}
	o := whOpts()
	o.MaxInFlight, o.Timeout = 2, time.Minute
	h := NewWebhookHandler(sink, o)
	body := whNotification(whOKAlert)
	codes := make(chan int, o.MaxInFlight)
	for range o.MaxInFlight {
		go func() { codes <- whServe(h, whPost(body)).Code }()
	}
	for deadline := time.Now().Add(10 * time.Second); len(sink.Calls()) < o.MaxInFlight; {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests reached the sink, want %d", len(sink.Calls()), o.MaxInFlight)
		}
		time.Sleep(time.Millisecond)
	}
	unread := &whCountingReader{r: strings.NewReader(body)}
	r := whPost("")
	r.Body, r.ContentLength = io.NopCloser(unread), int64(len(body))
	w := whServe(h, r)
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "2 webhook requests already in progress") {
		t.Errorf("request over the limit: %d %q, want 503 naming the limit", w.Code, w.Body)
	}
	if unread.n != 0 {
		t.Errorf("%d bytes of the refused request's body were read, want none", unread.n)
	}
	noToken := whPost(body)
	noToken.Header.Del("Authorization")
	if w := whServe(h, noToken); w.Code != http.StatusUnauthorized {
		t.Errorf("unauthenticated request over the limit: %d, want 401", w.Code)
	}
	close(block)
	for range o.MaxInFlight {
		if c := <-codes; c != http.StatusOK {
			t.Errorf("held request: status %d, want 200", c)
		}
	}
	if w := whServe(h, whPost(body)); w.Code != http.StatusOK {
		t.Errorf("request after the others ended: %d %q, want 200", w.Code, w.Body)
	}
	if n := len(sink.Calls()); n != o.MaxInFlight+1 {
		t.Errorf("sink called %d times, want %d", n, o.MaxInFlight+1)
	}
	if got := testutil.ToFloat64(h.requests.WithLabelValues("503")); got != 1 {
		t.Errorf("requests_total{code=\"503\"} = %v, want 1", got)
	}
}

// whCountingReader counts the bytes read from r.
type whCountingReader struct {
	r io.Reader
	n int
}

func (c *whCountingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestWebhookSinkErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		sink       *whSink
		want       int
		wantReason string
	}{
		{name: "temporary", sink: &whSink{err: fmt.Errorf("netlink: %w", ErrTemporary)}, want: 503, wantReason: "temporary failure"},
		{name: "timeout honoured", sink: &whSink{delay: time.Minute}, want: 503, wantReason: "deadline exceeded"},
		{name: "timeout ignored", sink: &whSink{block: make(chan struct{})}, want: 503, wantReason: "did not answer within 20ms"},
		{name: "deadline error", sink: &whSink{err: context.DeadlineExceeded}, want: 503},
		{name: "permanent", sink: &whSink{err: errors.New("policy table corrupt")}, want: 500, wantReason: "internal error: policy table corrupt"},
		{name: "panic", sink: &whSink{panic: true}, want: 500, wantReason: "panicked: boom"},
		{name: "short result", sink: &whSink{short: true}, want: 500, wantReason: "0 results for 1 alerts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.sink.block != nil {
				defer close(tt.sink.block)
			}
			o := whOpts()
			o.Timeout = 20 * time.Millisecond
			h := NewWebhookHandler(tt.sink, o)
			start := time.Now()
			w := whServe(h, whPost(whFixture(t, "firing.json")))
			if elapsed := time.Since(start); elapsed > 2*time.Second {
				t.Errorf("answered after %v", elapsed)
			}
			if w.Code != tt.want {
				t.Errorf("status %d, want %d; body %q", w.Code, tt.want, w.Body)
			}
			if !strings.Contains(w.Body.String(), tt.wantReason) {
				t.Errorf("body %q does not contain %q", w.Body, tt.wantReason)
			}
			if n := len(tt.sink.Calls()); n != 1 {
				t.Errorf("sink called %d times, want 1", n)
			}
			if got := testutil.ToFloat64(h.requests.WithLabelValues(strconv.Itoa(tt.want))); got != 1 {
				t.Errorf("requests_total{code=%q} = %v, want 1", strconv.Itoa(tt.want), got)
			}
			for _, status := range []string{"firing", "resolved"} {
				for _, matched := range []string{"true", "false"} {
					if got := testutil.ToFloat64(h.alerts.WithLabelValues(status, matched)); got != 0 {
						t.Errorf("alerts_total{%s,%s} = %v, want 0 after a failure", status, matched, got)
					}
				}
			}
		})
	}
}

// The token func is consulted on every request, so a rotated token takes
// effect at once.
func TestWebhookTokenRotation(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	token := "old"
	h := NewWebhookHandler(&whSink{}, WebhookOptions{BearerToken: func() []byte {
		mu.Lock()
		defer mu.Unlock()
		return []byte(token)
	}})
	req := func(tok string) int {
		r := whPost(whFixture(t, "firing.json"))
		r.Header.Set("Authorization", "Bearer "+tok)
		return whServe(h, r).Code
	}
	if got := req("old"); got != 200 {
		t.Errorf("old token: %d, want 200", got)
	}
	mu.Lock()
	token = "new"
	mu.Unlock()
	if got := req("old"); got != 401 {
		t.Errorf("old token after rotation: %d, want 401", got)
	}
	if got := req("new"); got != 200 {
		t.Errorf("new token: %d, want 200", got)
	}
}

func TestWebhookMetrics(t *testing.T) {
	t.Parallel()
	sink := &whSink{}
	h := NewWebhookHandler(sink, whOpts())

	const initial = `
# HELP linkwatch_webhook_alerts_total Alerts of accepted webhook notifications, by alert status and whether they matched a policy.
# TYPE linkwatch_webhook_alerts_total counter
linkwatch_webhook_alerts_total{matched="false",status="firing"} 0
linkwatch_webhook_alerts_total{matched="false",status="resolved"} 0
linkwatch_webhook_alerts_total{matched="true",status="firing"} 0
linkwatch_webhook_alerts_total{matched="true",status="resolved"} 0
# HELP linkwatch_webhook_requests_total Alertmanager webhook requests, by the HTTP status code answered.
# TYPE linkwatch_webhook_requests_total counter
linkwatch_webhook_requests_total{code="200"} 0
linkwatch_webhook_requests_total{code="400"} 0
linkwatch_webhook_requests_total{code="401"} 0
linkwatch_webhook_requests_total{code="405"} 0
linkwatch_webhook_requests_total{code="413"} 0
linkwatch_webhook_requests_total{code="500"} 0
linkwatch_webhook_requests_total{code="503"} 0
`
	if err := testutil.CollectAndCompare(h, strings.NewReader(initial)); err != nil {
		t.Errorf("initial metrics: %v", err)
	}
	problems, err := testutil.CollectAndLint(h)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}

	steps := []struct {
		req  func() *http.Request
		err  error
		want int
	}{
		{req: func() *http.Request { return whPost(whFixture(t, "firing.json")) }, want: 200},
		{req: func() *http.Request { return whPost(whFixture(t, "firing.json")) }, want: 200}, // repeat
		{req: func() *http.Request { return whPost(whFixture(t, "resolved.json")) }, want: 200},
		{req: func() *http.Request { return whPost(whFixture(t, "group.json")) }, want: 200},
		{req: func() *http.Request { return whPost(whFixture(t, "other-node.json")) }, want: 200},
		{req: func() *http.Request { return httptest.NewRequest(http.MethodGet, "/webhook", nil) }, want: 405},
		{req: func() *http.Request {
			r := whPost(whFixture(t, "firing.json"))
			r.Header.Del("Authorization")
			return r
		}, want: 401},
		{req: func() *http.Request { return whPost(`{"version":`) }, want: 400},
		{req: func() *http.Request { return whPost(whFixture(t, "firing.json")) }, err: ErrTemporary, want: 503},
	}
	for i, s := range steps {
		sink.err = s.err
		if w := whServe(h, s.req()); w.Code != s.want {
			t.Errorf("step %d: status %d, want %d; body %q", i, w.Code, s.want, w.Body)
		}
	}
	if n := len(sink.Calls()); n != 6 {
		t.Errorf("sink called %d times, want 6", n)
	}

	const after = `
# HELP linkwatch_webhook_alerts_total Alerts of accepted webhook notifications, by alert status and whether they matched a policy.
# TYPE linkwatch_webhook_alerts_total counter
linkwatch_webhook_alerts_total{matched="false",status="firing"} 2
linkwatch_webhook_alerts_total{matched="false",status="resolved"} 0
linkwatch_webhook_alerts_total{matched="true",status="firing"} 4
linkwatch_webhook_alerts_total{matched="true",status="resolved"} 2
# HELP linkwatch_webhook_requests_total Alertmanager webhook requests, by the HTTP status code answered.
# TYPE linkwatch_webhook_requests_total counter
linkwatch_webhook_requests_total{code="200"} 5
linkwatch_webhook_requests_total{code="400"} 1
linkwatch_webhook_requests_total{code="401"} 1
linkwatch_webhook_requests_total{code="405"} 1
linkwatch_webhook_requests_total{code="413"} 0
linkwatch_webhook_requests_total{code="500"} 0
linkwatch_webhook_requests_total{code="503"} 1
`
	if err := testutil.CollectAndCompare(h, strings.NewReader(after)); err != nil {
		t.Errorf("metrics after the sequence: %v", err)
	}
	if got := testutil.ToFloat64(h.alerts.WithLabelValues("firing", "true")); got != 4 {
		t.Errorf("alerts_total{firing,true} = %v, want 4", got)
	}
}

// whLogRecorder is a slog.Handler that keeps the records.
type whLogRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *whLogRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *whLogRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *whLogRecorder) WithGroup(string) slog.Handler            { return r }
func (r *whLogRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
	return nil
}

func TestWebhookLogging(t *testing.T) {
	t.Parallel()
	type line struct {
		Level  slog.Level
		Remote string
		Code   int64
	}
	tests := []struct {
		name string
		sink *whSink
		body string
		want line
	}{
		{name: "client error", sink: &whSink{}, body: "{", want: line{slog.LevelDebug, "192.0.2.1:1234", 400}},
		{name: "temporary", sink: &whSink{err: ErrTemporary}, body: whFixture(t, "firing.json"), want: line{slog.LevelWarn, "192.0.2.1:1234", 503}},
		{name: "internal", sink: &whSink{err: errors.New("bug")}, body: whFixture(t, "firing.json"), want: line{slog.LevelWarn, "192.0.2.1:1234", 500}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &whLogRecorder{}
			o := whOpts()
			o.Logger = slog.New(rec)
			h := NewWebhookHandler(tt.sink, o)
			whServe(h, whPost(tt.body))
			var got []line
			for _, r := range rec.recs {
				l := line{Level: r.Level}
				r.Attrs(func(a slog.Attr) bool {
					switch a.Key {
					case "remote":
						l.Remote = a.Value.String()
					case "code":
						l.Code = a.Value.Int64()
					}
					return true
				})
				got = append(got, l)
			}
			if diff := cmp.Diff([]line{tt.want}, got); diff != "" {
				t.Errorf("log lines (-want +got):\n%s", diff)
			}
		})
	}
}

// Through a real server and client, as Alertmanager connects.
func TestWebhookServer(t *testing.T) {
	t.Parallel()
	sink := &whSink{}
	o := whOpts()
	o.MaxBodyBytes = 4096
	srv := httptest.NewServer(NewWebhookHandler(sink, o))
	defer srv.Close()
	firing := whFixture(t, "firing.json")

	do := func(body io.Reader) (int, string) {
		t.Helper()
		r, err := http.NewRequest(http.MethodPost, srv.URL+"/webhook", body)
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Authorization", "Bearer "+whToken)
		resp, err := srv.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	if code, body := do(strings.NewReader(firing)); code != 200 || body != "{\"status\":\"ok\",\"alerts\":1,\"matched\":1}\n" {
		t.Errorf("firing: %d %q", code, body)
	}
	big := firing + strings.Repeat(" ", 8192)
	if code, _ := do(strings.NewReader(big)); code != 413 {
		t.Errorf("over limit with Content-Length: %d, want 413", code)
	}
	// A reader of unknown length is sent chunked.
	if code, _ := do(io.MultiReader(strings.NewReader(big))); code != 413 {
		t.Errorf("over limit chunked: %d, want 413", code)
	}
	if code, _ := do(io.MultiReader(bytes.NewReader([]byte(firing)))); code != 200 {
		t.Errorf("firing chunked: %d, want 200", code)
	}
	if n := len(sink.Calls()); n != 2 {
		t.Errorf("sink called %d times, want 2", n)
	}
}
