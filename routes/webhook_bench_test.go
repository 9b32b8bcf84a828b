package routes

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// benchSink matches every alert and returns at once.
type benchSink struct{}

func (benchSink) Alerts(_ context.Context, _ string, alerts []Alert) ([]bool, error) {
	m := make([]bool, len(alerts))
	for i := range m {
		m[i] = true
	}
	return m, nil
}

// BenchmarkWebhook measures the webhook handler on Alertmanager's real
// payloads (the fixtures in testdata/webhook) with a sink that answers at
// once: authentication, decoding, validation, the sink hand-off with its
// timeout, the counters and the JSON reply.
func BenchmarkWebhook(b *testing.B) {
	for _, fixture := range []string{"firing.json", "group.json"} {
		b.Run(strings.TrimSuffix(fixture, ".json"), func(b *testing.B) {
			body := whFixture(b, fixture)
			opts := whOpts()
			// Generous: on a loaded machine the sink's goroutine can wait
			// longer than the default 90 ms to run, and a 503 is not what
			// this measures.
			opts.Timeout = 10 * time.Second
			h := NewWebhookHandler(benchSink{}, opts)
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, whPost(body))
				if w.Code != http.StatusOK {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "requests/s")
		})
	}
}
