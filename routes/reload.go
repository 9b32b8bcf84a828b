package routes

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	reloadOKDesc = prometheus.NewDesc("linkwatch_config_last_reload_successful",
		"Whether the last load of the policy file succeeded (1) or failed (0).", nil, nil)
	reloadTimeDesc = prometheus.NewDesc("linkwatch_config_last_reload_success_timestamp_seconds",
		"Unix time of the last successful load of the policy file.", nil, nil)
)

// A Reloader reloads the policy file into an Engine, on SIGHUP or
// POST /-/reload. A file that fails to load or validate leaves the running
// policies unchanged.
type Reloader struct {
	path   string
	engine *Engine
	now    func() time.Time
	logger *slog.Logger

	mu     sync.Mutex
	ok     bool
	lastOK time.Time
}

// NewReloader returns a Reloader for the policy file at path, which the
// caller loaded successfully at loadedAt.
func NewReloader(path string, e *Engine, loadedAt time.Time, now func() time.Time, logger *slog.Logger) *Reloader {
	return &Reloader{path: path, engine: e, now: now, logger: logger, ok: true, lastOK: loadedAt}
}

// Reload loads the file and hands it to the engine.
func (r *Reloader) Reload(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	cfg, err := Load(r.path)
	if err == nil {
		err = r.engine.Reload(ctx, cfg)
	}
	if err != nil {
		r.ok = false
		r.logger.Error("reloading the policy file failed; the previous policies stay in force", "file", r.path, "err", err)
		return fmt.Errorf("reload %s: %w", r.path, err)
	}
	r.ok, r.lastOK = true, r.now()
	r.logger.Info("reloaded the policy file", "file", r.path, "policies", len(cfg.Policies))
	return nil
}

// ServeHTTP serves POST /-/reload.
func (r *Reloader) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST to reload the policy file", http.StatusMethodNotAllowed)
		return
	}
	if err := r.Reload(req.Context()); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprintln(w, "reloaded")
}

// Describe implements prometheus.Collector.
func (r *Reloader) Describe(ch chan<- *prometheus.Desc) {
	ch <- reloadOKDesc
	ch <- reloadTimeDesc
}

// Collect implements prometheus.Collector.
func (r *Reloader) Collect(ch chan<- prometheus.Metric) {
	r.mu.Lock()
	ok, at := r.ok, r.lastOK
	r.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(reloadOKDesc, prometheus.GaugeValue, b2f(ok))
	ch <- prometheus.MustNewConstMetric(reloadTimeDesc, prometheus.GaugeValue, float64(at.UnixNano())/1e9)
}
