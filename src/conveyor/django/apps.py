"""The Django app of conveyor (``"conveyor.django"`` in ``INSTALLED_APPS``):
it brings the ``conveyor_worker`` management command."""

from __future__ import annotations

from django.apps import AppConfig


class ConveyorConfig(AppConfig):  # type: ignore[misc]
    """conveyor's Django app: no models, one management command."""

    name = "conveyor.django"
    label = "conveyor"
    verbose_name = "conveyor"
