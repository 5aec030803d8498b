"""Integrations with other tools, each an optional extra: :mod:`.sentry`
(``pip install 'conveyor[sentry]'``). The Django helpers live in
:mod:`conveyor.django` and the pytest plugin in :mod:`conveyor.testing`."""
