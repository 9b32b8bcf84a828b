package routes

import (
	"math"
	"time"
)

// A damper tracks the flap penalty of one link in the style of RFC 2439:
// each flap adds a fixed penalty, the penalty halves every half-life, and
// failback is suppressed from when the penalty exceeds the suppress threshold
// until it decays below the reuse threshold. The penalty is capped so that
// suppression never outlasts MaxSuppress after the last flap.
type damper struct {
	penalty    float64   // as of at
	at         time.Time // when penalty was last computed
	suppressed bool
}

// value returns the penalty decayed to now.
func (d *damper) value(c Dampening, now time.Time) float64 {
	if d.penalty == 0 || c.HalfLife <= 0 {
		return d.penalty
	}
	dt := now.Sub(d.at)
	if dt <= 0 {
		return d.penalty
	}
	return d.penalty * math.Exp2(-dt.Seconds()/c.HalfLife.Seconds())
}

// ceiling is the highest penalty, the one that takes exactly MaxSuppress to
// decay to the reuse threshold.
func ceiling(c Dampening) float64 {
	if c.HalfLife <= 0 || c.MaxSuppress <= 0 {
		return math.Inf(1)
	}
	return c.Reuse * math.Exp2(c.MaxSuppress.Seconds()/c.HalfLife.Seconds())
}

// flap records n flaps at now.
func (d *damper) flap(c Dampening, now time.Time, n uint32) {
	if c.Penalty <= 0 || n == 0 {
		return
	}
	d.penalty = min(d.value(c, now)+c.Penalty*float64(n), ceiling(c))
	d.at = now
	d.update(c, now)
}

// update recomputes whether failback is suppressed and reports it.
func (d *damper) update(c Dampening, now time.Time) bool {
	if c.Penalty <= 0 {
		d.suppressed = false
		return false
	}
	v := d.value(c, now)
	switch {
	case v > c.Suppress:
		d.suppressed = true
	case v < c.Reuse:
		d.suppressed = false
	}
	return d.suppressed
}

// reuseAt returns when a suppressed link's penalty falls below the reuse
// threshold.
func (d *damper) reuseAt(c Dampening, now time.Time) time.Time {
	v := d.value(c, now)
	if !d.suppressed || v < c.Reuse || c.HalfLife <= 0 {
		return now
	}
	secs := c.HalfLife.Seconds() * math.Log2(v/c.Reuse)
	// A millisecond past the exact point, so that the penalty is below
	// reuse when the timer fires.
	return now.Add(time.Duration(secs*float64(time.Second)) + time.Millisecond)
}
