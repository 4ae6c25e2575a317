"""Shared test set-up: the in-process app uses memory tables and never needs a broker.

Integration fixtures (real Tansu, real RabbitMQ, real worker processes) are in
``tests/integration/fixtures.py``; unit tests never start a broker.
"""

from __future__ import annotations

import os

# The in-process app (imported by unit tests) keeps tables in memory. Worker processes get
# their own settings from scripts.devstack and never inherit these.
os.environ["SHOP_STORE"] = "memory://"
os.environ["SHOP_ENVIRONMENT"] = "test"
os.environ.setdefault("SHOP_DATADIR", "var/test-data")

pytest_plugins = ["tests.integration.fixtures", "tests.integration.rabbit"]
