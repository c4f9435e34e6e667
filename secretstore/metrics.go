package secretstore

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	ops *prometheus.CounterVec
	dur *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	ops := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cdpvault_store_operations_total",
		Help: "Secret store operations by operation and result.",
	}, []string{"op", "result"})
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "cdpvault_store_operation_duration_seconds",
		Help:    "Duration of secret store operations.",
		Buckets: []float64{0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5},
	}, []string{"op"})
	m := &metrics{ops: ops, dur: dur}
	if err := reg.Register(ops); err != nil {
		are, ok := err.(prometheus.AlreadyRegisteredError)
		if !ok {
			return nil, err
		}
		if m.ops, ok = are.ExistingCollector.(*prometheus.CounterVec); !ok {
			return nil, err
		}
	}
	if err := reg.Register(dur); err != nil {
		are, ok := err.(prometheus.AlreadyRegisteredError)
		if !ok {
			return nil, err
		}
		if m.dur, ok = are.ExistingCollector.(*prometheus.HistogramVec); !ok {
			return nil, err
		}
	}
	return m, nil
}

// result maps an error to a bounded metric label.
func result(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrExists):
		return "exists"
	case errors.Is(err, ErrInvalidName), errors.Is(err, ErrInvalidValue), errors.Is(err, ErrInvalidOrigin):
		return "invalid"
	case errors.Is(err, ErrUnauthorized):
		return "unauthorized"
	case errors.Is(err, ErrIntegrity):
		return "integrity"
	case errors.Is(err, ErrWrongMasterKey):
		return "wrong_master_key"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	}
	return "error"
}

// track records one operation; use as `defer s.track("op", time.Now(), &err)`.
func (s *Store) track(op string, start time.Time, err *error) {
	if s.metrics == nil {
		return
	}
	s.metrics.ops.WithLabelValues(op, result(*err)).Inc()
	s.metrics.dur.WithLabelValues(op).Observe(time.Since(start).Seconds())
}
