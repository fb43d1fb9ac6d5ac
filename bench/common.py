"""Helpers shared by the benchmark scripts: machine facts, percentiles, markdown results.

Every script writes ``bench/results/<name>.md``: a header (date, commit, machine, how busy the
CPU was with other work during the run), then its tables. Nothing here times anything by
itself; the scripts decide what a sample is.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
MAGAZINE = PROJECT_ROOT / "data" / "guangdong-gongyun-2025-12.txt"
SHARED = PROJECT_ROOT.parent / "shared"
CMRC_DEV = SHARED / "benchmarks" / "cmrc2018" / "cmrc2018_dev.json"
MODEL_CACHE = PROJECT_ROOT / ".cache"

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
}


def go_offline() -> None:
    """Make sure nothing this process loads tries to reach a model hub."""
    for k, v in OFFLINE_ENV.items():
        os.environ.setdefault(k, v)


# ---------------------------------------------------------------- machine and provenance


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo."""
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def total_ram_gb() -> float:
    """Total memory in GiB from /proc/meminfo."""
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024**2
    return float("nan")


def usable_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def machine_info() -> dict[str, str]:
    """Cores, RAM, CPU model, OS and Python, as strings for the result header."""
    return {
        "cores": str(usable_cores()),
        "ram": f"{total_ram_gb():.1f} GiB",
        "cpu": cpu_model(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def git_commit() -> str:
    """Short commit of the work tree, with ``+dirty`` when it has uncommitted changes."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# ---------------------------------------------------------------- CPU noise and memory


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    fields = [int(x) for x in _read("/proc/stat").splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


def process_cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds of one process (and its reaped children)."""
    parts = _read(f"/proc/{pid}/stat").rsplit(")", 1)[-1].split()
    if len(parts) < 15:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(x) for x in parts[11:15]) / ticks  # utime stime cutime cstime


@dataclass
class CpuMonitor:
    """How much of the machine other work used while a benchmark ran.

    ``stop()`` returns the share of all cores busy with processes that are not this one (nor the
    pids passed to ``watch``): a number well above 0 means the timings are noisy.
    """

    _busy0: int = 0
    _total0: int = 0
    _own0: float = 0.0
    _watched: dict[int, float] = field(default_factory=dict)
    _watched_end: dict[int, float] = field(default_factory=dict)
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def start(self) -> CpuMonitor:
        """Take the starting counters; returns self."""
        self._busy0, self._total0 = _cpu_jiffies()
        self._own0 = process_cpu_seconds()
        self.load_before = os.getloadavg()
        return self

    def watch(self, pid: int) -> None:
        """Count ``pid`` (a server we started) as our own work."""
        self._watched[pid] = process_cpu_seconds(pid)

    def sample_watched(self) -> None:
        """Record the watched processes' CPU time now (call before they exit)."""
        for pid in self._watched:
            self._watched_end[pid] = process_cpu_seconds(pid)

    def stop(self) -> dict[str, float]:
        """Shares of all cores used by others and by us since ``start``, and the load averages."""
        busy1, total1 = _cpu_jiffies()
        ticks = os.sysconf("SC_CLK_TCK")
        busy_s = (busy1 - self._busy0) / ticks
        wall_cores_s = (total1 - self._total0) / ticks
        own = process_cpu_seconds() - self._own0
        own += sum(self._watched_end.get(p, process_cpu_seconds(p)) - v for p, v in self._watched.items())
        other = max(0.0, busy_s - own)
        return {
            "other_cpu_share": other / wall_cores_s if wall_cores_s else 0.0,
            "own_cpu_share": own / wall_cores_s if wall_cores_s else 0.0,
            "load_before": self.load_before[0],
            "load_after": os.getloadavg()[0],
        }


def wait_until_quiet(max_other: float = 0.1, window_s: float = 10.0, timeout_s: float = 900.0) -> float:
    """Wait until other processes use under ``max_other`` of all cores over ``window_s``.

    Long benchmarks build for many minutes and time queries for seconds; this puts the timed
    part in a quiet moment of a shared machine. Returns the share measured last (the caller
    still records the noise of the timed part itself).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        mon = CpuMonitor().start()
        time.sleep(window_s)
        other = mon.stop()["other_cpu_share"]
        if other <= max_other or time.monotonic() > deadline:
            return other
        log(f"waiting for a quiet machine (others use {other:.0%} of the cores)")


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size of a process in MiB (VmRSS)."""
    return _status_kb(pid, "VmRSS") / 1024


def peak_rss_mb(pid: int | str = "self") -> float:
    """Peak resident set size of a process in MiB (VmHWM)."""
    return _status_kb(pid, "VmHWM") / 1024


def reset_peak_rss(pid: int | str = "self") -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) so the next ``peak_rss_mb`` covers one step only."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _status_kb(pid: int | str, key: str) -> int:
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def dir_size_bytes(path: Path) -> int:
    """Total size of the files under ``path`` (or of ``path`` itself)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ---------------------------------------------------------------- statistics and formatting


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) with linear interpolation between ranks (numpy's default)."""
    if not values:
        return float("nan")
    xs = sorted(values)
    pos = (len(xs) - 1) * p / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(values: Sequence[float]) -> dict[str, float]:
    """n, mean, p50, p95, p99 and max of a list of samples."""
    return {
        "n": len(values),
        "mean": sum(values) / len(values) if values else float("nan"),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values) if values else float("nan"),
    }


def fmt(x: Any, digits: int = 1) -> str:
    """A table cell: floats rounded, large integers with thousands separators."""
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if math.isnan(x):
            return "–"
        return f"{x:,.{digits}f}"
    return str(x)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], digits: int | Sequence[int] = 1) -> str:
    """A GitHub markdown table; numbers are right-aligned, floats rounded to ``digits`` (one per column,
    or one for all)."""
    per_col = [digits] * len(headers) if isinstance(digits, int) else list(digits)
    rows = [list(r) for r in rows]
    numeric = [
        bool(rows) and all(isinstance(r[i], int | float) or r[i] in ("–", "") for r in rows) for i in range(len(headers))
    ]
    out = ["| " + " | ".join(headers) + " |"]
    out.append("|" + "|".join("---:" if n else "---" for n in numeric) + "|")
    for r in rows:
        out.append("| " + " | ".join(fmt(c, d) for c, d in zip(r, per_col, strict=True)) + " |")
    return "\n".join(out)


def result_header(title: str, noise: dict[str, float] | None = None, command: str | None = None) -> str:
    """Date, commit, machine and CPU contention, as the opening of a result file."""
    m = machine_info()
    lines = [
        f"# {title}",
        "",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- commit: `{git_commit()}`",
        f"- machine: {m['cores']} cores, {m['ram']} RAM, {m['cpu']}; {m['os']}; Python {m['python']}",
        f"- command: `{command or ' '.join([Path(sys.executable).name, *sys.argv])}`",
    ]
    knobs = {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "RAG_EMBED_THREADS") if k in os.environ}
    if knobs:
        lines.append("- environment: " + ", ".join(f"`{k}={v}`" for k, v in knobs.items()))
    if noise is not None:
        other = noise["other_cpu_share"]
        verdict = "quiet" if other < 0.1 else "shared with other work: numbers are noisy" if other < 0.5 else (
            "heavily shared with other work: treat numbers as upper bounds"
        )
        lines.append(
            f"- CPU used by other processes during the run: {other:.0%} of all cores ({verdict}); "
            f"load average {noise['load_before']:.2f} → {noise['load_after']:.2f}"
        )
    return "\n".join(lines) + "\n"


def write_result(name: str, title: str, sections: Sequence[str], noise: dict[str, float] | None = None) -> Path:
    """Print the result and write it to ``bench/results/<name>.md``; returns the path."""
    text = result_header(title, noise) + "\n" + "\n\n".join(s.strip("\n") for s in sections) + "\n"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.md"
    path.write_text(text, encoding="utf-8")
    print(text)
    print(f"[written to {path.relative_to(PROJECT_ROOT)}]", file=sys.stderr)
    return path


def time_calls(
    questions: list[str], call: Callable[[str], dict[str, float]], repeats: int
) -> dict[str, list[float]]:
    """Run ``call`` on every question ``repeats`` times; per-stage samples (ms) plus ``wall``."""
    samples: dict[str, list[float]] = {}
    for _ in range(repeats):
        for q in questions:
            t0 = time.perf_counter()
            stages = call(q)
            wall = (time.perf_counter() - t0) * 1000
            for k, v in stages.items():
                samples.setdefault(k, []).append(float(v))
            samples.setdefault("wall", []).append(wall)
    return samples


def time_interleaved(
    questions: list[str], calls: dict[str, Callable[[str], object]], repeats: int
) -> dict[str, list[float]]:
    """Wall times (ms) per system, measured question by question in turn across the systems.

    On a shared machine speed drifts over seconds; timing one system's whole block after
    another's puts that drift into the ratio. Interleaving (and rotating which system goes
    first) gives every system the same conditions.
    """
    labels = list(calls)
    samples: dict[str, list[float]] = {label: [] for label in labels}
    n = 0
    for _ in range(repeats):
        for q in questions:
            order = labels[n % len(labels) :] + labels[: n % len(labels)]
            n += 1
            for label in order:
                t0 = time.perf_counter()
                calls[label](q)
                samples[label].append((time.perf_counter() - t0) * 1000)
    return samples


def log(msg: str) -> None:
    """Progress on stderr, with a timestamp, so long runs can be followed with ``tail -f``."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- evaluation data


def default_qa_path() -> Path:
    """The project's dev set if it exists, else the shared seed set."""
    own = PROJECT_ROOT / "eval" / "dev_qa.jsonl"
    return own if own.exists() else SHARED / "eval" / "seed_dev_qa.jsonl"


def load_dev_questions(path: Path) -> list[Any]:
    """The dev set as ``rag.evaluate.QAItem`` records (the eval's own loader and schema)."""
    from rag.evaluate import load_qa

    return load_qa(path)


def evidence_hit(item: Any, passages: Sequence[str]) -> bool | None:
    """The eval's hit rule (``rag.evaluate.evidence_rank``): some passage shares a common substring
    of ``min(len(evidence), 30)`` characters with some evidence quote; None when unanswerable."""
    from rag.evaluate import evidence_rank

    if not item.evidence:
        return None
    return evidence_rank(item.evidence, passages) is not None


# ---------------------------------------------------------------- a temporary magazine index


def bench_settings(index_dir: Path, **overrides: Any) -> Any:
    """Project settings with the index and feedback store under ``index_dir``.

    The converted model is cached in the project's ``.cache`` (as the tests do), so only the
    first run on a machine pays for the conversion.
    """
    from rag.config import EmbedSettings, IndexSettings, ServeSettings, Settings

    return Settings(
        data_dir=MAGAZINE.parent,
        index=IndexSettings(dir=index_dir),
        embed=EmbedSettings(cache_dir=MODEL_CACHE),
        serve=ServeSettings(feedback_db=index_dir / "feedback.sqlite"),
        **overrides,
    )


def load_bench_embedder(settings: Any) -> Any:
    """The project's embedder, loaded once per script."""
    from rag.embed import load_embedder

    go_offline()
    return load_embedder(settings.embed)


def build_magazine_runtime(index_dir: Path, embedder: Any = None) -> Any:
    """Index the magazine into ``index_dir`` and return a ready ``Runtime``."""
    from rag.index import build_index, load_index
    from rag.runtime import Runtime

    settings = bench_settings(index_dir)
    embedder = embedder or load_bench_embedder(settings)
    build_index([MAGAZINE], settings, embedder)
    return Runtime(settings=settings, embedder=embedder, index=load_index(settings, embedder))
