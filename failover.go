package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/linkwatch/linkwatch_exporter/routes"
	"github.com/linkwatch/linkwatch_exporter/watcher"
)

// failoverFlags are the command-line settings of route failover.
type failoverFlags struct {
	configFile      string
	configCheck     bool
	webhookPath     string
	bearerTokenFile string
	maxBodyBytes    int64
	maxInFlight     int
	netns           string
}

// failover is the wired-up route failover: an engine fed by the watcher, the
// webhook and reloads.
type failover struct {
	engine   *routes.Engine
	kernel   routes.Kernel
	reloader *routes.Reloader
	sub      *watcher.Subscription
}

// checkConfig implements --config.check: it validates the policy file and
// reports whether the program should exit, and with which code.
func checkConfig(f failoverFlags, logger *slog.Logger) (exit bool, code int) {
	if !f.configCheck {
		return false, 0
	}
	if f.configFile == "" {
		logger.Error("--config.check needs --config.file")
		return true, 1
	}
	cfg, err := routes.Load(f.configFile)
	if err != nil {
		logger.Error("invalid policy file", "err", err)
		return true, 1
	}
	fmt.Printf("%s: OK, %d policies\n", f.configFile, len(cfg.Policies))
	return true, 0
}

// newFailover loads the policy file and opens what failover needs. It returns
// nil, nil when no policy file is given: failover is then off and the
// exporter needs no privilege.
func newFailover(ctx context.Context, f failoverFlags, w *watcher.Watcher, reg prometheus.Registerer, logger *slog.Logger) (*failover, error) {
	if f.configFile == "" {
		return nil, nil
	}
	cfg, err := routes.Load(f.configFile)
	if err != nil {
		return nil, err
	}
	loadedAt := time.Now()
	var kernel routes.Kernel
	switch {
	case cfg.DryRun:
		kernel = routes.NewDryRunKernel(logger)
	case len(cfg.Policies) > 0:
		ok, err := routes.HasNetAdmin()
		if err != nil {
			return nil, fmt.Errorf("check capabilities: %w", err)
		}
		if !ok {
			return nil, errors.New("route failover needs CAP_NET_ADMIN to change routes: grant it (for example AmbientCapabilities=CAP_NET_ADMIN in systemd), set global.dry_run: true, or run without --config.file")
		}
		fallthrough
	default:
		kernel, err = routes.DialKernel(routes.KernelConfig{
			NetNS: f.netns, Protocol: cfg.Protocol,
			Resolve: func(dev string) (int, bool) {
				l, ok := w.Lookup(dev)
				return int(l.Index), ok
			},
			ReverseResolve: func(index int) (string, bool) {
				l, ok := w.LookupIndex(int32(index))
				return l.Name, ok
			},
			Logger: logger.With("component", "routes"),
		})
		if err != nil {
			return nil, err
		}
	}
	sub := w.Subscribe()
	recheck, err := routes.WatchAddresses(ctx, routes.AddressWatchConfig{
		NetNS: f.netns, Logger: logger.With("component", "routes"),
	})
	if err != nil {
		return nil, err
	}
	engine := routes.NewEngine(cfg, routes.EngineOptions{
		Kernel: kernel, Links: w, Transitions: sub, Recheck: recheck, Now: time.Now,
		Logger: logger.With("component", "failover"),
	})
	reloader := routes.NewReloader(f.configFile, engine, loadedAt, time.Now, logger.With("component", "config"))
	reg.MustRegister(engine, reloader)
	logger.Info("route failover enabled", "file", f.configFile, "policies", len(cfg.Policies),
		"protocol", cfg.Protocol, "dry_run", cfg.DryRun)
	return &failover{engine: engine, kernel: kernel, reloader: reloader, sub: sub}, nil
}

// handle registers the webhook and reload endpoints on mux.
func (fo *failover) handle(mux *http.ServeMux, f failoverFlags, reg prometheus.Registerer, logger *slog.Logger) error {
	var token func() []byte
	if f.bearerTokenFile != "" {
		if _, err := readToken(f.bearerTokenFile); err != nil {
			return err
		}
		token = func() []byte {
			t, err := readToken(f.bearerTokenFile)
			if err != nil {
				logger.Error("cannot read the webhook bearer token file; refusing requests", "err", err)
				return []byte{0} // matches no presented token
			}
			return t
		}
	}
	wh := routes.NewWebhookHandler(fo.engine, routes.WebhookOptions{
		MaxBodyBytes: f.maxBodyBytes, MaxInFlight: f.maxInFlight, BearerToken: token, Logger: logger.With("component", "webhook"),
	})
	reg.MustRegister(wh)
	mux.Handle(f.webhookPath, wh)
	mux.Handle("/-/reload", fo.reloader)
	return nil
}

// readToken reads a bearer token file, without surrounding white space.
func readToken(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read webhook bearer token file: %w", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, fmt.Errorf("webhook bearer token file %s is empty", path)
	}
	return b, nil
}

// run starts the engine once the watcher knows every link, and reloads the
// policy file on SIGHUP, until ctx is canceled.
func (fo *failover) run(ctx context.Context, ready <-chan struct{}, logger *slog.Logger) error {
	defer fo.kernel.Close()
	defer fo.sub.Close()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_ = fo.reloader.Reload(rctx) // logged and exported by the reloader
				cancel()
			}
		}
	}()
	select {
	case <-ready:
	case <-ctx.Done():
		return nil
	}
	logger.Debug("link state ready, starting the failover engine")
	return fo.engine.Run(ctx)
}
