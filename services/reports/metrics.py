"""Prometheus families of the reports service. Labels come from fixed sets only (page, outcome, service,
format, result)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PAGES = ("overview", "agency", "not_found")
OUTCOMES = ("ok", "partial", "error")  # partial: a read API did not answer, its sections say so
UPSTREAMS = ("roadmap", "training", "feedback")
# The quarterly documents (quarterly_routes.py, quarterly_service.py).
DOCUMENT_FORMATS = ("pdf", "html", "xlsx")
# busy: refused with 503 render_busy, every render slot and queue place taken
DOCUMENT_OUTCOMES = ("ok", "partial", "rejected", "busy", "error")
DOCUMENT_LOOKUPS = ("hit", "shared", "miss")  # kept document; another request's render in flight; rendered
RENDER_OUTCOMES = ("ok", "error")


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


class QuarterlyMetrics:
    """The quarterly documents: what was asked (documents), how each was found (document lookups), and the
    renders themselves (count, time, slots in use, waiting)."""

    def __init__(self, registry: CollectorRegistry):
        self.documents = Counter("newnormal_reports_quarterly_documents_total",
                                 "Quarterly report documents asked for, by format and outcome (ok, partial: a read API "
                                 "did not answer; rejected: bad parameters; busy: refused, every render slot and queue "
                                 "place taken; error).", ["format", "outcome"], registry=registry)
        self.seconds = Histogram("newnormal_reports_quarterly_seconds",
                                 "Time to fetch, assemble and render one quarterly document, by format.", ["format"],
                                 registry=registry, buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 30, 60))
        self.lookups = Counter("newnormal_reports_quarterly_document_lookups_total",
                               "Quarterly documents served, by format and result (hit: a kept render of the same "
                               "request and figures; shared: waited for the same render in flight; miss: rendered).",
                               ["format", "result"], registry=registry)
        self.renders = Counter("newnormal_reports_quarterly_renders_total",
                               "Quarterly document renders run, by format and outcome (ok, error).",
                               ["format", "outcome"], registry=registry)
        self.render_seconds = Histogram("newnormal_reports_quarterly_render_seconds",
                                        "Time of one render alone (no fetching, no waiting for a slot), by format.",
                                        ["format"], registry=registry,
                                        buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 30, 60))
        self.renders_running = Gauge("newnormal_reports_quarterly_renders_running",
                                     "Quarterly document renders running now (at most REPORTS_RENDER_CONCURRENCY).",
                                     registry=registry)
        self.renders_waiting = Gauge("newnormal_reports_quarterly_renders_waiting",
                                     "Quarterly document renders waiting for a slot (at most REPORTS_RENDER_QUEUE, "
                                     "and the scheduled delivery).", registry=registry)
        for fmt in DOCUMENT_FORMATS:  # every series exists from the start, so rate() and absent() behave
            self.seconds.labels(fmt)
            self.render_seconds.labels(fmt)
            for outcome in DOCUMENT_OUTCOMES:
                self.documents.labels(fmt, outcome)
            for result in DOCUMENT_LOOKUPS:
                self.lookups.labels(fmt, result)
            for outcome in RENDER_OUTCOMES:
                self.renders.labels(fmt, outcome)
