"""Run untrusted generated code in a confined process, with a verdict it cannot forge.

Threat model. The program (a model's completion) is hostile: it may loop forever, fork-bomb, allocate
without bound, fill the disk, read secrets (environment, files, other processes, the kernel keys the evaluator
holds), open network connections, signal or trace the evaluator, delete or rewrite files, reply with values
built to be slow to decode, or try to fake a pass (print "passed", exit 0 early, ``os._exit(0)``, atexit
hooks, objects whose ``__eq__`` is always true, monkey-patching the test's builtins).
The test code (HumanEval's ``check``) and the problem prompt are trusted: they come from the dataset.

Design. The program runs in its own process (``_harness.py``, started with ``python -I -S -B``: no
site-packages, no environment influence). The trusted test runs *here*, in the evaluator's process, and
calls the program's function through a proxy; arguments and results cross a pipe as tagged plain data
(ints, floats, strings, bytes, lists, tuples, dicts, sets, and iterators, ranges and dict views as the check
would iterate them; never pickle, never objects). So the verdict is decided outside the untrusted process: it
is "passed" only if ``check(candidate)`` returned here. Nothing the program prints, no exit code, no atexit
hook and no patched builtin can reach that decision; an object with a rigged ``__eq__`` cannot even be sent.
What the program does control is the values its function returns, which is exactly what the test judges. A
reply is bounded in bytes, items and depth, and decoded within the deadline.

Layers, as root (the case here; each is reported in ``Verdict.layers``):
- a throw-away uid/gid (random, ≥ 2**20, no supplementary groups, ``no_new_privs``): the program cannot
  signal, trace or read the evaluator (a different uid), nor write root-owned files;
- a fresh, empty session keyring (joined before the uid changes), and a seccomp filter failing add_key,
  request_key and keyctl: the keys the evaluator holds are neither readable nor removable (possession of a
  session keyring, not the uid, is what grants access to its keys);
- new network namespace (only a down loopback: no connection anywhere) plus a Python audit hook refusing
  every ``socket.*`` event as a second layer;
- new mount namespace: private 16 MiB tmpfs on /tmp, /var/tmp, /dev/shm, /run/lock (the only world-writable
  places), and the working directory is a fresh directory on that private /tmp, so the program can write
  at most those few MiB; the Python installation's non-traversable home (e.g. /root) is replaced by a
  tmpfs holding a read-only bind of the installation alone, so secrets there are invisible;
- new PID namespace with a fresh /proc: other processes are invisible; when its init exits, the kernel
  kills every leftover process (fork-bomb children, daemons); new IPC and UTS namespaces;
- rlimits: CPU seconds, address space, processes (counted for the throw-away uid only), file size,
  open files, no core dumps;
- a wall-clock deadline enforced here: the whole process group is SIGKILLed, then every process of the
  throw-away uid is SIGKILLed (``kill(-1)`` from a helper that became that uid), then the temp dir is removed;
- an empty environment (PATH, HOME and LANG only, nothing inherited).

Fallback. Without root the harness cannot change uid or build these namespaces; it can still apply the
rlimits, the fresh keyring, the seccomp filter, the audit hook and, where user namespaces are allowed, a
network namespace. Such a sandbox can signal the evaluator and write the user's files, so it is refused
(``IsolationError``) unless the caller passes ``SandboxLimits(allow_weak_isolation=True)``. Running the
program as root is never allowed.

Not covered: kernel exploits, CPU-cache side channels, reading world-readable files (the source tree, the
datasets), load on the shared CPUs within the limits, and the time the trusted check itself spends on a
decoded reply (a check that builds its own set from hash-colliding values returned to it); an iterator
is read to its end in the sandbox, so a check that takes only the first items of an endless one fails here.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from orchestration.evaluation._harness import MAX_ITEMS, decode, encode

HARNESS = str(Path(__file__).with_name("_harness.py"))
STRONG_LAYERS = ("rlimits", "keyring", "uid", "netns", "mountns", "pidns", "seccomp", "audit-hook")
UID_RANGE = (1 << 20, (1 << 31) - 2)


@dataclass(frozen=True)
class SandboxLimits:
    """Limits for one sandboxed program. ``timeout_s`` is wall-clock, from start to the last reply decoded;
    a reply holds at most ``max_reply_bytes`` and ``max_reply_items`` values (nested at most 200 deep)."""

    timeout_s: float = 10.0
    cpu_s: int = 10
    memory_bytes: int = 1 << 30
    max_processes: int = 16
    max_file_bytes: int = 16 << 20
    max_open_files: int = 64
    max_reply_bytes: int = 16 << 20
    max_reply_items: int = MAX_ITEMS
    allow_weak_isolation: bool = False


@dataclass(frozen=True)
class Verdict:
    """Outcome of one program against its trusted test. ``status``: passed, failed or timeout."""

    passed: bool
    status: str
    detail: str = ""
    seconds: float = 0.0
    layers: tuple[str, ...] = field(default_factory=tuple)
    uid: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class SandboxError(Exception):
    """The program misbehaved in a way the test may see (it raised, or returned something unsendable)."""


class SandboxAbort(BaseException):
    """The sandbox is gone or broke protocol: crash, timeout, garbage on the pipe. The verdict is failed."""


class SandboxTimeout(SandboxAbort):
    pass


class IsolationError(RuntimeError):
    """The machine cannot confine the program as required; nothing untrusted was run."""


def _scrubbed_env(workdir: str) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "LANG": "C.UTF-8"}


def kill_uid(uid: int) -> None:
    """SIGKILL every process of ``uid`` (root only): a child becomes that uid and sends kill(-1)."""
    if os.geteuid() != 0 or uid < UID_RANGE[0]:
        return
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the forked child
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            if os.getuid() == uid and os.geteuid() == uid:  # never kill(-1) as root
                os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def processes_of(uid: int) -> list[int]:
    """PIDs (host namespace) of the processes owned by ``uid``, zombies included."""
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{name}").st_uid == uid:
                    pids.append(int(name))
    return pids


def _reap_uid(uid: int, timeout_s: float = 5.0) -> None:
    """Return once no process of ``uid`` is left, killing them all (the PID namespace's teardown is async)."""
    deadline = time.monotonic() + timeout_s
    while processes_of(uid) and time.monotonic() < deadline:
        kill_uid(uid)
        time.sleep(0.005)


class Sandbox:
    """One untrusted program loaded in a confined process; call its functions through ``function(name)``."""

    def __init__(self, program: str, limits: SandboxLimits | None = None):
        self.program, self.limits = program, limits or SandboxLimits()
        self.uid: int | None = None
        self.layers: tuple[str, ...] = ()
        self._proc: subprocess.Popen | None = None
        self._buffer = b""
        self._workdir: str | None = None
        self._deadline = 0.0
        self._dead = False

    # -- lifecycle

    def start(self) -> None:
        """Spawn the harness, send the program, wait until it is loaded (raises SandboxError if it fails to)."""
        limits = self.limits
        self._deadline = time.monotonic() + limits.timeout_s
        self._workdir = tempfile.mkdtemp(prefix="comol-sandbox-")
        is_root = os.geteuid() == 0
        if is_root:
            self.uid = UID_RANGE[0] + secrets.randbelow(UID_RANGE[1] - UID_RANGE[0])
            os.chown(self._workdir, self.uid, self.uid)
        os.chmod(self._workdir, 0o700)
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", HARNESS],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=self._workdir,
            env=_scrubbed_env(self._workdir),
            start_new_session=True,
            close_fds=True,
            bufsize=0,
        )
        for stream in (self._proc.stdin, self._proc.stdout):
            os.set_blocking(stream.fileno(), False)
        required = ("rlimits",) if limits.allow_weak_isolation and not is_root else STRONG_LAYERS
        config = {
            "program": self.program,
            "uid": self.uid,
            "limits": {k: v for k, v in asdict(limits).items() if not k.startswith(("timeout", "max_reply"))},
            "required_layers": required,
        }
        self._send(config)
        confined = self._receive()  # sent by the harness before the program runs, so it cannot be forged
        layers = confined.get("layers")
        if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
            raise SandboxAbort("malformed confinement message")
        self.layers = tuple(layers)
        if confined.get("confined") is not True:
            raise IsolationError(f"sandbox refused to run untrusted code: {confined.get('isolation_error')}")
        reply = self._receive()
        if reply.get("ready") is not True:
            raise SandboxError(f"program failed to load: {str(reply.get('error'))[:1000]}")

    def close(self) -> None:
        """Kill the process group and every process of the throw-away uid, reap, remove the temp dir."""
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):  # leader unreaped: pgid not reused
                os.killpg(self._proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):  # SIGKILLed processes do exit
                self._proc.wait(timeout=10)
            if self.uid is not None:
                _reap_uid(self.uid)
            for stream in (self._proc.stdin, self._proc.stdout):
                with contextlib.suppress(OSError):
                    stream.close()
            self._proc = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        self._dead = True

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls

    def call(self, name: str, *args: object) -> object:
        """Call ``name(*args)`` in the sandbox; its plain-data result, or SandboxError if it raised there."""
        if self._dead or self._proc is None:
            raise SandboxAbort("sandbox is not running")
        self._send({"call": name, "args": [encode(arg) for arg in args]})
        reply = self._receive()
        if set(reply) == {"ok"}:
            try:
                return decode(reply["ok"], max_items=self.limits.max_reply_items, deadline=self._deadline)
            except TimeoutError:
                self._dead = True
                raise SandboxTimeout(
                    f"wall-clock limit of {self.limits.timeout_s:g}s reached decoding a reply"
                ) from None
            except (ValueError, TypeError, RecursionError) as err:
                self._dead = True
                raise SandboxAbort(f"undecodable reply: {err}") from None
        if set(reply) == {"error"} and isinstance(reply["error"], str):
            raise SandboxError(reply["error"][:1000])
        self._dead = True
        raise SandboxAbort("unexpected reply from the sandbox")

    def function(self, name: str) -> Callable[..., object]:
        def proxy(*args: object) -> object:
            return self.call(name, *args)

        proxy.__name__ = proxy.__qualname__ = name
        return proxy

    # -- pipe I/O with the deadline

    def _remaining(self) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            self._dead = True
            raise SandboxTimeout(f"wall-clock limit of {self.limits.timeout_s:g}s reached")
        return left

    def _send(self, message: dict) -> None:
        data = (json.dumps(message) + "\n").encode()
        fd = self._proc.stdin.fileno()
        while data:
            _, writable, _ = select.select([], [fd], [], self._remaining())
            if writable:
                try:
                    data = data[os.write(fd, data) :]
                except (BrokenPipeError, ConnectionResetError):
                    self._dead = True
                    raise SandboxAbort("sandbox process exited") from None
                except BlockingIOError:
                    continue

    def _receive(self) -> dict:
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buffer:
            readable, _, _ = select.select([fd], [], [], self._remaining())
            if not readable:
                continue
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                continue
            if not chunk:
                self._dead = True
                raise SandboxAbort("sandbox process exited before replying")
            self._buffer += chunk
            if len(self._buffer) > self.limits.max_reply_bytes:
                self._dead = True
                raise SandboxAbort("reply larger than max_reply_bytes")
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            message = None
        if not isinstance(message, dict):
            self._dead = True
            raise SandboxAbort("malformed message from the sandbox")
        return message


def run_check(
    program: str,
    test: str,
    entry_point: str,
    *,
    trusted_prelude: str = "",
    limits: SandboxLimits | None = None,
) -> Verdict:
    """Load untrusted ``program`` in a sandbox and run the trusted ``test`` (defining ``check``) here against it.

    ``trusted_prelude`` is executed here first (for HumanEval: the prompt, whose helpers the test uses);
    then ``entry_point`` and ``check``'s argument are the sandboxed function. Raises IsolationError when the
    machine cannot confine the program; every other outcome is a Verdict.
    """
    started = time.monotonic()
    sandbox = Sandbox(program, limits)
    status, detail = "passed", ""
    try:
        sandbox.start()
        candidate = sandbox.function(entry_point)
        namespace: dict = {}
        exec(compile(trusted_prelude, "<prelude>", "exec"), namespace)
        namespace[entry_point] = candidate
        exec(compile(test, "<test>", "exec"), namespace)
        namespace["check"](candidate)
    except IsolationError:
        raise
    except SandboxTimeout as err:
        status, detail = "timeout", str(err)
    except (SandboxAbort, Exception) as err:
        status, detail = "failed", f"{type(err).__name__}: {err}"[:1000]
    finally:
        sandbox.close()
    return Verdict(
        passed=status == "passed",
        status=status,
        detail=detail,
        seconds=time.monotonic() - started,
        layers=sandbox.layers,
        uid=sandbox.uid,
    )


@dataclass(frozen=True)
class CheckTask:
    """One (untrusted program, trusted test) pair for ``run_checks``; picklable for worker processes."""

    program: str
    test: str
    entry_point: str
    trusted_prelude: str = ""
    limits: SandboxLimits | None = None


def _run_task(task: CheckTask) -> Verdict:
    return run_check(
        task.program, task.test, task.entry_point, trusted_prelude=task.trusted_prelude, limits=task.limits
    )


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)))


def run_checks(
    tasks: list[CheckTask], *, workers: int | None = None, progress: bool = False, desc: str = "sandbox"
) -> list[Verdict]:
    """Verdicts for many tasks, in order, ``workers`` sandboxes at a time; IsolationError propagates.

    Threads, not processes: the work happens in the sandbox processes, the trusted tests are light, and a
    thread pool needs no ``__main__`` guard and no fork of a large (torch, CUDA, Ray) host process.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    workers = workers or default_workers()
    with ThreadPoolExecutor(workers, thread_name_prefix="sandbox") as pool:
        return list(tqdm(pool.map(_run_task, tasks), total=len(tasks), desc=desc, disable=not progress))
