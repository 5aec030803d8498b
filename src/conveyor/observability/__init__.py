"""Files for watching conveyor from outside, shipped in the package.

``alerts.yml`` holds Prometheus alert rules over the metrics of ``/metrics``
(:mod:`conveyor.web.prometheus`); ``alerts_test.yml`` is their promtool unit
test; ``grafana-dashboard.json`` is a Grafana dashboard of the same metrics.
Copy them out with :func:`path`::

    import shutil
    from conveyor.observability import path

    shutil.copy(path("alerts.yml"), "/etc/prometheus/rules/conveyor.yml")
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["FILES", "path"]

#: The files this package ships.
FILES = ("alerts.yml", "alerts_test.yml", "grafana-dashboard.json")


def path(name: str) -> Path:
    """The path of one of :data:`FILES` inside the installed package."""
    if name not in FILES:
        raise ValueError(f"no such file: {name!r} (one of {', '.join(FILES)})")
    return Path(str(resources.files(__package__).joinpath(name)))
