"""`newnormal grafana push` against a small real HTTP server that behaves like Grafana's API for the
endpoints used (no Grafana server can be installed here): idempotent, updates in place, token sent."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from services.cli import main as cli_main
from services.dashboards.generate import render_all
from services.dashboards.panels import DATASOURCE_UID, FOLDER_TITLE


class FakeGrafana:
    def __init__(self, token: str):
        self.token = token
        self.datasources: dict[str, dict] = {}
        self.folders: dict[str, dict] = {}
        self.dashboards: dict[str, dict] = {}
        self.calls: list[tuple[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _reply(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> dict:
                return json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")

            def _handle(self, method: str) -> None:
                fake.calls.append((method, self.path))
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    return self._reply(401, {"message": "Unauthorized"})
                path = self.path.split("?")[0]
                if method == "GET" and path.startswith("/api/datasources/uid/"):
                    uid = path.rsplit("/", 1)[1]
                    return self._reply(200, fake.datasources[uid]) if uid in fake.datasources else \
                        self._reply(404, {"message": "Data source not found"})
                if method == "POST" and path == "/api/datasources":
                    body = self._body()
                    if body["uid"] in fake.datasources:
                        return self._reply(409, {"message": "data source with the same uid already exists"})
                    fake.datasources[body["uid"]] = {**body, "id": len(fake.datasources) + 1, "version": 1}
                    return self._reply(200, {"message": "Datasource added", "datasource": fake.datasources[body["uid"]]})
                if method == "PUT" and path.startswith("/api/datasources/uid/"):
                    uid = path.rsplit("/", 1)[1]
                    if uid not in fake.datasources:
                        return self._reply(404, {"message": "Data source not found"})
                    old = fake.datasources[uid]
                    fake.datasources[uid] = {**self._body(), "id": old["id"], "version": old["version"] + 1}
                    return self._reply(200, {"message": "Datasource updated"})
                if method == "GET" and path.startswith("/api/folders/"):
                    uid = path.rsplit("/", 1)[1]
                    return self._reply(200, fake.folders[uid]) if uid in fake.folders else \
                        self._reply(404, {"message": "folder not found"})
                if method == "POST" and path == "/api/folders":
                    body = self._body()
                    fake.folders[body["uid"]] = {"uid": body["uid"], "title": body["title"], "version": 1}
                    return self._reply(200, fake.folders[body["uid"]])
                if method == "PUT" and path.startswith("/api/folders/"):
                    uid = path.rsplit("/", 1)[1]
                    fake.folders[uid] = {**fake.folders[uid], "title": self._body()["title"]}
                    return self._reply(200, fake.folders[uid])
                if method == "POST" and path == "/api/dashboards/db":
                    body = self._body()
                    board = body["dashboard"]
                    if board["uid"] in fake.dashboards and not body.get("overwrite"):
                        return self._reply(412, {"status": "version-mismatch"})
                    version = fake.dashboards.get(board["uid"], {}).get("version", 0) + 1
                    fake.dashboards[board["uid"]] = {"dashboard": board, "folderUid": body["folderUid"], "version": version}
                    return self._reply(200, {"status": "success", "uid": board["uid"], "version": version})
                return self._reply(404, {"message": f"no route {method} {path}"})

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_PUT(self):
                self._handle("PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_push_creates_then_updates_in_place(capsys):
    with FakeGrafana("s3cret") as grafana:
        assert cli_main(["grafana", "push", "--url", grafana.url, "--token", "s3cret",
                         "--prometheus-url", "http://prom:9090"]) == 0
        assert "datasource created; folder created" in capsys.readouterr().out
        assert grafana.datasources[DATASOURCE_UID]["url"] == "http://prom:9090"
        assert grafana.folders["newnormal"]["title"] == FOLDER_TITLE
        expected = {b["uid"]: b for b in render_all().values()}
        assert set(grafana.dashboards) == set(expected)
        for uid, stored in grafana.dashboards.items():
            assert stored["dashboard"] == expected[uid] and stored["folderUid"] == "newnormal"

        # Second run: same objects updated in place, nothing duplicated.
        grafana.folders["newnormal"]["title"] = "renamed by hand"
        assert cli_main(["grafana", "push", "--url", grafana.url, "--token", "s3cret"]) == 0
        assert "datasource updated; folder updated" in capsys.readouterr().out
        assert len(grafana.datasources) == 1 and grafana.datasources[DATASOURCE_UID]["version"] == 2
        assert grafana.folders["newnormal"]["title"] == FOLDER_TITLE
        assert len(grafana.dashboards) == 5 and all(d["version"] == 2 for d in grafana.dashboards.values())


def test_push_with_a_wrong_token_fails_loudly():
    from grafana_client.client import GrafanaUnauthorizedError

    with FakeGrafana("right") as grafana:
        with pytest.raises(GrafanaUnauthorizedError):
            cli_main(["grafana", "push", "--url", grafana.url, "--token", "wrong"])
        assert grafana.dashboards == {}
