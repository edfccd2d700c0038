"""Prometheus families of the reports service. Labels come from fixed sets only (page, outcome, service)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

PAGES = ("overview", "agency", "not_found")
OUTCOMES = ("ok", "partial", "error")  # partial: a read API did not answer, its sections say so
UPSTREAMS = ("roadmap", "training", "feedback")


class ReportsMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.renders = Counter("newnormal_reports_page_renders_total",
                               "Pages rendered, by page (overview, agency, not_found) and outcome (ok, partial, error).",
                               ["page", "outcome"], registry=registry)
        self.render_seconds = Histogram("newnormal_reports_page_render_seconds",
                                        "Server time to answer a page, fetching included, by page.", ["page"],
                                        registry=registry,
                                        buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2.5, 5, 10))
        self.fetch_seconds = Histogram("newnormal_reports_upstream_fetch_seconds",
                                       "Time of one request to a read API (cache misses only), by service and outcome.",
                                       ["service", "outcome"], registry=registry,
                                       buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.cache_lookups = Counter("newnormal_reports_cache_lookups_total",
                                     "Read API answers looked up in the cache, by service and result (hit, miss).",
                                     ["service", "result"], registry=registry)
        for page in PAGES:  # every series exists from the start, so rate() and absent() behave
            self.render_seconds.labels(page)
            for outcome in OUTCOMES:
                self.renders.labels(page, outcome)
        for service in UPSTREAMS:
            for outcome in ("ok", "error"):
                self.fetch_seconds.labels(service, outcome)
            for result in ("hit", "miss"):
                self.cache_lookups.labels(service, result)

    # FetchObserver of the adapters
    def fetched(self, service: str, seconds: float, ok: bool) -> None:
        self.fetch_seconds.labels(service, "ok" if ok else "error").observe(seconds)

    def cache(self, service: str, hit: bool) -> None:
        self.cache_lookups.labels(service, "hit" if hit else "miss").inc()
