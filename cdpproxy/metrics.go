package cdpproxy

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the proxy's Prometheus metrics. A nil *Metrics is valid and
// records nothing.
type Metrics struct {
	messages    *prometheus.CounterVec
	toBrowser   prometheus.Counter
	toClient    prometheus.Counter
	sessions    prometheus.Gauge
	connections prometheus.Gauge
	overhead    *prometheus.HistogramVec
	ovBrowser   prometheus.Observer
	ovClient    prometheus.Observer
}

// NewMetrics creates the proxy metrics and registers them with reg (when reg
// is not nil):
//
//	cdpvault_cdp_messages_total{direction="to_browser"|"to_client"}
//	cdpvault_cdp_sessions_active           daemon sessions registered
//	cdpvault_cdp_connections_active        proxied WebSocket connections
//	cdpvault_cdp_proxy_overhead_seconds{direction}  frame fully read to written,
//	                                       sampled: one message in overheadEvery (8) per connection and direction
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cdpvault_cdp_messages_total",
			Help: "CDP messages proxied, by direction (to_browser, to_client).",
		}, []string{"direction"}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cdpvault_cdp_sessions_active",
			Help: "Daemon sessions registered with the CDP proxy.",
		}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cdpvault_cdp_connections_active",
			Help: "Proxied CDP WebSocket connections currently open.",
		}),
		overhead: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cdpvault_cdp_proxy_overhead_seconds",
			Help:    "Time from a CDP message fully read by the proxy to it written out, by direction (one message in " + strconv.Itoa(overheadEvery) + " per connection and direction is timed).",
			Buckets: prometheus.ExponentialBuckets(1e-6, 4, 11), // 1us .. ~1s
		}, []string{"direction"}),
	}
	m.toBrowser = m.messages.WithLabelValues(dirToBrowser)
	m.toClient = m.messages.WithLabelValues(dirToClient)
	m.ovBrowser = m.overhead.WithLabelValues(dirToBrowser)
	m.ovClient = m.overhead.WithLabelValues(dirToClient)
	if reg != nil {
		reg.MustRegister(m.messages, m.sessions, m.connections, m.overhead)
	}
	return m
}

const (
	dirToBrowser = "to_browser"
	dirToClient  = "to_client"
)

// message counts a proxied message and, when start is not zero (a timed
// sample), observes its overhead.
func (m *Metrics) message(toBrowser bool, start time.Time) {
	m.count(toBrowser)
	if m == nil || start.IsZero() {
		return
	}
	ov := m.ovClient
	if toBrowser {
		ov = m.ovBrowser
	}
	ov.Observe(time.Since(start).Seconds())
}

func (m *Metrics) count(toBrowser bool) {
	if m == nil {
		return
	}
	if toBrowser {
		m.toBrowser.Inc()
	} else {
		m.toClient.Inc()
	}
}

func (m *Metrics) sessionDelta(d float64) {
	if m != nil {
		m.sessions.Add(d)
	}
}

func (m *Metrics) connDelta(d float64) {
	if m != nil {
		m.connections.Add(d)
	}
}
