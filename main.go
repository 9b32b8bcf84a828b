// Command linkwatch_exporter watches the network links of a host, or of one
// network namespace, through rtnetlink notifications and exports their state,
// flaps and outage durations as Prometheus metrics.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // profiling under /debug/pprof, as node_exporter serves it
	"os"
	"os/signal"
	"regexp"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/linkwatch/linkwatch_exporter/collector"
	"github.com/linkwatch/linkwatch_exporter/watcher"
)

const (
	programName = "linkwatch_exporter"
	// defaultAddress uses a port absent from the Prometheus default port
	// allocations list (see the README).
	defaultAddress = ":9957"
)

func main() {
	os.Exit(run())
}

func run() int {
	var (
		metricsPath = kingpin.Flag("web.telemetry-path", "Path under which to expose metrics.").
				Default("/metrics").String()
		toolkitFlags = kingpinflag.AddFlags(kingpin.CommandLine, defaultAddress)
		readBuffer   = kingpin.Flag("watcher.read-buffer",
			"Receive buffer of the notification socket in bytes; the kernel doubles it. Too small a buffer loses notifications in bursts (counted as overruns, followed by a resync).").
			Default("4194304").Int()
		include = kingpin.Flag("watcher.device-include",
			"Regular expression of device names to export (anchored); empty exports all.").PlaceHolder("REGEX").String()
		exclude = kingpin.Flag("watcher.device-exclude",
			"Regular expression of device names not to export (anchored); empty excludes none.").PlaceHolder("REGEX").String()
		netns = kingpin.Flag("watcher.netns",
			"Watch the network namespace at this path (/run/netns/NAME or /proc/PID/ns/net) instead of the exporter's own; needs CAP_SYS_ADMIN.").
			PlaceHolder("PATH").String()
		buckets = kingpin.Flag("collector.duration-buckets",
			"Comma-separated upper bounds, in seconds, of the carrier up and down duration histograms.").
			Default(collector.FormatBuckets(collector.DefaultBuckets)).String()
		native = kingpin.Flag("collector.native-histograms",
			"Also expose the duration histograms as native histograms (protobuf exposition).").Bool()
	)
	logConfig := &promslog.Config{}
	flag.AddFlags(kingpin.CommandLine, logConfig)
	kingpin.Version(version.Print(programName))
	kingpin.HelpFlag.Short('h')
	kingpin.Parse()
	logger := promslog.New(logConfig)

	bounds, err := collector.ParseBuckets(*buckets)
	if err != nil {
		logger.Error("invalid --collector.duration-buckets", "err", err)
		return 1
	}
	inc, err := compileAnchored(*include)
	if err != nil {
		logger.Error("invalid --watcher.device-include", "err", err)
		return 1
	}
	exc, err := compileAnchored(*exclude)
	if err != nil {
		logger.Error("invalid --watcher.device-exclude", "err", err)
		return 1
	}

	logger.Info("starting "+programName, "version", version.Info())
	logger.Info("build context", "build_context", version.BuildContext())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	open := func() (watcher.Source, error) {
		src, err := watcher.Dial(watcher.SourceConfig{NetNS: *netns, ReadBuffer: *readBuffer})
		if err == nil {
			logger.Debug("opened rtnetlink sockets", "netns", *netns, "read_buffer_bytes", watcher.ReadBuffer(src))
		}
		return src, err
	}
	w := watcher.New(open, watcher.Options{
		Buckets: bounds, NativeHistograms: *native, Include: inc, Exclude: exc,
		Now: time.Now, Logger: logger.With("component", "watcher"),
	})

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		versioncollector.NewCollector("linkwatch"),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collector.New(w, collector.Options{Buckets: bounds, NativeHistograms: *native}),
	)

	errLog := slog.NewLogLogger(logger.Handler(), slog.LevelError)
	http.Handle(*metricsPath, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:          errLog,
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: true,
	}))
	if *metricsPath != "/" {
		landing, err := web.NewLandingPage(web.LandingConfig{
			Name:        "Linkwatch Exporter",
			Description: "Event-driven network link state and flap exporter",
			Version:     version.Info(),
			Links:       []web.LandingLinks{{Address: *metricsPath, Text: "Metrics"}},
		})
		if err != nil {
			logger.Error("landing page", "err", err)
			return 1
		}
		http.Handle("/", landing)
	}

	watchErr := make(chan error, 1)
	go func() { watchErr <- w.Run(ctx) }()

	srv := &http.Server{ErrorLog: errLog, ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- web.ListenAndServe(srv, toolkitFlags, logger) }()

	select {
	case err := <-watchErr:
		if err != nil {
			logger.Error("cannot watch links", "err", err)
			return 1
		}
	case err := <-serveErr:
		logger.Error("cannot serve HTTP", "err", err)
		return 1
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		logger.Warn("HTTP shutdown", "err", err)
	}
	stop()
	select {
	case <-watchErr:
	case <-time.After(500 * time.Millisecond):
	}
	return 0
}

// compileAnchored compiles a regular expression that must match a whole
// device name; an empty expression yields nil (no restriction).
func compileAnchored(expr string) (*regexp.Regexp, error) {
	if expr == "" {
		return nil, nil
	}
	re, err := regexp.Compile("^(?:" + expr + ")$")
	if err != nil {
		return nil, fmt.Errorf("compile %q: %w", expr, err)
	}
	return re, nil
}
