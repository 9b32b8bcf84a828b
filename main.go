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
	"strconv"
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
	"github.com/linkwatch/linkwatch_exporter/routes"
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
			"Watch the network namespace at this path (/run/netns/NAME or /proc/PID/ns/net) instead of the exporter's own; needs CAP_SYS_ADMIN. "+
				"If the namespace is deleted, the exporter releases it, drops its links and watches the next namespace at the path.").
			PlaceHolder("PATH").String()
		buckets = kingpin.Flag("collector.duration-buckets",
			"Comma-separated upper bounds, in seconds, of the carrier up and down duration histograms.").
			Default(collector.FormatBuckets(collector.DefaultBuckets)).String()
		native = kingpin.Flag("collector.native-histograms",
			"Also expose the duration histograms as native histograms (protobuf exposition).").Bool()
		readHeaderTimeout = kingpin.Flag("web.read-header-timeout",
			"Longest time a client may take to send the request headers; slower connections are closed.").
			Default("10s").Duration()
		readTimeout = kingpin.Flag("web.read-timeout",
			"Longest time a client may take to send a whole request, body included (a webhook body sent byte by byte is cut off and answered 400).").
			Default("30s").Duration()
		idleTimeout = kingpin.Flag("web.idle-timeout",
			"Longest time an idle keep-alive connection is kept open.").
			Default("2m").Duration()
		fo failoverFlags
	)
	kingpin.Flag("config.file", "Route failover policy file (YAML). Without it failover is off and no privilege is needed.").
		PlaceHolder("FILE").StringVar(&fo.configFile)
	kingpin.Flag("config.check", "Validate the policy file given by --config.file and exit.").BoolVar(&fo.configCheck)
	kingpin.Flag("webhook.path", "Path of the Alertmanager webhook (served only with --config.file).").
		Default("/webhook/alertmanager").StringVar(&fo.webhookPath)
	kingpin.Flag("webhook.bearer-token-file", "File holding the bearer token the webhook requires (Authorization: Bearer); read on each request.").
		PlaceHolder("FILE").StringVar(&fo.bearerTokenFile)
	kingpin.Flag("webhook.max-body-bytes", "Largest accepted webhook request body; larger ones get 413.").
		Default("1048576").Int64Var(&fo.maxBodyBytes)
	kingpin.Flag("webhook.max-in-flight", "Most webhook requests read or applied at once; more get 503 (Alertmanager retries), which bounds the memory a flood can take.").
		Default(strconv.Itoa(routes.DefaultWebhookMaxInFlight)).IntVar(&fo.maxInFlight)
	logConfig := &promslog.Config{}
	flag.AddFlags(kingpin.CommandLine, logConfig)
	kingpin.Version(version.Print(programName))
	kingpin.HelpFlag.Short('h')
	kingpin.Parse()
	logger := promslog.New(logConfig)
	fo.netns = *netns
	if exit, code := checkConfig(fo, logger); exit {
		return code
	}

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

	// reg holds every collector but the link collector, whose handler
	// serves both: it writes the link metrics in the text formats itself.
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		versioncollector.NewCollector("linkwatch"),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	links := collector.New(w, collector.Options{Buckets: bounds, NativeHistograms: *native})
	failover, err := newFailover(ctx, fo, w, reg, logger)
	if err != nil {
		logger.Error("cannot set up route failover", "err", err)
		return 1
	}

	errLog := slog.NewLogLogger(logger.Handler(), slog.LevelError)
	http.Handle(*metricsPath, links.Handler(reg, promhttp.HandlerOpts{
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

	if failover != nil {
		if err := failover.handle(http.DefaultServeMux, fo, reg, logger); err != nil {
			logger.Error("cannot set up the webhook", "err", err)
			return 1
		}
	}

	watchErr := make(chan error, 1)
	go func() { watchErr <- w.Run(ctx) }()
	failoverErr := make(chan error, 1)
	if failover != nil {
		go func() { failoverErr <- failover.run(ctx, w.Ready(), logger) }()
	}

	srv := &http.Server{
		ErrorLog:          errLog,
		ReadHeaderTimeout: *readHeaderTimeout,
		ReadTimeout:       *readTimeout,
		IdleTimeout:       *idleTimeout,
	}
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
	case err := <-failoverErr:
		if err != nil {
			logger.Error("route failover stopped", "err", err)
			return 1
		}
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		logger.Warn("HTTP shutdown", "err", err)
	}
	stop()
	deadline := time.After(400 * time.Millisecond)
	select {
	case <-watchErr:
	case <-deadline:
	}
	if failover != nil {
		select {
		case <-failoverErr:
		case <-deadline:
		}
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
