package scrub

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the scrubber's counters. Create them once with NewMetrics
// and pass the same value to every interceptor. A nil *Metrics counts
// nothing.
type Metrics struct {
	redactions prometheus.Counter
	failures   prometheus.Counter
}

// NewMetrics creates the counters and registers them with reg (nil: not
// registered). Registering twice with the same registry reuses the
// counters already there.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		redactions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cdpvault_redactions_total",
			Help: "Secret occurrences replaced by a placeholder in data sent to CDP clients.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cdpvault_scrub_failures_total",
			Help: "Messages withheld from CDP clients because they could not be scrubbed.",
		}),
	}
	if reg != nil {
		m.redactions = register(reg, m.redactions)
		m.failures = register(reg, m.failures)
	}
	return m
}

func register(reg prometheus.Registerer, c prometheus.Counter) prometheus.Counter {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(prometheus.Counter); ok {
				return old
			}
		}
	}
	return c
}

// Redactions adds n replacements.
func (m *Metrics) Redactions(n int) {
	if m != nil && n > 0 {
		m.redactions.Add(float64(n))
	}
}

// Failure counts one withheld message.
func (m *Metrics) Failure() {
	if m != nil {
		m.failures.Inc()
	}
}
