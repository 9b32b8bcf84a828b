package routes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/linkwatch/linkwatch_exporter/watcher"
)

// LinkState looks up the current state of a link by name;
// *watcher.Watcher implements it.
type LinkState interface {
	Lookup(name string) (watcher.Link, bool)
}

// Transitions delivers link changes; *watcher.Subscription implements it.
type Transitions interface {
	C() <-chan struct{}
	Drain() []watcher.Transition
}

// EngineOptions configure an Engine.
type EngineOptions struct {
	Kernel      Kernel
	Links       LinkState
	Transitions Transitions
	// Recheck, if not nil, receives a value whenever the installed routes
	// may have changed without a route notification (address changes); the
	// engine then reconciles if any policy is failed over.
	Recheck <-chan struct{}
	// Now is the clock; durations use its monotonic reading.
	Now    func() time.Time
	Logger *slog.Logger
}

// An Engine decides, for each policy, whether its link is failed over, and
// makes the kernel's routes match: it installs a policy's routes while it is
// failed over and removes them after failback. Decisions are level-triggered
// and reconciled against the routes actually installed, so duplicate
// notifications, restarts and routes removed behind its back all converge.
//
// A single goroutine (Run) owns the state; the webhook and reloads reach it
// through requests.
type Engine struct {
	kernel  Kernel
	links   LinkState
	trans   Transitions
	recheck <-chan struct{}
	now     func() time.Time
	logger  *slog.Logger
	reqs    chan request

	// mu guards everything below; Run holds it while it works, Collect
	// while it reads.
	mu       sync.Mutex
	cfg      *Config
	policies []*policyState
	dampers  map[string]*damper // by device
	// groups maps an Alertmanager group key to the policies that a firing
	// alert of that group's latest notification selects.
	groups map[string]map[string]bool
}

// policyState is the engine's state of one policy.
type policyState struct {
	p Policy
	// active is true while failed over; since is when that last changed.
	active  bool
	since   time.Time
	trigger Trigger
	// installed is true once every route of an active policy was seen in
	// the kernel; a route missing after that is a repair.
	installed bool
	// healthy is true while the link exists, is up and has carrier;
	// healthySince is when that last changed or the link last flapped.
	healthy      bool
	healthySince time.Time

	transitions    map[transitionKey]uint64
	errors         uint64
	repairs        uint64
	lastTransition time.Time
}

type transitionKey struct {
	action  string // "failover" or "failback"
	trigger string // "link", "alert", "restart", "reload"
}

// A request is work for Run's goroutine.
type request struct {
	fn   func(now time.Time) error
	done chan error
}

// NewEngine returns an Engine for cfg. Call Run to start it.
func NewEngine(cfg *Config, o EngineOptions) *Engine {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Engine{
		kernel: o.Kernel, links: o.Links, trans: o.Transitions, recheck: o.Recheck, now: o.Now, logger: o.Logger,
		reqs: make(chan request), dampers: make(map[string]*damper), groups: make(map[string]map[string]bool),
	}
	e.setConfig(cfg, o.Now(), nil)
	return e
}

// setConfig installs cfg, keeping the state of policies whose name and
// device did not change. Policies that are gone are returned.
func (e *Engine) setConfig(cfg *Config, now time.Time, old []*policyState) (removed []*policyState) {
	byName := make(map[string]*policyState, len(old))
	for _, ps := range old {
		byName[ps.p.Name] = ps
	}
	e.cfg = cfg
	e.policies = e.policies[:0]
	for _, p := range cfg.Policies {
		ps := byName[p.Name]
		if ps == nil || ps.p.Device != p.Device {
			ps = &policyState{transitions: make(map[transitionKey]uint64), since: now}
			ps.healthy, ps.healthySince = e.healthy(p.Device), now
		}
		delete(byName, p.Name)
		// Compare routes as the kernel reports them (an IPv6 metric of 0
		// is stored as 1024, table 0 as main).
		p.Routes = slices.Clone(p.Routes)
		for i, r := range p.Routes {
			p.Routes[i] = NormalizeRoute(r)
		}
		ps.p = p
		ps.installed = false // routes may have changed: check them all again
		e.policies = append(e.policies, ps)
	}
	for _, ps := range byName {
		removed = append(removed, ps)
	}
	for dev := range e.dampers {
		if e.dampingFor(dev) == nil {
			delete(e.dampers, dev)
		}
	}
	return removed
}

// Run adopts the routes already installed, reconciles, and then follows link
// changes, webhook notifications, reloads and timers until ctx is canceled.
func (e *Engine) Run(ctx context.Context) error {
	e.mu.Lock()
	now := e.now()
	if err := e.adopt(now, "restart"); err != nil {
		e.logger.Warn("cannot list installed routes", "err", err)
	}
	// A reconcile failure (an unreachable gateway, a foreign route on our
	// key) is logged when it starts or changes, not on every retry.
	var lastErr string
	report := func(err error) {
		switch {
		case err == nil && lastErr != "":
			e.logger.Info("installed routes match the policies again")
			lastErr = ""
		case err != nil && err.Error() != lastErr:
			e.logger.Warn("cannot make the installed routes match the policies; retrying", "err", err)
			lastErr = err.Error()
		}
	}
	next, err := e.step(now)
	report(err)
	e.mu.Unlock()

	timer := time.NewTimer(next.Sub(e.now()))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-e.trans.C():
			e.mu.Lock()
			now := e.now()
			relevant := e.onTransitions(e.trans.Drain())
			if relevant || e.anyActive() {
				next, err = e.step(now)
				report(err)
			}
			e.mu.Unlock()
		case <-e.recheck:
			e.mu.Lock()
			if e.anyActive() {
				next, err = e.step(e.now())
				report(err)
			}
			e.mu.Unlock()
		case r := <-e.reqs:
			e.mu.Lock()
			now := e.now()
			err := r.fn(now)
			var stepErr error
			next, stepErr = e.step(now)
			report(stepErr)
			e.mu.Unlock()
			r.done <- errors.Join(err, stepErr)
		case <-timer.C:
			e.mu.Lock()
			next, err = e.step(e.now())
			report(err)
			e.mu.Unlock()
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(max(next.Sub(e.now()), 0))
	}
}

// do runs fn on Run's goroutine, followed by a step, and waits for both.
func (e *Engine) do(ctx context.Context, fn func(now time.Time) error) error {
	r := request{fn: fn, done: make(chan error, 1)}
	select {
	case e.reqs <- r:
	case <-ctx.Done():
		return fmt.Errorf("%w: engine busy: %w", ErrTemporary, ctx.Err())
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: route change still in progress: %w", ErrTemporary, ctx.Err())
	}
}

// Alerts implements AlertSink.
//
// On error it returns no result. The result travels through a channel: when
// ctx ends first, the engine may still apply the alerts later, and must not
// write into a variable that this call has already returned.
func (e *Engine) Alerts(ctx context.Context, groupKey string, alerts []Alert) ([]bool, error) {
	res := make(chan []bool, 1)
	err := e.do(ctx, func(time.Time) error {
		res <- e.applyAlerts(groupKey, alerts)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return <-res, nil
}

// applyAlerts replaces what group groupKey says with alerts and returns, for
// each alert, whether it selects a policy.
func (e *Engine) applyAlerts(groupKey string, alerts []Alert) []bool {
	matched := make([]bool, len(alerts))
	firing := make(map[string]bool)
	for i, a := range alerts {
		for _, ps := range e.policies {
			if ps.p.Has(TriggerAlert) && ps.p.Alert.matches(&ps.p, a.Labels) {
				matched[i] = true
				if a.Firing() {
					firing[ps.p.Name] = true
				}
			}
		}
	}
	if len(firing) == 0 {
		delete(e.groups, groupKey)
	} else {
		e.groups[groupKey] = firing
	}
	return matched
}

// Reload replaces the configuration. The global protocol and dry-run mode
// cannot change without a restart.
func (e *Engine) Reload(ctx context.Context, cfg *Config) error {
	return e.do(ctx, func(now time.Time) error {
		if cfg.Protocol != e.cfg.Protocol || cfg.DryRun != e.cfg.DryRun {
			return errors.New("global.protocol and global.dry_run cannot change on reload; restart instead")
		}
		removed := e.setConfig(cfg, now, slices.Clone(e.policies))
		for _, ps := range removed {
			if ps.active {
				e.logTransition(ps, now, "failback", "reload")
			}
		}
		return e.adopt(now, "reload")
	})
}

// matches reports whether an alert with these labels selects policy p.
func (m *AlertMatch) matches(p *Policy, labels map[string]string) bool {
	if !slices.Contains(m.AlertNames, labels["alertname"]) {
		return false
	}
	if m.DeviceLabel != "" && labels[m.DeviceLabel] != p.Device {
		return false
	}
	for _, x := range m.Labels {
		if !x.Matches(labels) {
			return false
		}
	}
	for _, x := range m.Node {
		if !x.Matches(labels) {
			return false
		}
	}
	return true
}

// healthy reports whether the link exists, is up and has carrier.
func (e *Engine) healthy(device string) bool {
	l, ok := e.links.Lookup(device)
	return ok && l.Up && l.Carrier
}

// onTransitions records flaps and reports whether any transition concerns a
// policy's link.
func (e *Engine) onTransitions(trs []watcher.Transition) bool {
	relevant := false
	for _, tr := range trs {
		for _, ps := range e.policies {
			if ps.p.Device != tr.Name {
				continue
			}
			relevant = true
			if tr.CarrierDowns > 0 {
				// Even a flap too short to be seen as a state change
				// restarts the up hold-down.
				ps.healthySince = tr.Time
			}
		}
		if tr.CarrierDowns > 0 {
			if c := e.dampingFor(tr.Name); c != nil {
				e.damper(tr.Name).flap(*c, tr.Time, tr.CarrierDowns)
			}
		}
	}
	return relevant
}

// dampingFor returns the dampening of the first policy watching device, or
// nil if none dampens it.
func (e *Engine) dampingFor(device string) *Dampening {
	for _, ps := range e.policies {
		if ps.p.Device == device && ps.p.Dampening.Penalty > 0 {
			return &ps.p.Dampening
		}
	}
	return nil
}

func (e *Engine) damper(device string) *damper {
	d := e.dampers[device]
	if d == nil {
		d = &damper{}
		e.dampers[device] = d
	}
	return d
}

func (e *Engine) anyActive() bool {
	for _, ps := range e.policies {
		if ps.active {
			return true
		}
	}
	return false
}

// step brings every policy's state up to date, acts on the decisions and
// reconciles the kernel. It returns when it wants to run again.
func (e *Engine) step(now time.Time) (time.Time, error) {
	next := now.Add(e.cfg.RepairInterval)
	for _, ps := range e.policies {
		if h := e.healthy(ps.p.Device); h != ps.healthy {
			ps.healthy, ps.healthySince = h, now
		}
		want, trigger := e.want(ps, now, &next)
		switch {
		case want && !ps.active:
			ps.active, ps.trigger, ps.installed = true, trigger, false
			e.logTransition(ps, now, "failover", string(trigger))
			ps.since = now
		case !want && ps.active:
			ps.active = false
			e.logTransition(ps, now, "failback", string(TriggerLink))
			ps.since = now
		}
	}
	return next, e.reconcile()
}

// want decides whether policy ps should be failed over now, and lowers next
// to the time the decision may change by itself.
func (e *Engine) want(ps *policyState, now time.Time, next *time.Time) (bool, Trigger) {
	p := &ps.p
	alert := p.Has(TriggerAlert) && e.alertFiring(p.Name)
	soon := func(t time.Time) {
		if t.Before(*next) {
			*next = t
		}
	}
	if !ps.active {
		if alert {
			return true, TriggerAlert
		}
		if p.Has(TriggerLink) && !ps.healthy {
			at := ps.healthySince.Add(p.DownDelay)
			if !now.Before(at) {
				return true, TriggerLink
			}
			soon(at)
		}
		return false, ""
	}
	// Failback needs local confirmation: a resolved alert alone is not
	// enough, since it can also mean that monitoring was lost.
	if alert || !ps.healthy {
		return true, ps.trigger
	}
	if c := e.dampingFor(p.Device); c != nil {
		d := e.damper(p.Device)
		if d.update(*c, now) {
			soon(d.reuseAt(*c, now))
			return true, ps.trigger
		}
	}
	for _, at := range []time.Time{ps.healthySince.Add(p.UpDelay), ps.since.Add(p.MinFailoverTime)} {
		if now.Before(at) {
			soon(at)
			return true, ps.trigger
		}
	}
	return false, ""
}

func (e *Engine) alertFiring(policy string) bool {
	for _, g := range e.groups {
		if g[policy] {
			return true
		}
	}
	return false
}

// adopt marks as failed over the policies whose routes are installed
// already, as after a restart in the middle of a failover.
func (e *Engine) adopt(now time.Time, trigger string) error {
	installed, err := e.kernel.List()
	if err != nil {
		return fmt.Errorf("list installed routes: %w", err)
	}
	have := make(map[routeKey]bool, len(installed))
	for _, r := range installed {
		have[keyOf(r)] = true
	}
	for _, ps := range e.policies {
		if ps.active {
			continue
		}
		for _, r := range ps.p.Routes {
			if have[keyOf(r)] {
				ps.active, ps.trigger, ps.since = true, Trigger(trigger), now
				e.logTransition(ps, now, "failover", trigger)
				break
			}
		}
	}
	return nil
}

// A routeKey identifies a route in the kernel: the same key means the same
// route, which NLM_F_REPLACE updates in place.
type routeKey struct {
	dst    string
	table  uint32
	metric uint32
}

func keyOf(r Route) routeKey {
	return routeKey{dst: r.Destination.String(), table: r.Table, metric: r.Metric}
}

// reconcile makes our installed routes exactly the routes of the active
// policies: it removes ours that no active policy wants and installs what is
// missing or different. Routes of other owners are never listed or touched.
func (e *Engine) reconcile() error {
	installed, err := e.kernel.List()
	if err != nil {
		for _, ps := range e.policies {
			if ps.active {
				ps.errors++
			}
		}
		return fmt.Errorf("list installed routes: %w", err)
	}
	type want struct {
		r  Route
		ps *policyState
	}
	wanted := make(map[routeKey]want)
	for _, ps := range e.policies {
		if !ps.active {
			continue
		}
		for _, r := range ps.p.Routes {
			wanted[keyOf(r)] = want{r, ps}
		}
	}
	var errs []error
	have := make(map[routeKey]Route, len(installed))
	for _, r := range installed {
		k := keyOf(r)
		have[k] = r
		if _, ok := wanted[k]; ok {
			continue
		}
		if err := e.kernel.Delete(r); err != nil {
			errs = append(errs, fmt.Errorf("delete route %s: %w", r, err))
		}
	}
	for _, ps := range e.policies {
		if !ps.active {
			continue
		}
		ok := true
		for _, r := range ps.p.Routes {
			if got, found := have[keyOf(r)]; found && sameRoute(got, r) {
				continue
			}
			if ps.installed {
				ps.repairs++
				e.logger.Warn("route of an active failover was missing or changed, reinstalling",
					"policy", ps.p.Name, "route", r.String())
			}
			if err := e.kernel.Replace(r); err != nil {
				ps.errors++
				ok = false
				errs = append(errs, fmt.Errorf("policy %s: install route %s: %w", ps.p.Name, r, err))
			}
		}
		ps.installed = ok
	}
	return errors.Join(errs...)
}

// sameRoute compares the parts of two routes with the same key that Replace
// would change.
func sameRoute(got, want Route) bool {
	if got.Gateway != want.Gateway {
		return false
	}
	return want.Device == "" || got.Device == "" || got.Device == want.Device
}

func (e *Engine) logTransition(ps *policyState, now time.Time, action, trigger string) {
	ps.transitions[transitionKey{action, trigger}]++
	ps.lastTransition = now
	routes := make([]string, len(ps.p.Routes))
	for i, r := range ps.p.Routes {
		routes[i] = r.String()
	}
	e.logger.Info(action, "policy", ps.p.Name, "device", ps.p.Device, "trigger", trigger,
		"routes", strings.Join(routes, "; "), "dry_run", e.cfg.DryRun,
		"duration_seconds", now.Sub(ps.since).Seconds())
}

// String formats r like ip-route(8).
func (r Route) String() string {
	var b strings.Builder
	if r.Destination.Bits() == 0 {
		b.WriteString("default")
	} else {
		b.WriteString(r.Destination.String())
	}
	if r.Gateway.IsValid() {
		b.WriteString(" via " + r.Gateway.String())
	}
	if r.Device != "" {
		b.WriteString(" dev " + r.Device)
	}
	fmt.Fprintf(&b, " metric %d", r.Metric)
	if r.Table != 0 && r.Table != 254 {
		fmt.Fprintf(&b, " table %d", r.Table)
	}
	return b.String()
}
