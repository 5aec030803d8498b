"""The documented import path of the inspection layer (docs/dashboard.md:
``from conveyor.inspect import Inspector``). It re-exports
:mod:`conveyor.inspection`, where the code lives."""

from .inspection import *  # noqa: F403
from .inspection import __all__ as __all__
