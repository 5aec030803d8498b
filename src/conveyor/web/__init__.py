"""conveyor's web side: the REST API, the dashboard and Prometheus metrics.

::

    import os
    from conveyor.web import create_app, serve

    # Beyond loopback the token needs 16 characters or more (conveyor.web.tokens).
    app = create_app("redis://localhost:6379/0", token=os.environ["CONVEYOR_TOKEN"])
    serve(app, host="0.0.0.0", port=8000)    # or mount it: parent.mount("/jobs", app)
"""

from .app import check_listen, create_app, serve, serve_async
from .instances import Instance
from .prometheus import ConveyorCollector, MetricsServer, render_metrics, start_metrics_server

__all__ = [
    "ConveyorCollector",
    "Instance",
    "MetricsServer",
    "check_listen",
    "create_app",
    "render_metrics",
    "serve",
    "serve_async",
    "start_metrics_server",
]
