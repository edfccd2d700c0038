"""The survey page's script under Node with a stub DOM: one Idempotency-Key per filled form, kept across retries
(with its submitted_at), a new one after the service took the form or when the answers change."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from types import SimpleNamespace

from services.feedback.entrypoints import TEMPLATES

SERVER_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"

HARNESS = r"""
const answers = {channel: "walk_in", age_group: "60_plus", satisfaction: "4", tech_difficulty: "none",
                 aware_of_digital_channels: "true"};
const hidden = {value: SERVER_KEY};
let onSubmit = null;
const form = {
  dataset: {agency: "dga", key: "kiosk-key"},
  service_name: {value: "ต่ออายุใบอนุญาต"}, comment: {value: ""},
  querySelector(sel) {
    if (sel === '[name="idempotency_key"]') return hidden;
    const m = /^\[name="(\w+)"\]:checked$/.exec(sel);
    return m && answers[m[1]] !== undefined ? {value: answers[m[1]]} : null;
  },
  addEventListener(kind, fn) { onSubmit = fn; },
  reset() {},
  setAttribute() {}, elements: [], querySelectorAll() { return []; },  // the lock while sending, and marks
};
const status = {className: "", textContent: ""};
const store = new Map();
globalThis.document = {getElementById: (id) => (id === "survey" ? form : status)};
globalThis.sessionStorage = {getItem: (k) => (store.has(k) ? store.get(k) : null), setItem: (k, v) => store.set(k, v),
                             removeItem: (k) => store.delete(k)};
const sent = [];
let outcome = "timeout";
globalThis.fetch = (url, init) => {
  sent.push({key: init.headers["Idempotency-Key"], body: JSON.parse(init.body)});
  return outcome === "timeout" ? Promise.reject(new Error("timeout")) : Promise.resolve({status: outcome});
};
const tick = () => new Promise((r) => setTimeout(r, 5));
async function submit(result) { outcome = result; onSubmit({preventDefault() {}}); await tick(); }
(async () => {
  SCRIPT
  await submit("timeout");               // 0: the answer is lost
  await submit("timeout");               // 1: retried
  await tick();
  await submit(202);                     // 2: retried, taken
  await submit("timeout");               // 3: the next citizen, same answers
  answers.satisfaction = "2";
  await submit(503);                     // 4: the answers changed before the retry
  await submit(400);                     // 5: same answers as 4 (kept after a 5xx)
  await submit("timeout");               // 6: after a 4xx, a new key
  console.log(JSON.stringify({sent, hidden: hidden.value}));
})();
"""


def page_script() -> str:
    html = TEMPLATES.get_template("survey.html").render(
        agency=SimpleNamespace(code="dga", name_th="สพร.", name_en="DGA"), key="kiosk-key", service_name="",
        channel="", channels=[], age_groups=[], tech_levels=[], satisfaction=[], idempotency_key=SERVER_KEY,
        nonce="n0nce")
    assert f'name="idempotency_key" value="{SERVER_KEY}"' in html  # the first key, also for a page without script
    return re.search(r"<script nonce=\"[^\"]+\">(.*?)</script>", html, re.S).group(1)  # type: ignore[union-attr]


def test_the_page_keeps_one_key_per_filled_form_across_retries() -> None:
    node = shutil.which("node")
    assert node, "node is needed to run the survey page's script"
    program = HARNESS.replace("SERVER_KEY", json.dumps(SERVER_KEY)).replace("SCRIPT", page_script())
    out = subprocess.run([node, "-e", program], capture_output=True, text=True, timeout=60, check=True).stdout
    sent = json.loads(out)["sent"]
    keys = [s["key"] for s in sent]
    stamps = [s["body"]["submitted_at"] for s in sent]
    assert keys[0] == keys[1] == keys[2] == SERVER_KEY and stamps[0] == stamps[1] == stamps[2]
    assert keys[3] != keys[0]  # a new form after the 202
    assert keys[4] not in keys[:4] and sent[4]["body"]["satisfaction"] == 2  # changed answers, new key
    assert keys[5] == keys[4] and stamps[5] == stamps[4]  # a 503 keeps the key for the retry
    assert keys[6] not in keys[:6]  # a 4xx starts over
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{8,128}", k) for k in keys)
    assert all("submitted_at" in s["body"] and s["body"]["agency"] == "dga" for s in sent)
