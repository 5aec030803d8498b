"""conveyor in a Flask app: Flask's views are synchronous, so they enqueue with
the blocking twin (``enqueue_sync``); the tasks run in ``conveyor worker``.

Run:  flask --app docs.examples.flask_app run      (Redis from $CONVEYOR_REDIS_URL)
Work: conveyor worker docs.examples.flask_app:tasks
"""

from __future__ import annotations

from flask import Flask, abort, request

from conveyor import ValidationError
from conveyor.app import Conveyor

tasks = Conveyor()


@tasks.task(queue="email", attempts=3, backoff={"type": "exponential", "delay": 2000})
async def send_welcome(to: str) -> dict[str, str]:
    return {"sent_to": to}


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/signup")
    def signup() -> tuple[dict[str, str], int]:
        email = (request.get_json(silent=True) or {}).get("email")
        if not isinstance(email, str) or "@" not in email:
            abort(422, "email: an address is required")
        try:
            # One welcome per address, however often the form is sent.
            job = send_welcome.with_options(job_id=f"welcome-{email}").enqueue_sync(to=email)
        except ValidationError as error:
            abort(422, str(error))
        return {"job_id": job.id}, 202

    @app.get("/signup/<path:job_id>")
    def signup_state(job_id: str) -> dict[str, object]:
        job = tasks.sync_queue("email").get_job(job_id)
        if job is None:
            abort(404)
        return {"state": job.get_state(), "result": job.return_value}

    return app
