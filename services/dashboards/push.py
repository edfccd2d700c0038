"""Upload the datasource, folder and dashboards into a running Grafana (idempotent, updates in place).

Everything is addressed by a fixed uid, so running it twice changes nothing the second time and a
dashboard edited in the code replaces the one in Grafana (overwrite=True) without duplicating it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError

from services.dashboards.generate import render_all
from services.dashboards.panels import DATASOURCE_NAME, DATASOURCE_UID, FOLDER_TITLE, FOLDER_UID

log = logging.getLogger(__name__)


def datasource_definition(prometheus_url: str) -> dict:
    """The Prometheus datasource, identical to deploy/grafana/provisioning/datasources/prometheus.yml."""
    return {
        "uid": DATASOURCE_UID, "name": DATASOURCE_NAME, "type": "prometheus", "access": "proxy",
        "url": prometheus_url, "isDefault": True, "editable": False,
        # 1 s is the scrape interval of nothing: Grafana's $__rate_interval needs the real one to be correct.
        "jsonData": {"httpMethod": "POST", "timeInterval": "15s", "prometheusType": "Prometheus",
                     "prometheusVersion": "2.42.0"},
    }


@dataclass
class PushReport:
    datasource: str = ""
    folder: str = ""
    dashboards: list[str] = field(default_factory=list)


def _exists(call) -> dict | None:
    try:
        return call()
    except GrafanaClientError as exc:
        if exc.status_code == 404:
            return None
        raise


def push(url: str, token: str | None, *, prometheus_url: str = "http://prometheus:9090", folder_uid: str = FOLDER_UID,
         folder_title: str = FOLDER_TITLE, timeout: float = 30.0, api: GrafanaApi | None = None) -> PushReport:
    api = api or GrafanaApi.from_url(url, credential=token, timeout=timeout)
    report = PushReport()

    source = datasource_definition(prometheus_url)
    if _exists(lambda: api.datasource.get_datasource_by_uid(DATASOURCE_UID)) is None:
        api.datasource.create_datasource(source)
        report.datasource = "created"
    else:
        api.datasource.update_datasource_by_uid(DATASOURCE_UID, source)
        report.datasource = "updated"

    existing = _exists(lambda: api.folder.get_folder(folder_uid))
    if existing is None:
        api.folder.create_folder(folder_title, uid=folder_uid)
        report.folder = "created"
    elif existing.get("title") != folder_title:
        api.folder.update_folder(folder_uid, title=folder_title, overwrite=True)
        report.folder = "updated"
    else:
        report.folder = "unchanged"

    for name, board in render_all().items():
        api.dashboard.update_dashboard({"dashboard": board, "folderUid": folder_uid, "overwrite": True,
                                        "message": "newnormal grafana push"})
        report.dashboards.append(board["uid"])
        log.info("dashboard uploaded", extra={"file": name, "uid": board["uid"]})
    return report
