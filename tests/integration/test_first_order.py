"""The README cannot rot: the stack starts as ``make run`` starts it, and the commands of the
README's "A first order" run as they are written, each answer checked.

The one change made to the commands is the port: the test's shop listens on a free port, not
on 6066, which a developer's ``make run`` may hold.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from scripts.devstack import rabbit_vhost
from scripts.run import DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD
from tests.integration.launcher import README, first_order_commands, running_shop

pytestmark = [pytest.mark.integration]

#: The most console lines from the launcher's start to "ready": a quiet console.
QUIET_START_LINES = 20


def run_in_one_shell(commands: list[str]) -> list[tuple[int, str]]:
    """Run ``commands`` in one bash, in order; return each one's exit status and output."""
    script = "".join(f'{command}\necho; echo "@@ {number} $?"\n'
                     for number, command in enumerate(commands))
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                            timeout=120, check=False)
    answers: list[tuple[int, str]] = []
    output: list[str] = []
    for line in result.stdout.splitlines():
        marker = re.fullmatch(r"@@ (\d+) (\d+)", line)
        if marker:
            answers.append((int(marker[2]), "\n".join(output).strip()))
            output = []
        else:
            output.append(line)
    assert len(answers) == len(commands), (result.stdout, result.stderr)
    return answers


#: A login hashes at the standard Argon2 cost, behind the demo shoppers' own logins.
LOGIN_TIMEOUT_S = 30


def post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=LOGIN_TIMEOUT_S) as response:
        return response.status, json.loads(response.read())


def test_the_readme_first_order_works_as_written(rabbit_url: str, tmp_path: Path) -> None:
    commands = first_order_commands(README.read_text())
    assert len(commands) == 5, commands
    with rabbit_vhost(rabbit_url) as vhost, running_shop(
            tmp_path / "run", vhost, SHOP_DEMO_SHOPPERS="3") as shop:
        console = shop.lines()
        ready_at = next(i for i, line in enumerate(console) if "ShopStream is ready" in line)
        assert ready_at <= QUIET_START_LINES, "\n".join(console[:ready_at])
        announced = "\n".join(console[ready_at:])
        for what in (f"{shop.url}/", f"{shop.url}/admin", f"{shop.url}/analytics",
                     f"{DEV_ADMIN_EMAIL} / {DEV_ADMIN_PASSWORD}"):
            assert what in announced, announced
        stack = json.loads((shop.run_dir / "stack.json").read_text())
        assert stack["workers"] == [shop.url] and stack["kafka_url"].startswith("kafka://")

        answers = run_in_one_shell(
            [c.replace("localhost:6066", f"localhost:{shop.port}") for c in commands])

        found, registered, signed_in, placed, settled = answers
        assert found[0] == 0 and "BOOK-0001" in {
            p["sku"] for p in json.loads(found[1])["items"]}, found
        assert registered[0] == 0 and json.loads(registered[1])["email"] == "alice@example.com"
        assert signed_in == (0, "") and placed == (0, ""), (signed_in, placed)
        order = json.loads(settled[1])
        assert order["status"] == "confirmed", order
        assert [line["sku"] for line in order["items"]] == ["BOOK-0001"], order

        # The console opens with the development admin; a product's picture is there.
        status, tokens = post(f"{shop.url}/api/auth/login",
                              {"email": DEV_ADMIN_EMAIL, "password": DEV_ADMIN_PASSWORD})
        assert status == 200 and tokens["access_token"]
        with urllib.request.urlopen(f"{shop.url}/static/products/BOOK-0001.svg") as picture:
            assert picture.status == 200 and picture.read().startswith(b"<svg")
        errors = [line for line in shop.lines() if "[ERROR]" in line or "Traceback" in line]
        assert errors == []
    assert not (shop.run_dir / "stack.json").exists()
    assert "[shopstream] stopped" in shop.lines()
