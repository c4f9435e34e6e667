package inject

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Result values of cdpvault_secret_injections_total{result}: a small fixed
// set, never a secret name or value.
const (
	ResultInjected        = "injected"
	ResultRefusedOrigin   = "refused_origin"
	ResultRefusedUnlisted = "refused_unlisted"
	ResultRefusedUnknown  = "refused_unknown"
	ResultRefusedSink     = "refused_sink"
	ResultError           = "error"
)

var allResults = []string{ResultInjected, ResultRefusedOrigin, ResultRefusedUnlisted,
	ResultRefusedUnknown, ResultRefusedSink, ResultError}

// Metrics counts injection attempts. One Metrics is shared by every
// interceptor of a daemon; a nil *Metrics counts nothing.
type Metrics struct {
	injections *prometheus.CounterVec
	tainted    prometheus.Counter
}

// NewMetrics creates cdpvault_secret_injections_total{result} and registers
// it with reg (when reg is not nil). It panics only if the name is already
// registered with reg, like prometheus.MustRegister.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{injections: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cdpvault_secret_injections_total",
		Help: "Secret placeholder injection attempts by result (injected, refused_origin, refused_unlisted, refused_unknown, refused_sink, error).",
	}, []string{"result"}),
		tainted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cdpvault_tainted_refusals_total",
			Help: "Client commands (script, DOM or style changes) refused because a document of the session holds a secret cdpvault typed.",
		}),
	}
	for _, r := range allResults {
		m.injections.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.injections, m.tainted)
	}
	return m
}

func (m *Metrics) inc(result string) {
	if m == nil {
		return
	}
	m.injections.WithLabelValues(result).Inc()
}

func (m *Metrics) incTainted() {
	if m == nil {
		return
	}
	m.tainted.Inc()
}
