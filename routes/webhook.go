package routes

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of WebhookOptions.
const (
	DefaultWebhookMaxBodyBytes = 1 << 20
	DefaultWebhookTimeout      = 90 * time.Millisecond
	DefaultWebhookMaxInFlight  = 8
)

// webhookMaxReason bounds the reason echoed in an error response and its log
// line, so that a hostile value (a version string, a timestamp) is not
// reflected in full.
const webhookMaxReason = 200

// WebhookOptions configure a WebhookHandler.
type WebhookOptions struct {
	// MaxBodyBytes is the largest accepted request body (1 MiB if zero or
	// negative).
	MaxBodyBytes int64
	// BearerToken returns the token that requests must present as
	// "Authorization: Bearer <token>". It is called on every request, so
	// it may return a token reread from a file; the token is compared
	// verbatim (trim a trailing newline when reading a file, as
	// Alertmanager does with credentials_file). A nil func, or one that
	// returns nil or an empty token, disables the check.
	BearerToken func() []byte
	// Logger receives a debug line per request, warn for 5xx (discarded if
	// nil).
	Logger *slog.Logger
	// Timeout is how long to wait for the sink (90 ms if zero or negative).
	Timeout time.Duration
	// MaxInFlight is how many requests may read their body or wait for
	// the sink at once (DefaultWebhookMaxInFlight if zero or negative).
	// Further requests get 503 at once, so that a flood holds at most
	// MaxInFlight bodies of MaxBodyBytes in memory.
	MaxInFlight int
}

// A WebhookHandler is the http.Handler of the Alertmanager webhook: it
// validates a notification (payload version 4), passes its alerts to an
// AlertSink, and answers with a status that follows Alertmanager's retry
// rules: 2xx is done, 4xx is final (not retried), 5xx is retried with
// backoff.
//
//   - 200: the sink applied the notification, including when no alert
//     matched a policy or nothing changed. The body is JSON:
//     {"status":"ok","alerts":N,"matched":M}.
//   - 405 (with "Allow: POST"): a method other than POST.
//   - 401 (with "WWW-Authenticate: Bearer realm=..."): a bearer token is
//     configured and the request lacks it or carries another one. The
//     token is compared in constant time (SHA-256 digests, so the length
//     does not leak either). Basic auth and client certificates are
//     checked before the handler by exporter-toolkit; note that a bearer
//     token and basic auth both use the Authorization header, so only one
//     of them can be used (Alertmanager cannot send both anyway).
//   - 413: a body, or a Content-Length, larger than MaxBodyBytes.
//   - 503: MaxInFlight authorized requests are already being read or
//     applied; the request is refused before its body is read, and
//     Alertmanager retries it.
//   - 400: anything else the handler refuses: a Content-Type that is set
//     and is not JSON (application/json with any parameters, or a
//     "+json" type; a missing Content-Type is accepted, since Alertmanager
//     always sends application/json and refusing text/plain or form types
//     keeps browsers from posting cross-origin without a preflight);
//     malformed JSON, trailing data after it, a body that is not a JSON
//     object; a version other than "4"; a missing or non-array alerts; an
//     alert whose status is not "firing" or "resolved", whose labels are
//     not an object of strings, or whose startsAt/endsAt is not an RFC 3339
//     time. 400 rather than 415 or 422 because Alertmanager treats every
//     4xx alike and the body says why.
//   - 503: the sink failed with an error wrapping ErrTemporary, or did not
//     answer within Timeout (or the client went away): Alertmanager
//     retries. A sink still running at the deadline is left to finish;
//     the retry repeats the same level-triggered notification, which the
//     sink applies idempotently.
//   - 500: any other sink error (Alertmanager retries it too; the
//     distinction is for the metrics and the logs).
//
// Decoding is tolerant: unknown fields (notification_reason, routeLabels,
// truncatedAlerts, annotations, future additions) are ignored whatever
// their content, as long as they are valid JSON nested at most 10000 deep
// (encoding/json's limit; deeper nesting is a 400). A missing or null
// groupKey is the empty group key, missing or null labels an empty label
// set, missing or null times the zero time (an endsAt of
// 0001-01-01T00:00:00Z means "no end", as Alertmanager sends for firing
// alerts). An empty alerts array is passed to the sink. Label names and
// values are passed through verbatim (quotes, newlines, any Unicode);
// bytes that are not valid UTF-8 inside a JSON string are replaced with
// U+FFFD by encoding/json and the request is accepted. Field names match
// case-insensitively and the last of duplicate keys wins, as encoding/json
// does.
//
// Error responses are short plain-text reasons, also logged at debug level
// (warn for 5xx) with the remote address. The handler is a
// prometheus.Collector of its request and alert counters.
type WebhookHandler struct {
	sink    AlertSink
	max     int64
	token   func() []byte
	logger  *slog.Logger
	timeout time.Duration
	slots   chan struct{} // one token per request being read or applied

	requests *prometheus.CounterVec
	alerts   *prometheus.CounterVec
}

var (
	_ http.Handler         = (*WebhookHandler)(nil)
	_ prometheus.Collector = (*WebhookHandler)(nil)
)

// NewWebhookHandler returns a WebhookHandler that passes notifications to
// sink.
func NewWebhookHandler(sink AlertSink, o WebhookOptions) *WebhookHandler {
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultWebhookMaxBodyBytes
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultWebhookTimeout
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultWebhookMaxInFlight
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	h := &WebhookHandler{
		sink: sink, max: o.MaxBodyBytes, token: o.BearerToken, logger: o.Logger, timeout: o.Timeout,
		slots: make(chan struct{}, o.MaxInFlight),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "linkwatch", Subsystem: "webhook", Name: "requests_total",
			Help: "Alertmanager webhook requests, by the HTTP status code answered.",
		}, []string{"code"}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "linkwatch", Subsystem: "webhook", Name: "alerts_total",
			Help: "Alerts of accepted webhook notifications, by alert status and whether they matched a policy.",
		}, []string{"status", "matched"}),
	}
	for _, code := range []int{
		http.StatusOK, http.StatusBadRequest, http.StatusUnauthorized, http.StatusMethodNotAllowed,
		http.StatusRequestEntityTooLarge, http.StatusInternalServerError, http.StatusServiceUnavailable,
	} {
		h.requests.WithLabelValues(strconv.Itoa(code))
	}
	for _, status := range []string{"firing", "resolved"} {
		for _, matched := range []string{"true", "false"} {
			h.alerts.WithLabelValues(status, matched)
		}
	}
	return h
}

// Describe implements prometheus.Collector.
func (h *WebhookHandler) Describe(ch chan<- *prometheus.Desc) {
	h.requests.Describe(ch)
	h.alerts.Describe(ch)
}

// Collect implements prometheus.Collector.
func (h *WebhookHandler) Collect(ch chan<- prometheus.Metric) {
	h.requests.Collect(ch)
	h.alerts.Collect(ch)
}

// ServeHTTP implements http.Handler.
func (h *WebhookHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.fail(w, r, http.StatusMethodNotAllowed, "method "+webhookQuote(r.Method)+" not allowed, use POST")
		return
	}
	if reason := h.checkBearer(r); reason != "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="linkwatch"`)
		h.fail(w, r, http.StatusUnauthorized, reason)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter) {
			mt = ""
		}
		if mt != "application/json" && !strings.HasSuffix(mt, "+json") {
			h.fail(w, r, http.StatusBadRequest, "content type "+webhookQuote(ct)+" is not application/json")
			return
		}
	}
	if r.ContentLength > h.max {
		h.fail(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("body of %d bytes exceeds the limit of %d", r.ContentLength, h.max))
		return
	}
	select {
	case h.slots <- struct{}{}:
		defer func() { <-h.slots }()
	default:
		// Without this, net/http would read up to 256 KiB of the unread
		// body, at the client's pace, before answering.
		w.Header().Set("Connection", "close")
		h.fail(w, r, http.StatusServiceUnavailable, fmt.Sprintf("%d webhook requests already in progress, retry", cap(h.slots)))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.max))
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			h.fail(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("body exceeds the limit of %d bytes", h.max))
			return
		}
		h.fail(w, r, http.StatusBadRequest, "reading body: "+err.Error())
		return
	}
	groupKey, alerts, reason := decodeWebhook(body)
	if reason != "" {
		h.fail(w, r, http.StatusBadRequest, reason)
		return
	}

	matched, err := h.callSink(r.Context(), groupKey, alerts)
	switch {
	case errors.Is(err, ErrTemporary) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		h.fail(w, r, http.StatusServiceUnavailable, "temporary failure, retry: "+err.Error())
		return
	case err != nil:
		h.fail(w, r, http.StatusInternalServerError, "internal error: "+err.Error())
		return
	case len(matched) != len(alerts):
		h.fail(w, r, http.StatusInternalServerError,
			fmt.Sprintf("internal error: sink returned %d results for %d alerts", len(matched), len(alerts)))
		return
	}

	n := 0
	for i, a := range alerts {
		if matched[i] {
			n++
		}
		h.alerts.WithLabelValues(a.Status, strconv.FormatBool(matched[i])).Inc()
	}
	h.requests.WithLabelValues(strconv.Itoa(http.StatusOK)).Inc()
	h.logger.Debug("Webhook notification applied", "remote", r.RemoteAddr, "group_key", groupKey,
		"alerts", len(alerts), "matched", n)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(struct {
		Status  string `json:"status"`
		Alerts  int    `json:"alerts"`
		Matched int    `json:"matched"`
	}{"ok", len(alerts), n})
}

// checkBearer returns why the request's bearer token is refused, or "" if
// it is accepted or none is configured.
func (h *WebhookHandler) checkBearer(r *http.Request) string {
	if h.token == nil {
		return ""
	}
	want := h.token()
	if len(want) == 0 {
		return ""
	}
	auth := r.Header.Get("Authorization")
	scheme, got, _ := strings.Cut(auth, " ")
	got = strings.TrimLeft(got, " ")
	if auth == "" || !strings.EqualFold(scheme, "Bearer") || got == "" {
		return "missing bearer token"
	}
	// Comparing digests takes the same time whatever the lengths.
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256(want)
	if subtle.ConstantTimeCompare(g[:], w[:]) != 1 {
		return "wrong bearer token"
	}
	return ""
}

// callSink passes the alerts to the sink and waits at most the timeout for
// its answer. A sink that overruns is left running; its result is dropped.
func (h *WebhookHandler) callSink(parent context.Context, groupKey string, alerts []Alert) ([]bool, error) {
	ctx, cancel := context.WithTimeout(parent, h.timeout)
	defer cancel()
	type result struct {
		matched []bool
		err     error
	}
	done := make(chan result, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- result{err: fmt.Errorf("alert sink panicked: %v", p)}
			}
		}()
		m, err := h.sink.Alerts(ctx, groupKey, alerts)
		done <- result{m, err}
	}()
	select {
	case res := <-done:
		return res.matched, res.err
	case <-ctx.Done():
		select {
		case res := <-done: // finished just in time
			return res.matched, res.err
		default:
			return nil, fmt.Errorf("alert sink did not answer within %v: %w", h.timeout, ctx.Err())
		}
	}
}

// fail answers with code and a plain-text reason, logs and counts it.
func (h *WebhookHandler) fail(w http.ResponseWriter, r *http.Request, code int, reason string) {
	reason = webhookTruncate(reason, webhookMaxReason)
	h.requests.WithLabelValues(strconv.Itoa(code)).Inc()
	level := slog.LevelDebug
	if code >= 500 {
		level = slog.LevelWarn
	}
	h.logger.Log(r.Context(), level, "Webhook request refused", "remote", r.RemoteAddr, "code", code, "reason", reason)
	http.Error(w, reason, code)
}

// The wire format of a notification, reduced to what we read. Fields are
// kept raw so that each can be checked with its own error message; unknown
// fields are skipped by encoding/json.
type webhookWire struct {
	Version  json.RawMessage `json:"version"`
	GroupKey json.RawMessage `json:"groupKey"`
	Alerts   json.RawMessage `json:"alerts"`
}

type webhookWireAlert struct {
	Status      json.RawMessage `json:"status"`
	Labels      json.RawMessage `json:"labels"`
	StartsAt    json.RawMessage `json:"startsAt"`
	EndsAt      json.RawMessage `json:"endsAt"`
	Fingerprint json.RawMessage `json:"fingerprint"`
}

// decodeWebhook parses and validates a webhook body. reason is empty
// on success and says what is wrong otherwise.
func decodeWebhook(body []byte) (groupKey string, alerts []Alert, reason string) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return "", nil, "empty body"
	}
	if trimmed[0] != '{' {
		return "", nil, "payload is not a JSON object"
	}
	var n webhookWire
	if err := json.Unmarshal(body, &n); err != nil {
		return "", nil, "malformed JSON: " + err.Error()
	}
	if webhookNull(n.Version) {
		return "", nil, `missing version, want "4"`
	}
	var version string
	if json.Unmarshal(n.Version, &version) != nil {
		return "", nil, `version must be the string "4"`
	}
	if version != "4" {
		return "", nil, "unsupported payload version " + webhookQuote(version) + `, want "4"`
	}
	if !webhookNull(n.GroupKey) && json.Unmarshal(n.GroupKey, &groupKey) != nil {
		return "", nil, "groupKey must be a string"
	}
	if webhookNull(n.Alerts) {
		return "", nil, "missing alerts"
	}
	var raw []json.RawMessage
	if json.Unmarshal(n.Alerts, &raw) != nil {
		return "", nil, "alerts must be an array"
	}
	alerts = make([]Alert, len(raw))
	for i, ra := range raw {
		a, reason := decodeWebhookAlert(ra)
		if reason != "" {
			return "", nil, fmt.Sprintf("alert %d: %s", i, reason)
		}
		alerts[i] = a
	}
	return groupKey, alerts, ""
}

func decodeWebhookAlert(raw json.RawMessage) (a Alert, reason string) {
	var w webhookWireAlert
	if webhookNull(raw) || json.Unmarshal(raw, &w) != nil {
		return a, "not a JSON object"
	}
	if !webhookNull(w.Status) && json.Unmarshal(w.Status, &a.Status) != nil {
		return a, "status must be a string"
	}
	if a.Status != "firing" && a.Status != "resolved" {
		return a, "status " + webhookQuote(a.Status) + ` is neither "firing" nor "resolved"`
	}
	if !webhookNull(w.Labels) && json.Unmarshal(w.Labels, &a.Labels) != nil {
		return a, "labels must be an object of strings"
	}
	if !webhookNull(w.StartsAt) && json.Unmarshal(w.StartsAt, &a.StartsAt) != nil {
		return a, "startsAt is not an RFC 3339 time"
	}
	if !webhookNull(w.EndsAt) && json.Unmarshal(w.EndsAt, &a.EndsAt) != nil {
		return a, "endsAt is not an RFC 3339 time"
	}
	if !webhookNull(w.Fingerprint) && json.Unmarshal(w.Fingerprint, &a.Fingerprint) != nil {
		return a, "fingerprint must be a string"
	}
	return a, ""
}

// webhookNull reports whether a raw field is missing or null.
func webhookNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// webhookQuote quotes s for an error message, shortened to a few dozen bytes.
func webhookQuote(s string) string {
	return strconv.Quote(webhookTruncate(s, 64))
}

// webhookTruncate shortens s to at most n bytes without splitting a UTF-8
// sequence, marking the cut with "...".
func webhookTruncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for i := 0; i < utf8.UTFMax && n > 0 && !utf8.RuneStart(s[n]); i++ {
		n--
	}
	return s[:n] + "..."
}
