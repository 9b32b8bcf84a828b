package routes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The inputs of FuzzWebhook other than the body are small selectors.
var (
	// fuzzMethods is indexed by method % len.
	fuzzMethods = []string{"POST", "GET", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH", "post"}
	// fuzzLimits is indexed by limit % len; 0 is the default (1 MiB).
	fuzzLimits = []int64{0, 16, 256, 4096, 32768}
	// fuzzCodes are the status codes the handler documents.
	fuzzCodes = []int{200, 400, 401, 405, 413, 500, 503}
)

const fuzzToken = "s3cret-t0ken"

// fuzzSink is an AlertSink whose behaviour FuzzWebhook selects with mode % 8:
// 0-2 answer with the matching rule of whSink, 3 matches every alert, 4 fails
// temporarily, 5 fails permanently, 6 returns one result too few and 7
// panics.
type fuzzSink struct {
	mode uint8

	mu      sync.Mutex
	calls   int
	key     string
	alerts  []Alert
	matched []bool
}

func (s *fuzzSink) Alerts(_ context.Context, groupKey string, alerts []Alert) ([]bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	s.key, s.alerts = groupKey, alerts
	matched := make([]bool, len(alerts))
	for i, a := range alerts {
		matched[i] = a.Labels["alertname"] == "LinkwatchLinkDown" && a.Labels["instance"] == "router1:9957"
	}
	switch s.mode % 8 {
	case 3:
		for i := range matched {
			matched[i] = true
		}
	case 4:
		return nil, fmt.Errorf("route table busy: %w", ErrTemporary)
	case 5:
		return nil, errors.New("policy table corrupt")
	case 6:
		return make([]bool, max(len(alerts)-1, 0)), nil
	case 7:
		panic("fuzz sink panics")
	}
	s.matched = matched
	return matched, nil
}

// fuzzErrReader fails with err once its data is read.
type fuzzErrReader struct{ err error }

func (r fuzzErrReader) Read([]byte) (int, error) { return 0, r.err }

// fuzzHeaderValue returns v as net/http's server would hand it to a handler
// (without surrounding blanks), and false if the server would refuse a
// request that carries it.
func fuzzHeaderValue(v string) (string, bool) {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return "", false
		}
	}
	return strings.Trim(v, " \t"), true
}

// FuzzWebhook serves one request per input to a new WebhookHandler with a
// fake sink and checks the handler's documented contract.
//
// Inputs: method selects from fuzzMethods; contentType and auth are the
// Content-Type and Authorization headers (absent if empty; inputs that
// net/http's server would refuse are skipped); length selects how
// Content-Length relates to the body with length % 4: 0 exact, 1 unknown
// (chunked), 2 more than is sent (the body ends early with
// io.ErrUnexpectedEOF), 3 less than is sent (the server reads only that
// much), each by length/4+1 bytes; limit selects MaxBodyBytes from
// fuzzLimits; sink the fuzzSink mode; noToken configures no bearer token.
func FuzzWebhook(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "webhook", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		body, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(0), "application/json", "Bearer "+fuzzToken, uint8(0), uint8(0), uint8(0), false, body)
	}

	f.Fuzz(func(t *testing.T, method uint8, contentType, auth string, length, limit, sink uint8, noToken bool, body []byte) {
		contentType, ok1 := fuzzHeaderValue(contentType)
		auth, ok2 := fuzzHeaderValue(auth)
		if !ok1 || !ok2 {
			return
		}
		s := &fuzzSink{mode: sink}
		o := WebhookOptions{MaxBodyBytes: fuzzLimits[int(limit)%len(fuzzLimits)]}
		if !noToken {
			o.BearerToken = func() []byte { return []byte(fuzzToken) }
		}
		h := NewWebhookHandler(s, o)
		maxBody := o.MaxBodyBytes
		if maxBody <= 0 {
			maxBody = DefaultWebhookMaxBodyBytes
		}

		// What the server would pass on: the declared length and the body
		// as the handler can read it.
		m := fuzzMethods[int(method)%len(fuzzMethods)]
		sent := body
		declared := int64(len(body))
		var rd io.Reader = bytes.NewReader(body)
		delta := int64(length/4) + 1
		switch length % 4 {
		case 1:
			declared = -1
		case 2:
			declared += delta
			rd = io.MultiReader(rd, fuzzErrReader{io.ErrUnexpectedEOF})
		case 3:
			declared = max(declared-delta, 0)
			sent = body[:declared]
			rd = bytes.NewReader(sent)
		}
		r := httptest.NewRequest(m, "/webhook", nil)
		r.Body = io.NopCloser(rd)
		r.ContentLength = declared
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}

		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		code := w.Code
		resp := w.Body.Bytes()
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("%s %q (Content-Type %q, Authorization %q, Content-Length %d, limit %d, sink %d, token %v): status %d %q: "+format,
				append([]any{m, sent, contentType, auth, declared, maxBody, sink % 8, !noToken, code, resp}, args...)...)
		}

		if !slices.Contains(fuzzCodes, code) {
			fail("undocumented status")
		}
		// Every request is counted once, under its status.
		requests := fuzzCollect(t, h.requests, "code")
		if len(requests) != len(fuzzCodes) {
			fail("requests_total series %v, want one for each of %v", requests, fuzzCodes)
		}
		for _, c := range fuzzCodes {
			want := 0.0
			if c == code {
				want = 1
			}
			if got, ok := requests[strconv.Itoa(c)]; !ok || got != want {
				fail("requests_total{code=%q} = %v, want %v", strconv.Itoa(c), got, want)
			}
		}

		// The sink is called exactly for the outcomes it decides.
		s.mu.Lock()
		calls, alerts, matched, key := s.calls, s.alerts, s.matched, s.key
		s.mu.Unlock()
		if decided := code == 200 || code >= 500; (decided && calls != 1) || (!decided && calls != 0) {
			fail("sink called %d times", calls)
		}

		// Alerts are counted only when the sink accepted them.
		var firing, resolved, matchedN float64
		for _, a := range alerts {
			if a.Status == "firing" {
				firing++
			} else {
				resolved++
			}
		}
		for _, mt := range matched {
			if mt {
				matchedN++
			}
		}
		counts := fuzzCollect(t, h.alerts, "status", "matched")
		if len(counts) != 4 {
			fail("alerts_total series %v, want 4", counts)
		}
		gotFiring := counts["firing,true"] + counts["firing,false"]
		gotResolved := counts["resolved,true"] + counts["resolved,false"]
		gotMatched := counts["firing,true"] + counts["resolved,true"]
		if code != 200 {
			firing, resolved, matchedN = 0, 0, 0
		}
		if gotFiring != firing || gotResolved != resolved || gotMatched != matchedN {
			fail("alerts_total firing %v, resolved %v, matched %v; want %v, %v, %v",
				gotFiring, gotResolved, gotMatched, firing, resolved, matchedN)
		}

		// Precedence: method, then token, then content type and size.
		if m != http.MethodPost {
			if code != 405 || w.Header().Get("Allow") != "POST" {
				fail("want 405 with Allow: POST")
			}
			return
		}
		if !noToken && !strings.HasSuffix(auth, fuzzToken) && code != 401 {
			fail("accepted without the token")
		}
		if (noToken || auth == "Bearer "+fuzzToken) && code == 401 {
			fail("refused the right token")
		}
		if code == 401 && w.Header().Get("WWW-Authenticate") != `Bearer realm="linkwatch"` {
			fail("401 without WWW-Authenticate")
		}
		tooLarge := declared > maxBody || int64(len(sent)) > maxBody
		if code == 413 && !tooLarge {
			fail("413 for a body within the limit")
		}
		if tooLarge && (code == 200 || code >= 500) {
			fail("accepted a body over the limit")
		}
		if length%4 == 2 && code != 401 && code != 413 && code != 400 {
			fail("accepted a body that ended early")
		}

		if code != 200 {
			if ct := w.Header().Get("Content-Type"); ct != "text/plain; charset=utf-8" {
				fail("error response of type %q", ct)
			}
			if len(resp) > webhookMaxReason+len("...\n") || !utf8.Valid(resp) {
				fail("error response of %d bytes, or not UTF-8", len(resp))
			}
			return
		}

		// Accepted: a JSON object, decoded into valid alerts, answered
		// with the counts.
		if trimmed := bytes.TrimLeft(sent, " \t\r\n"); !json.Valid(sent) || len(trimmed) == 0 || trimmed[0] != '{' {
			fail("accepted a body that is not a JSON object")
		}
		if !utf8.ValidString(key) {
			fail("group key %q is not UTF-8", key)
		}
		for i, a := range alerts {
			if a.Status != "firing" && a.Status != "resolved" || !utf8.ValidString(a.Fingerprint) {
				fail("alert %d %+v", i, a)
			}
			for k, v := range a.Labels {
				if !utf8.ValidString(k) || !utf8.ValidString(v) {
					fail("alert %d label %q=%q is not UTF-8", i, k, v)
				}
			}
		}
		var answer struct {
			Status  string `json:"status"`
			Alerts  int    `json:"alerts"`
			Matched int    `json:"matched"`
		}
		if w.Header().Get("Content-Type") != "application/json" || json.Unmarshal(resp, &answer) != nil ||
			answer.Status != "ok" || answer.Alerts != len(alerts) || float64(answer.Matched) != matchedN {
			fail("answer %+v for %d alerts, %v matched", answer, len(alerts), matchedN)
		}
	})
}

// fuzzCollect returns the values of the counters c collects, keyed by the
// values of the labels, joined with commas.
func fuzzCollect(t *testing.T, c prometheus.Collector, labels ...string) map[string]float64 {
	t.Helper()
	ch := make(chan prometheus.Metric)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	vals := make(map[string]float64)
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		var key []string
		for _, name := range labels {
			for _, lp := range pb.GetLabel() {
				if lp.GetName() == name {
					key = append(key, lp.GetValue())
				}
			}
		}
		vals[strings.Join(key, ",")] = pb.GetCounter().GetValue()
	}
	return vals
}
