// Package configs holds the operator files shipped with cdpvault and the tests that keep them
// honest: the systemd units (cdpvault.service for attach mode, cdpvault-chromium.service, the
// launch-mode drop-in cdpvault-launch.conf), the example cdpvault.yaml, the Prometheus scrape job
// (prometheus.yml) and alert rules (alerts.yml, unit-tested by alerts_test.yml). It has no Go API;
// README.md explains installation and states each unit's systemd-analyze exposure.
package configs
