package geo

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the geo routing metrics. Labels: pool (pool name), upstream (the
// upstream's index in the pool) and addr (its host:port, never userinfo).
type Metrics struct {
	up        *prometheus.GaugeVec
	requests  *prometheus.CounterVec
	failures  *prometheus.CounterVec
	failovers *prometheus.CounterVec
	refused   *prometheus.CounterVec
}

var metricLabels = []string{"pool", "upstream", "addr"}

// NewMetrics creates the geo metrics and registers them with reg (nil: not
// registered). Names: cdpvault_geo_upstream_up, cdpvault_geo_requests_total,
// cdpvault_geo_failures_total, cdpvault_geo_failovers_total,
// cdpvault_geo_refused_connections_total (label pool only).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cdpvault_geo_upstream_up",
			Help: "1 if the geo upstream proxy passed its last health check or connection, else 0.",
		}, metricLabels),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cdpvault_geo_requests_total",
			Help: "Tunnels (CONNECT) and plain HTTP requests attempted through a geo upstream proxy.",
		}, metricLabels),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cdpvault_geo_failures_total",
			Help: "Attempts through a geo upstream proxy that failed before the tunnel or response was up.",
		}, metricLabels),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cdpvault_geo_failovers_total",
			Help: "Times a session moved away from this upstream to another upstream of the same pool after a failure.",
		}, metricLabels),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cdpvault_geo_refused_connections_total",
			Help: "Connections to a session forwarder refused because they did not come from the session's browser.",
		}, []string{"pool"}),
	}
	if reg != nil {
		reg.MustRegister(m.up, m.requests, m.failures, m.failovers, m.refused)
	}
	return m
}

func (u *upstream) labels() prometheus.Labels {
	return prometheus.Labels{"pool": u.pool, "upstream": strconv.Itoa(u.index), "addr": u.p.addr}
}

func (m *Metrics) forget(u *upstream) {
	l := u.labels()
	m.up.Delete(l)
	m.requests.Delete(l)
	m.failures.Delete(l)
	m.failovers.Delete(l)
}
