package routes

import (
	"log/slog"
	"maps"
	"slices"
)

// A dryRunKernel is the Kernel of dry-run mode: it keeps the routes it would
// have installed in memory and only logs, so the engine's decisions, logs
// and metrics are the same as for real, without any privilege.
type dryRunKernel struct {
	logger *slog.Logger
	routes map[routeKey]Route
}

// NewDryRunKernel returns a Kernel that changes nothing.
func NewDryRunKernel(logger *slog.Logger) Kernel {
	return &dryRunKernel{logger: logger, routes: make(map[routeKey]Route)}
}

func (k *dryRunKernel) List() ([]Route, error) {
	return slices.Collect(maps.Values(k.routes)), nil
}

func (k *dryRunKernel) Replace(r Route) error {
	k.logger.Info("dry run: would install route", "route", r.String())
	k.routes[keyOf(r)] = r
	return nil
}

func (k *dryRunKernel) Delete(r Route) error {
	k.logger.Info("dry run: would remove route", "route", r.String())
	delete(k.routes, keyOf(r))
	return nil
}

func (k *dryRunKernel) Close() error { return nil }
