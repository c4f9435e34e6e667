package inject_test

import (
	"context"
	"log/slog"

	"github.com/awnumar/memguard"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cdpvault/cdpvault/cdpproxy"
	"github.com/cdpvault/cdpvault/inject"
)

// tenantVault is what the daemon provides: the store's tenant-scoped
// handle behind inject.Vault. lookup stands in for the store call.
type tenantVault struct {
	lookup func(ctx context.Context, name string) (value []byte, origins []string, version int, found bool, err error)
}

func (v tenantVault) Resolve(ctx context.Context, name string) (inject.Secret, error) {
	value, origins, version, found, err := v.lookup(ctx, name)
	if err != nil {
		return inject.Secret{}, err
	}
	if !found {
		return inject.Secret{}, inject.ErrUnknownSecret // wrap it: fmt.Errorf("...: %w", inject.ErrUnknownSecret)
	}
	// NewBufferFromBytes wipes value.
	return inject.Secret{Value: memguard.NewBufferFromBytes(value), Origins: origins, Version: version}, nil
}

type auditLog struct{ log *slog.Logger }

func (a auditLog) Audit(ctx context.Context, r inject.Record) {
	a.log.Info("audit", "session", r.Session, "secret", r.Secret, "result", r.Result, "reason", r.Reason)
}

// Example shows the wiring the daemon does: one Metrics for the process,
// and per client connection an interceptor scoped to the session's tenant
// and granted names, first in the chain.
func Example() {
	metrics := inject.NewMetrics(prometheus.NewRegistry())
	logger := slog.Default()
	factory := func(vaultFor func(tenant string) inject.Vault) cdpproxy.Factory {
		return func(s *cdpproxy.Session) []cdpproxy.Interceptor {
			return []cdpproxy.Interceptor{
				inject.New(inject.Options{
					Vault:   vaultFor(s.Tenant),
					Granted: s.Secrets,
					Audit:   auditLog{logger},
					Logger:  logger,
					Metrics: metrics,
				}),
				// scrub interceptor(s) follow
			}
		}
	}
	_ = factory(func(string) inject.Vault { return tenantVault{} })
}
