"""The alert rules and the Grafana dashboard shipped in conveyor.observability:
promtool accepts the rules and their unit tests pass, the dashboard has the
structure Grafana reads, and every metric they (and the Kubernetes recipe's
autoscaling query) name is one /metrics serves."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from conveyor import Job, JobFailedError, Queue, UnrecoverableError
from conveyor.inspect import Inspector
from conveyor.observability import FILES, path
from conveyor.web.prometheus import render_metrics
from helpers import StartWorker

ROOT = Path(__file__).resolve().parent.parent
METRIC = re.compile(r"\bconveyor_[a-z_]+")

# What Grafana needs of a dashboard we ship: panels placed on the grid, each
# with Prometheus queries; a datasource variable so it imports anywhere.
DASHBOARD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["title", "uid", "schemaVersion", "panels", "templating"],
    "properties": {
        "title": {"type": "string", "minLength": 1},
        "uid": {"type": "string", "pattern": "^[a-z0-9-]{1,40}$"},
        "schemaVersion": {"type": "integer", "minimum": 30},
        "templating": {
            "type": "object",
            "required": ["list"],
            "properties": {"list": {"type": "array", "contains": {
                "type": "object", "required": ["name", "type"],
                "properties": {"type": {"const": "datasource"},
                               "query": {"const": "prometheus"}}}}},
        },
        "panels": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id", "type", "title", "gridPos", "datasource", "targets"],
                "properties": {
                    "id": {"type": "integer"},
                    "type": {"enum": ["timeseries", "stat", "gauge", "table", "bargauge"]},
                    "title": {"type": "string", "minLength": 1},
                    "gridPos": {
                        "type": "object",
                        "required": ["h", "w", "x", "y"],
                        "properties": {
                            "h": {"type": "integer", "minimum": 1},
                            "w": {"type": "integer", "minimum": 1, "maximum": 24},
                            "x": {"type": "integer", "minimum": 0, "maximum": 23},
                            "y": {"type": "integer", "minimum": 0},
                        },
                    },
                    "datasource": {"type": "object", "required": ["type", "uid"],
                                   "properties": {"type": {"const": "prometheus"}}},
                    "targets": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "object", "required": ["refId", "expr"],
                                  "properties": {"expr": {"type": "string", "minLength": 1}}},
                    },
                },
            },
        },
    },
}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path("grafana-dashboard.json").read_text())
    return loaded


def dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel["targets"]]


def keda_queries() -> list[str]:
    """The PromQL the Kubernetes recipe scales workers on (docs/deployment)."""
    manifests = yaml.safe_load_all((ROOT / "docs/deployment/files/kubernetes.yaml").read_text())
    return [trigger["metadata"]["query"] for doc in manifests if doc["kind"] == "ScaledObject"
            for trigger in doc["spec"]["triggers"]]


def alert_exprs() -> list[str]:
    rules = yaml.safe_load(path("alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_the_package_ships_its_files() -> None:
    for name in FILES:
        assert path(name).is_file()
    with pytest.raises(ValueError, match="no such file"):
        path("../__init__.py")


def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: apt-get install prometheus (make venv does)"
    folder = path("alerts.yml").parent
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]):
        result = subprocess.run([promtool, *args], cwd=folder, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout


def test_the_dashboard_has_grafanas_structure() -> None:
    board = dashboard()
    jsonschema.validate(board, DASHBOARD_SCHEMA)
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, f"{panel['title']!r} overflows the grid"


def test_a_dashboard_without_queries_fails_the_schema() -> None:
    board = dashboard()
    board["panels"][0]["targets"] = []
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(board, DASHBOARD_SCHEMA)


async def fail(job: Job) -> None:
    if job.name == "bad":
        raise UnrecoverableError("no")


async def test_every_metric_the_rules_and_dashboard_name_is_served(
    redis_url: str, queue: Queue, start_worker: StartWorker
) -> None:
    good = await queue.add("good")
    bad = await queue.add("bad")
    start_worker(fail)
    await good.wait_until_finished(timeout=10)
    with pytest.raises(JobFailedError):
        await bad.wait_until_finished(timeout=10)
    async with Inspector(redis_url) as inspector:
        text = (await render_metrics(inspector)).decode()
    served = {sample.name for family in text_string_to_metric_families(text)
              for sample in family.samples}
    exprs = [*dashboard_exprs(), *alert_exprs(), *keda_queries()]
    assert len(keda_queries()) == 1
    named = {name for expr in exprs
             for name in METRIC.findall(expr)}
    assert named, "no metric found in the exprs"
    assert named <= served, f"not served: {sorted(named - served)}"
