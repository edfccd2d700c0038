"""Grafana dashboards as code: one module per dashboard, generated into deploy/grafana/dashboards/."""
