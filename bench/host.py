"""Benchmark ``sghost start`` against the same resources run as standalone interpreters.

Run: ``.venv/bin/python bench/host.py`` (``make bench``); ``--quick`` for a short smoke run.
Everything runs against one private mosquitto on a free 127.0.0.1 port, watched
by one raw paho subscriber on ``#`` (:class:`sghost.testing.Recorder`), whose
receive times (taken on its network thread) are the end of every interval.

Issue 3 (the supervisor), for N = 20 and 50 ``taxisign`` resources:

- launch -> every presence ``True`` seen, sghost vs N standalone interpreters
  (``bench/standalone_taxisign.py``, as supervisord would run them);
- PSS per idle resource process (sghost: the zygote's children only);
- SIGKILL of a resource -> presence ``True`` of its new process, p50/p99 over 20 kills;
- the supervisor's own RSS with 20 resources;
- SIGTERM -> exit of ``sghost start`` with 50 resources.

Issue 17 (lighter): the goals above tightened (PSS per resource ≤ 0.25 of a standalone
interpreter, supervisor RSS ≤ 20 MiB, SIGKILL -> presence p50 ≤ 10 ms, start-up ≥ 8x), and
the idle cost: CPU of 200 idle taxisign resource processes together over 30 s, % of one
core (goal ≤ 2 %), beside N=50 standalone interpreters' idle CPU scaled to 200.

Issue 4 (health, watchdog), with the 20-resource host and ``health_interval = 5``:

- CPU of the supervisor over 60 s idle (CPU time delta / wall, % of one core),
  plus the zygote's and the mean resource process's;
- broker messages per minute during the same 60 s, by topic pattern;
- a ``hanger`` resource (``watchdog = 2``) told to hang -> its state ``running``
  again and its presence ``True`` again.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from machine import describe_machine  # noqa: E402

from sghost.host.broker import MosquittoBroker  # noqa: E402
from sghost.testing import Received, Recorder  # noqa: E402

STANDALONE = ROOT / "bench" / "standalone_taxisign.py"
TEST_PLUGINS = ROOT / "tests" / "plugins"
HEALTH_INTERVAL = 5.0
WATCHDOG = 2.0
SETTLE = 3.0
"""Seconds of idling after every presence is True, before memory and CPU are read."""


# ------------------------------------------------------------------ results


@dataclass
class Row:
    figure: str
    value: str
    goal: str = ""
    ok: bool | None = None

    @property
    def verdict(self) -> str:
        return "" if self.ok is None else "PASS" if self.ok else "MISS"


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, figure: str, value: str, goal: str = "", ok: bool | None = None) -> None:
        row = Row(figure, value, goal, ok)
        self.rows.append(row)
        print(f"  {figure}: {value}" + (f"   [{row.verdict}, goal {goal}]" if goal else ""), flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  {text}", flush=True)

    def table(self) -> str:
        lines = ["| figure | value | goal | result |", "|---|---|---|---|"]
        lines += [f"| {r.figure} | {r.value} | {r.goal} | {r.verdict} |" for r in self.rows]
        return "\n".join(lines)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (p99 of 20 samples is the largest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def spread(values: list[float]) -> str:
    """Median of the repetitions, and their range."""
    if len(values) == 1:
        return ms(values[0])
    return f"{ms(statistics.median(values))} (median of {len(values)}; {ms(min(values))} .. {ms(max(values))})"


def mib(size: float) -> str:
    return f"{size / 1048576:.1f} MiB"


# --------------------------------------------------------------- subscriber


class Cursor:
    """Reads a :class:`Recorder`'s messages incrementally, so waiting costs O(new messages)."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.position = len(recorder.messages)

    def wait(self, accept: Callable[[Received], None], done: Callable[[], bool], timeout: float, what: str) -> None:
        def condition() -> bool:
            messages = self.recorder.messages
            while self.position < len(messages):
                accept(messages[self.position])
                self.position += 1
            return done()

        if not self.recorder.wait_until(condition, timeout):
            raise TimeoutError(f"{what}: not seen within {timeout:g} s")


def presence_topic(name: str) -> str:
    return f"resourceavailable/{name}/presence"


def wait_presences(recorder: Recorder, cursor: Cursor, names: list[str], payload: str, timeout: float) -> float:
    """Wait until every ``names`` presence is ``payload`` (seen from now on); return the last arrival time."""
    wanted = {presence_topic(name) for name in names}
    seen: dict[str, float] = {}

    def accept(message: Received) -> None:
        if message.topic in wanted and message.payload == payload:
            seen.setdefault(message.topic, message.at)

    cursor.wait(accept, lambda: len(seen) == len(wanted), timeout, f"{len(wanted)} presences {payload}")
    return max(seen.values())


def topic_pattern(topic: str, host: str) -> str:
    """``data/host20/g20r07_uptime`` -> ``data/<host>/<res>_uptime``; ``resourceavailable/x/presence``

    -> ``resourceavailable/<res>/presence``.
    """
    parts = topic.split("/")
    if len(parts) != 3:
        return topic
    prefix, service, signal_name = parts
    if service == host:
        if "_" in signal_name:
            return f"{prefix}/<host>/<res>_{signal_name.rsplit('_', 1)[1]}"
        return f"{prefix}/<host>/{signal_name}"
    return f"{prefix}/<res>/{signal_name}"


# -------------------------------------------------------------------- hosts


def manifest(host: str, port: int, resources: str) -> str:
    return (
        f'[host]\nname = "{host}"\nhealth_interval = {HEALTH_INTERVAL}\n\n'
        f'[broker]\nhost = "127.0.0.1"\nport = {port}\n\n'
        "[defaults]\nrestart = \"always\"\nstop_timeout = 5.0\n\n"
        f"{resources}"
    )


def taxisign_tables(names: list[str]) -> str:
    return "".join(f'[resources.{name}]\ntype = "taxisign"\n\n' for name in names)


class SghostHost:
    """``python -m sghost start -c <manifest>``; its log goes to a file in ``workdir``."""

    def __init__(self, workdir: Path, host: str, text: str, env: dict[str, str] | None = None) -> None:
        self.host = host
        self.path = workdir / f"{host}.toml"
        self.path.write_text(text)
        self.log_path = workdir / f"{host}.log"
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "sghost", "start", "-c", str(self.path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=ROOT,
            )

    @property
    def supervisor(self) -> psutil.Process:
        assert self.process is not None
        return psutil.Process(self.process.pid)

    @property
    def zygote(self) -> psutil.Process:
        children = self.supervisor.children()
        if len(children) != 1:
            raise RuntimeError(f"expected one child of the supervisor (the zygote), found {children}")
        return children[0]

    def meta(self, recorder: Recorder) -> psutil.Process:
        """The meta-resource process, known from the ``meta_pid`` of the host's retained health."""
        topic = f"data/{self.host}/health"
        found = recorder.wait_until(lambda: json.loads(recorder.latest(topic) or "{}").get("meta_pid"), 10)
        if not found:
            raise RuntimeError(f"no meta_pid in {topic}")
        return psutil.Process(int(found))  # type: ignore[call-overload]

    def resources(self, meta: psutil.Process) -> list[psutil.Process]:
        """The zygote's children but the meta-resource process."""
        return [process for process in self.zygote.children() if process.pid != meta.pid]

    def terminate(self, timeout: float = 30.0) -> float:
        """SIGTERM; return the seconds until the process has exited."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout)
        return time.monotonic() - started

    def kill_all(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            family = [*self.supervisor.children(recursive=True), self.supervisor]
        except psutil.NoSuchProcess:
            family = []
        for process in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        self.process.wait(5)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def start_standalone(names: list[str], broker: MosquittoBroker) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(
            [sys.executable, str(STANDALONE), name, broker.host, str(broker.port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
        )
        for name in names
    ]


def stop_standalone(processes: list[subprocess.Popen[bytes]]) -> float:
    started = time.monotonic()
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return time.monotonic() - started


def cpu_shares(processes: list[psutil.Process], window: float) -> list[float]:
    """Each process's CPU time over ``window`` seconds of idling, in % of one core."""
    before = [cpu_seconds(p) for p in processes]
    started = time.monotonic()
    time.sleep(window)
    after = [cpu_seconds(p) for p in processes]
    wall = time.monotonic() - started
    return [(b - a) / wall * 100 for a, b in zip(before, after, strict=True)]


def pss(processes: list[psutil.Process]) -> list[int]:
    return [process.memory_full_info().pss for process in processes]


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


# ---------------------------------------------------------------- the bench


class Bench:
    def __init__(self, args: argparse.Namespace, broker: MosquittoBroker, recorder: Recorder, workdir: Path) -> None:
        self.args = args
        self.broker = broker
        self.recorder = recorder
        self.workdir = workdir
        self.results = Results()
        self.startup: dict[tuple[str, int], float] = {}
        self.pss_mean: dict[tuple[str, int], float] = {}
        self.standalone_idle: tuple[int, float] | None = None
        """(N, mean idle CPU per standalone interpreter in % of one core), from the largest standalone run."""

    # ---- issue 3: start-up and memory, sghost vs standalone

    def run_sghost(self, n: int, with_idle_figures: bool) -> None:
        host = f"host{n}"
        names = [f"g{n}r{i:02d}" for i in range(n)]
        sghost = SghostHost(self.workdir, host, manifest(host, self.broker.port, taxisign_tables(names)))
        print(f"\nsghost start, {n} taxisign resources", flush=True)
        times = []
        for rep in range(self.args.reps):
            cursor = Cursor(self.recorder)
            launched = time.monotonic()
            sghost.start()
            try:
                times.append(wait_presences(self.recorder, cursor, names, "True", 60) - launched)
            except BaseException:
                print(sghost.log_tail(), file=sys.stderr)
                sghost.kill_all()
                raise
            if rep < self.args.reps - 1:
                sghost.terminate()
        self.startup["sghost", n] = statistics.median(times)
        self.results.add(f"sghost, N={n}: launch -> every presence True", spread(times))
        try:
            time.sleep(SETTLE)
            meta = sghost.meta(self.recorder)
            resources = sghost.resources(meta)
            if len(resources) != n:
                raise RuntimeError(f"{len(resources)} resource processes under the zygote, expected {n}")
            sizes = pss(resources)
            self.pss_mean["sghost", n] = statistics.mean(sizes)
            supervisor_pss, zygote_pss = pss([sghost.supervisor, sghost.zygote])
            self.results.add(
                f"sghost, N={n}: PSS per resource process (mean)",
                f"{mib(statistics.mean(sizes))} (supervisor {mib(supervisor_pss)}, zygote {mib(zygote_pss)}; "
                f"all together {mib(sum(sizes) + supervisor_pss + zygote_pss)})",
            )
            if with_idle_figures:
                rss = sghost.supervisor.memory_info().rss
                meta_rss = meta.memory_info().rss
                (meta_pss,) = pss([meta])
                self.results.add(
                    f"meta-resource process (health over MQTT), N={n}",
                    f"RSS {mib(meta_rss)}, PSS {mib(meta_pss)}",
                )
                self.results.add(
                    f"sghost's own RSS (supervisor), N={n}", f"{mib(rss)} = {rss / 1e6:.1f} MB", "≤ 20 MiB",
                    rss <= 20 * 1048576,
                )
                self.idle_cpu_and_messages(sghost, names)
                self.kills(sghost, names)
            stopped = sghost.terminate()
            goal = "≤ 2 s" if n >= 50 else ""
            self.results.add(
                f"sghost, N={n}: SIGTERM -> exit", ms(stopped), goal, stopped <= 2.0 if goal else None
            )
        except BaseException:
            print(sghost.log_tail(), file=sys.stderr)
            raise
        finally:
            sghost.kill_all()

    def run_standalone(self, n: int) -> None:
        names = [f"s{n}r{i:02d}" for i in range(n)]
        print(f"\nstandalone, {n} taxisign interpreters", flush=True)
        times = []
        for rep in range(self.args.reps):
            cursor = Cursor(self.recorder)
            launched = time.monotonic()
            processes = start_standalone(names, self.broker)
            try:
                times.append(wait_presences(self.recorder, cursor, names, "True", 120) - launched)
            except BaseException:
                stop_standalone(processes)
                raise
            if rep < self.args.reps - 1:
                stop_standalone(processes)
        self.startup["standalone", n] = statistics.median(times)
        self.results.add(f"standalone, N={n}: launch -> every presence True", spread(times))
        try:
            time.sleep(SETTLE)
            sizes = pss([psutil.Process(process.pid) for process in processes])
            self.pss_mean["standalone", n] = statistics.mean(sizes)
            self.results.add(f"standalone, N={n}: PSS per process (mean)", mib(statistics.mean(sizes)))
            if n == max(self.args.sizes):
                window = self.args.idle_window
                print(f"  idling {window:g} s ...", flush=True)
                shares = cpu_shares([psutil.Process(process.pid) for process in processes], window)
                self.standalone_idle = (n, statistics.mean(shares))
                self.results.add(
                    f"standalone, N={n}: idle CPU, {window:g} s", f"{sum(shares):.2f} % of one core "
                    f"({statistics.mean(shares):.3f} % per interpreter)",
                )
            stopped = stop_standalone(processes)
            self.results.add(f"standalone, N={n}: SIGTERM to all -> all exited", ms(stopped))
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait(5)

    def compare(self, n: int) -> None:
        sghost, standalone = self.startup["sghost", n], self.startup["standalone", n]
        speedup = standalone / sghost
        self.results.add(
            f"N={n}: start-up, standalone / sghost", f"{speedup:.2f}x ({ms(standalone)} / {ms(sghost)})",
            "≥ 8x", speedup >= 8,
        )
        ratio = self.pss_mean["sghost", n] / self.pss_mean["standalone", n]
        self.results.add(
            f"N={n}: PSS per resource, sghost / standalone",
            f"{ratio:.2f} ({mib(self.pss_mean['sghost', n])} / {mib(self.pss_mean['standalone', n])})",
            "≤ 0.25", ratio <= 0.25,
        )

    def warm_up(self) -> None:
        """One unmeasured sghost and standalone start, so that neither side pays for cold file caches."""
        print("\nwarm-up (not measured)", flush=True)
        names = ["warm0"]
        sghost = SghostHost(self.workdir, "warmhost", manifest("warmhost", self.broker.port, taxisign_tables(names)))
        sghost.start()
        try:
            wait_presences(self.recorder, Cursor(self.recorder), names, "True", 60)
            sghost.terminate()
        finally:
            sghost.kill_all()
        cursor = Cursor(self.recorder)
        processes = start_standalone(["warm1"], self.broker)
        try:
            wait_presences(self.recorder, cursor, ["warm1"], "True", 60)
        finally:
            stop_standalone(processes)

    # ---- issue 3: restart after SIGKILL

    def kills(self, sghost: SghostHost, names: list[str]) -> None:
        host = sghost.host
        delays: list[float] = []
        for i in range(self.args.kills):
            name = names[i % len(names)]
            old_pid = int(self.recorder.latest(f"data/{host}/{name}_pid") or 0)
            if old_pid not in {p.pid for p in sghost.zygote.children()}:
                raise RuntimeError(f"{name}: pid {old_pid} from health is not a resource process")
            cursor = Cursor(self.recorder)
            state = {"presence": 0.0, "running": False, "pid": old_pid}

            def accept(message: Received, name: str = name, state: dict = state) -> None:
                if message.topic == presence_topic(name) and message.payload == "True" and not state["presence"]:
                    state["presence"] = message.at
                elif message.topic == f"data/{host}/{name}_state":
                    state["running"] = message.payload == "running"
                elif message.topic == f"data/{host}/{name}_pid":
                    state["pid"] = int(message.payload)

            killed = time.monotonic()
            os.kill(old_pid, signal.SIGKILL)
            def back(state: dict = state, old_pid: int = old_pid) -> bool:
                return bool(state["presence"] and state["running"] and state["pid"] not in (0, old_pid))

            cursor.wait(accept, back, 10, f"{name} back after SIGKILL")
            delays.append(state["presence"] - killed)
            time.sleep(0.1)
        p50, p99 = percentile(delays, 50), percentile(delays, 99)
        self.results.add(
            f"SIGKILL -> presence True again, p50 ({len(delays)} kills, N={len(names)})",
            ms(p50), "≤ 10 ms", p50 <= 0.01,
        )
        self.results.add(f"SIGKILL -> presence True again, p99 ({len(delays)} kills)", ms(p99))

    # ---- issue 4: idle CPU and broker traffic

    def idle_cpu_and_messages(self, sghost: SghostHost, names: list[str]) -> None:
        window = self.args.cpu_window
        supervisor, zygote, meta = sghost.supervisor, sghost.zygote, sghost.meta(self.recorder)
        resources = sghost.resources(meta)
        print(f"  idling {window:g} s (health_interval = {HEALTH_INTERVAL:g}) ...", flush=True)
        first = len(self.recorder.messages)
        started = time.monotonic()
        before = [cpu_seconds(p) for p in (supervisor, zygote, meta, *resources)]
        time.sleep(window)
        after = [cpu_seconds(p) for p in (supervisor, zygote, meta, *resources)]
        ended = time.monotonic()
        wall = ended - started
        share = [(b - a) / wall * 100 for a, b in zip(before, after, strict=True)]
        self.results.add(
            f"sghost CPU, idle, N={len(names)}, {window:g} s (supervisor)", f"{share[0]:.2f} % of one core",
            "≤ 0.5 %", share[0] <= 0.5,
        )
        self.results.add(
            "idle CPU, zygote / meta-resource / mean resource process",
            f"{share[1]:.3f} % / {share[2]:.3f} % / {statistics.mean(share[3:]):.3f} % "
            f"(all resources {sum(share[3:]):.2f} %)",
        )
        window_messages = [m for m in self.recorder.messages[first:] if started <= m.at <= ended]
        per_minute = len(window_messages) * 60 / wall
        self.results.add(f"broker messages per minute, idle host, N={len(names)}", f"{per_minute:.0f}")
        patterns = Counter(topic_pattern(m.topic, sghost.host) for m in window_messages)
        breakdown = ", ".join(f"{pattern} {count * 60 / wall:.0f}" for pattern, count in patterns.most_common())
        self.results.note(f"Idle messages per minute by topic, N={len(names)}: {breakdown or 'none'}")

    # ---- issue 17: the idle cost of many resources

    def idle_cost(self) -> None:
        """CPU of ``--idle-n`` idle taxisign resources together (the zygote's children but the meta-resource)."""
        n, window = self.args.idle_n, self.args.idle_window
        # A broker of its own, and a subscriber to the presences and the health only: 200 resources
        # starting at once publish thousands of announcements and health topics, and a subscriber on '#'
        # that falls behind loses what passes mosquitto's queue of 1,000 messages per client (QoS 0), which
        # in full runs was some of the presences this step waits for.
        with MosquittoBroker() as broker:
            recorder = Recorder(
                broker.host, broker.port, ["resourceavailable/+/presence", f"data/idle{n}/health"]
            ).start()
            try:
                self._idle_cost(n, window, broker, recorder)
            finally:
                recorder.stop()

    def _idle_cost(self, n: int, window: float, broker: MosquittoBroker, recorder: Recorder) -> None:
        host = f"idle{n}"
        names = [f"i{n}r{i:03d}" for i in range(n)]
        sghost = SghostHost(self.workdir, host, manifest(host, broker.port, taxisign_tables(names)))
        print(f"\nidle cost: sghost start, {n} taxisign resources, {window:g} s", flush=True)
        cursor = Cursor(recorder)
        sghost.start()
        try:
            wait_presences(recorder, cursor, names, "True", 180)
            time.sleep(SETTLE)
            meta = sghost.meta(recorder)
            resources = sghost.resources(meta)
            if len(resources) != n:
                raise RuntimeError(f"{len(resources)} resource processes under the zygote, expected {n}")
            print(f"  idling {window:g} s ...", flush=True)
            supervisor, zygote = sghost.supervisor, sghost.zygote
            shares = cpu_shares([supervisor, zygote, meta, *resources], window)
            together = sum(shares[3:])
            standalone = ""
            if self.standalone_idle is not None:
                measured_n, per_process = self.standalone_idle
                standalone = f"; standalone interpreters ≈ {per_process * n:.2f} % (from N={measured_n})"
            self.results.add(
                f"idle cost, {n} taxisign resources, {window:g} s: all resource processes together",
                f"{together:.2f} % of one core ({together / n:.4f} % each{standalone})", "≤ 2 %", together <= 2.0,
            )
            self.results.add(
                f"idle cost, {n} resources: supervisor / zygote / meta-resource",
                f"{shares[0]:.2f} % / {shares[1]:.3f} % / {shares[2]:.2f} %",
            )
            self.results.add(
                f"idle, N={n}: PSS per resource process (mean)", mib(statistics.mean(pss(resources))),
            )
            sghost.terminate(60)
        except BaseException:
            print(sghost.log_tail(), file=sys.stderr)
            raise
        finally:
            sghost.kill_all()

    # ---- issue 4: watchdog

    def hang(self) -> None:
        host, name = "hanghost", "hang0"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TEST_PLUGINS), env.get("PYTHONPATH", "")]))
        env["SGHOST_PLUGINS"] = "sghost_test_plugins"
        tables = f'[resources.{name}]\ntype = "hanger"\nwatchdog = {WATCHDOG}\n'
        sghost = SghostHost(self.workdir, host, manifest(host, self.broker.port, tables), env)
        print(f"\nwatchdog: a hanger with watchdog = {WATCHDOG:g} s", flush=True)
        cursor = Cursor(self.recorder)
        sghost.start()
        to_restart: list[float] = []
        to_running: list[float] = []
        to_presence: list[float] = []
        try:
            wait_presences(self.recorder, cursor, [name], "True", 30)
            for _ in range(self.args.hangs):
                time.sleep(1.0)  # let it run past the stability window, so the restart is immediate
                cursor = Cursor(self.recorder)
                state: dict[str, float] = {"left": 0.0, "running": 0.0, "gone": 0.0, "presence": 0.0}

                def accept(message: Received, state: dict[str, float] = state) -> None:
                    if message.topic == f"data/{host}/{name}_state":
                        if message.payload != "running" and not state["left"]:
                            state["left"] = message.at
                        elif message.payload == "running" and state["left"] and not state["running"]:
                            state["running"] = message.at
                    elif message.topic == presence_topic(name):
                        if message.payload == "False" and not state["gone"]:
                            state["gone"] = message.at
                        elif message.payload == "True" and state["gone"] and not state["presence"]:
                            state["presence"] = message.at

                hung = time.monotonic()
                self.recorder.publish(f"command/{name}/hang", "True")
                cursor.wait(
                    accept, lambda state=state: bool(state["running"] and state["presence"]), WATCHDOG + 10, "restart"
                )
                to_restart.append(state["left"] - hung)
                to_running.append(state["running"] - hung)
                to_presence.append(state["presence"] - hung)
            goal = WATCHDOG + 1.0
            self.results.add(
                f"hang -> killed and restarting (state leaves running), watchdog = {WATCHDOG:g} s",
                f"mean {statistics.mean(to_restart):.2f} s, max {max(to_restart):.2f} s ({len(to_restart)} hangs)",
            )
            self.results.add(
                "hang -> state running again",
                f"mean {statistics.mean(to_running):.2f} s, max {max(to_running):.2f} s",
                f"≤ watchdog + 1 s = {goal:g} s", max(to_running) <= goal,
            )
            self.results.add(
                "hang -> presence True again",
                f"mean {statistics.mean(to_presence):.2f} s, max {max(to_presence):.2f} s",
            )
            sghost.terminate()
        except BaseException:
            print(sghost.log_tail(), file=sys.stderr)
            raise
        finally:
            sghost.kill_all()


# -------------------------------------------------------------------- main


def use_compiled_bytecode(workdir: Path) -> None:
    """Run every interpreter of both sides as a pip-installed gateway runs: from compiled bytecode.

    pip compiles a package's modules when it installs them. A checkout run with
    ``PYTHONDONTWRITEBYTECODE=1`` (as this machine's environment sets) compiles every module
    again in every process, which weighs on sghost's start and memory more than on a
    standalone interpreter's, because sghost imports more. Both sides get the same cache;
    the unmeasured warm-up starts fill it.
    """
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "sghost"), str(ROOT / "sgframework"),
         str(ROOT / "resources"), str(ROOT / "bench")],
        check=True, stdout=subprocess.DEVNULL,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--quick", action="store_true", help="a short smoke run: N = 5 and 10, 10 s idle, 5 kills, idle cost at 50"
    )
    args = parser.parse_args()
    args.sizes = (5, 10) if args.quick else (20, 50)
    args.cpu_window = 10.0 if args.quick else 60.0
    args.kills = 5 if args.quick else 20
    args.hangs = 1 if args.quick else 3
    args.reps = 1 if args.quick else 3
    args.idle_n = 50 if args.quick else 200
    args.idle_window = 10.0 if args.quick else 30.0

    started = time.monotonic()
    info = describe_machine()
    print(f"machine: {info}", flush=True)
    with tempfile.TemporaryDirectory(prefix="sghost-bench-") as tmp, MosquittoBroker() as broker:
        use_compiled_bytecode(Path(tmp))
        recorder = Recorder(broker.host, broker.port, "#").start()
        bench = Bench(args, broker, recorder, Path(tmp))
        try:
            bench.warm_up()
            for i, n in enumerate(args.sizes):
                bench.run_sghost(n, with_idle_figures=i == 0)
                bench.run_standalone(n)
                bench.compare(n)
            bench.idle_cost()
            bench.hang()
        finally:
            recorder.stop()
    results = bench.results
    print(f"\n{info}\n")
    print(results.table())
    for note in results.notes:
        print(f"\n{note}")
    missed = [row.figure for row in results.rows if row.ok is False]
    print(f"\n{len(missed)} goal(s) missed{': ' + '; '.join(missed) if missed else ''}")
    print(f"bench took {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
