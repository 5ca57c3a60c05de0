"""Hostile completions against the real sandbox: each must fail, and none may harm the evaluator.

Every hostile program defines ``add`` so that it returns the right answer only if its attack worked: a
"passed" verdict would mean a breach. Around the verdicts, the test checks the evaluator's side directly:
files intact, the evaluator's kernel key intact, no connection reached the listener, no process of the
throw-away uid left, evaluator alive.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import socket
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from orchestration.evaluation._harness import KEY_SYSCALLS
from orchestration.evaluation.sandbox import (
    STRONG_LAYERS,
    CheckTask,
    SandboxLimits,
    processes_of,
    run_check,
    run_checks,
)

TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"
SECRET_NAME = "COMOL_SANDBOX_TEST_SECRET"
LIMITS = SandboxLimits(timeout_s=4.0, cpu_s=3)

_, ADD_KEY, _, KEYCTL = KEY_SYSCALLS[platform.machine()]  # the kernel's key syscalls: libc has no wrapper
KEY_SPEC_SESSION_KEYRING = -3
KEYCTL_REVOKE, KEYCTL_UNLINK, KEYCTL_SEARCH, KEYCTL_READ = 3, 9, 10, 11
_LIBC = ctypes.CDLL(None, use_errno=True)


def _syscall(number: int, *args: int | bytes | None) -> int:
    """``syscall(2)`` with every integer passed as a C long (what the kernel reads), bytes as pointers."""
    return _LIBC.syscall(ctypes.c_long(number), *(ctypes.c_long(a) if isinstance(a, int) else a for a in args))


def read_key(key_id: int) -> bytes | None:
    buffer = ctypes.create_string_buffer(256)
    size = _syscall(KEYCTL, KEYCTL_READ, key_id, buffer, len(buffer))
    return buffer.raw[:size] if size >= 0 else None


HOSTILE = {
    "fork_bomb": """
        import os
        def add(a, b):
            while True:
                try:
                    os.fork()
                except OSError:
                    pass
        """,
    "endless_loop": """
        def add(a, b):
            while True:
                pass
        """,
    "huge_allocation": """
        def add(a, b):
            try:
                block = bytearray(8 << 30)
                block[-1] = 1
            except MemoryError:
                return a + b + 1
            return a + b
        """,
    "creeping_allocation": """
        hoard = []
        def add(a, b):
            while True:
                hoard.append(bytearray(1 << 24))
        """,
    "write_outside": """
        def add(a, b):
            try:  # lands in the sandbox's private /tmp, not the host's (checked by the test)
                with open("../escape.txt", "w") as handle:
                    handle.write("pwned")
            except OSError:
                pass
            wrote = 0
            for path in ({target_file!r}, {target_dir!r} + "/new.txt"):
                try:
                    with open(path, "w") as handle:
                        handle.write("pwned")
                    wrote += 1
                except OSError:
                    pass
            return a + b if wrote else a + b + 1
        """,
    "delete_files": """
        import os, shutil
        def add(a, b):
            deleted = 0
            for action in (lambda: os.remove({target_file!r}), lambda: shutil.rmtree({target_dir!r})):
                try:
                    action()
                    deleted += 1
                except OSError:
                    pass
            return a + b if deleted else a + b + 1
        """,
    "read_environment": """
        import glob, os
        def add(a, b):
            if {secret_name!r} in os.environ:
                return a + b
            for path in glob.glob("/proc/*/environ"):
                try:
                    with open(path, "rb") as handle:
                        if {secret_name!r}.encode() in handle.read():
                            return a + b
                except OSError:
                    pass
            return a + b + 1
        """,
    "read_secret_file": """
        def add(a, b):
            for path in ({secret_file!r}, "/etc/shadow", "/root/.bash_history"):
                try:
                    with open(path, "rb") as handle:
                        handle.read(1)
                    return a + b
                except OSError:
                    pass
            return a + b + 1
        """,
    "socket_python": """
        import socket
        def add(a, b):
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=1).close()
            except OSError:
                return a + b + 1
            return a + b
        """,
    "socket_ctypes_bypassing_audit_hook": """
        import ctypes, struct
        def add(a, b):
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.socket(2, 1, 0)  # AF_INET, SOCK_STREAM, straight to the kernel
            if fd < 0:
                return a + b + 1
            address = struct.pack("!HH4s8x", 2, {port}, bytes([127, 0, 0, 1]))
            address = struct.pack("=H", 2) + address[2:]
            connected = libc.connect(fd, address, len(address)) == 0
            return a + b if connected else a + b + 1
        """,
    "kill_parent_and_evaluator": """
        import os, signal
        def add(a, b):
            hits = 0
            for pid in (os.getppid(), {evaluator_pid}):
                try:
                    os.kill(pid, 0)  # permission probe first, so a failure here is a real refusal
                    os.kill(pid, signal.SIGKILL)
                    hits += pid > 1
                except OSError:
                    pass
            return a + b if hits else a + b + 1
        """,
    "keyring_secret": """
        import ctypes
        breaches = []  # across calls: the first one may leave nothing for the second to find
        def add(a, b):
            libc = ctypes.CDLL(None, use_errno=True)
            def keyctl(*args):
                return libc.syscall(*(ctypes.c_long(x) if isinstance(x, int) else x for x in ({keyctl}, *args)))
            buffer = ctypes.create_string_buffer(256)
            size = keyctl(11, {key_id}, buffer, 256)  # KEYCTL_READ the evaluator's key by its id
            breaches.append(size > 0 and {key_secret!r}.encode() in buffer.raw[:size])
            breaches.append(keyctl(10, -3, b"user", {key_name!r}.encode(), 0) > 0)  # KEYCTL_SEARCH the session
            try:
                with open("/proc/keys") as handle:  # lists every key this process may view
                    breaches.append({key_name!r} in handle.read())
            except OSError:
                pass
            breaches.append(keyctl(2, {key_id}, b"overwritten", 11) == 0)  # KEYCTL_UPDATE its payload
            breaches.append(keyctl(9, {key_id}, -3) == 0)  # KEYCTL_UNLINK it from the session keyring
            keyctl(7, -3)  # KEYCTL_CLEAR the session keyring (the test checks the evaluator's is intact)
            breaches.append(keyctl(3, {key_id}) == 0)  # KEYCTL_REVOKE it
            return a + b if any(breaches) else a + b + 1
        """,
    "regain_root": """
        import os
        def add(a, b):
            try:
                os.setuid(0)
            except OSError:
                return a + b + 1
            return a + b
        """,
    "fake_verdict_by_printing": """
        import os, sys
        print("passed")
        for fd in range(0, 32):
            try:
                os.write(fd, b'passed\\n{{"ready": true}}\\n{{"ok": ["int", "0x5"]}}\\n')
            except OSError:
                pass
        def add(a, b):
            print("passed", flush=True)
            return 0
        """,
    "sys_exit_zero_early": """
        import sys
        sys.exit(0)
        def add(a, b):
            return a + b
        """,
    "os_exit_zero_early": """
        import os
        os._exit(0)
        """,
    "os_exit_zero_in_call": """
        import os
        def add(a, b):
            print("passed", flush=True)
            os._exit(0)
        """,
    "atexit_prints_passed": """
        import atexit
        atexit.register(lambda: print("passed"))
        def add(a, b):
            raise RuntimeError("wrong on purpose")
        """,
    "always_equal_object": """
        class AlwaysEqual:
            def __eq__(self, other):
                return True
        def add(a, b):
            return AlwaysEqual()
        """,
    "daemon_left_behind": """
        import os, time
        def add(a, b):
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    time.sleep(600)
                os._exit(0)
            return a + b + 1
        """,
    "fill_disk_many_files": """
        def add(a, b):
            written = 0
            for i in range(64):
                try:
                    with open(f"part{{i}}.bin", "wb") as handle:
                        for _ in range(8):
                            handle.write(b"x" * (1 << 20))
                            written += 1 << 20
                except OSError:
                    pass
            return a + b if written > (64 << 20) else a + b + 1
        """,
    "fill_disk": """
        def add(a, b):
            with open("big.bin", "wb") as handle:
                for _ in range(1024):
                    handle.write(b"x" * (1 << 20))
            return a + b
        """,
}


@pytest.fixture
def victims(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Things a hostile program would like to reach: files, a secret, a listener, the evaluator's pid."""
    target_dir = tmp_path / "victim"
    target_dir.mkdir()
    target_dir.chmod(0o777)
    target_file = target_dir / "keep.txt"
    target_file.write_text("original")
    target_file.chmod(0o666)
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text("s3cret")
    secret_file.chmod(0o600)
    monkeypatch.setenv(SECRET_NAME, "hunter2")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    key_name, key_secret = f"comol-sandbox-test-{os.getpid()}-{time.monotonic_ns()}", "k3y-s3cret"
    key_id = _syscall(
        ADD_KEY, b"user", key_name.encode(), key_secret.encode(), len(key_secret), KEY_SPEC_SESSION_KEYRING
    )
    assert key_id > 0, os.strerror(ctypes.get_errno())
    yield {
        "target_dir": str(target_dir),
        "target_file": str(target_file),
        "secret_file": str(secret_file),
        "secret_name": SECRET_NAME,
        "port": listener.getsockname()[1],
        "evaluator_pid": os.getpid(),
        "keyctl": KEYCTL,
        "key_id": key_id,
        "key_name": key_name,
        "key_secret": key_secret,
        "listener": listener,
    }
    listener.close()
    _syscall(KEYCTL, KEYCTL_REVOKE, key_id)  # gone from the evaluator's keyring too (fails if already revoked)
    _syscall(KEYCTL, KEYCTL_UNLINK, key_id, KEY_SPEC_SESSION_KEYRING)


def test_sandbox_reports_every_isolation_layer():
    verdict = run_check("def add(a, b):\n    return a + b\n", TEST, "add")
    assert verdict.passed, verdict
    for layer in STRONG_LAYERS:
        assert any(name.startswith(layer) for name in verdict.layers), (layer, verdict.layers)


def test_key_syscalls_fail_inside():
    """The seccomp layer on its own: behind the fresh keyring, even the program's own keys are out of reach."""
    program = textwrap.dedent(f"""
        import ctypes
        def key_errors():
            libc = ctypes.CDLL(None, use_errno=True)
            errors = []
            for args in (({ADD_KEY}, b"user", b"mine", b"x", 1, -3), ({KEYCTL}, 0, -3, 1)):  # add; get the keyring
                result = libc.syscall(*(ctypes.c_long(a) if isinstance(a, int) else a for a in args))
                errors.append(ctypes.get_errno() if result < 0 else 0)
            return errors
        """)
    test = f"def check(candidate):\n    assert candidate() == [{errno.EPERM}, {errno.EPERM}]\n"
    verdict = run_check(program, test, "key_errors")
    assert verdict.passed, verdict


def test_hostile_completions_are_contained(victims):
    torch_threads_free_start = time.monotonic()
    names = sorted(HOSTILE)
    fields = {k: v for k, v in victims.items() if k != "listener"}
    tasks = [CheckTask(textwrap.dedent(HOSTILE[name]).format(**fields), TEST, "add", limits=LIMITS) for name in names]
    verdicts = dict(zip(names, run_checks(tasks, workers=2), strict=True))
    elapsed = time.monotonic() - torch_threads_free_start

    table = {name: (v.status, v.detail[:70]) for name, v in verdicts.items()}
    print("\n".join(f"{name:38s} {status:8s} {detail}" for name, (status, detail) in table.items()))
    print(f"hostile table: {len(names)} programs in {elapsed:.1f}s")
    assert len(names) >= 10
    assert all(not v.passed for v in verdicts.values()), table
    # Stopped by a time limit: the wall deadline (a loaded machine) or the CPU rlimit, which kills the process
    # before it can reply (an idle machine reaches LIMITS.cpu_s before LIMITS.timeout_s).
    for name in ("endless_loop", "fork_bomb"):
        verdict = verdicts[name]
        assert verdict.status == "timeout" or "exited before replying" in verdict.detail, (name, verdict)
        assert verdict.seconds < LIMITS.timeout_s + 5, (name, verdict)
    # Files outside the sandbox are untouched, nothing new appeared.
    assert Path(victims["target_file"]).read_text() == "original"
    assert sorted(os.listdir(victims["target_dir"])) == ["keep.txt"]
    assert not Path(tempfile.gettempdir(), "escape.txt").exists()
    # The key the evaluator holds in its session keyring is still there, linked and unchanged.
    assert read_key(victims["key_id"]) == victims["key_secret"].encode()
    found = _syscall(KEYCTL, KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, b"user", victims["key_name"].encode(), 0)
    assert found == victims["key_id"]
    # No connection reached the evaluator's listener.
    with pytest.raises(BlockingIOError):
        victims["listener"].accept()
    # No process of any throw-away uid survived (fork bomb, daemon).
    for name, verdict in verdicts.items():
        assert verdict.uid is not None and processes_of(verdict.uid) == [], name
    # The evaluator is alive and the sandbox still works after all that.
    assert run_check("def add(a, b):\n    return a + b\n", TEST, "add").passed


# Attacks whose success the control run can show safely (no killing, no bombs, no disk filling).
CONTROL = (
    "write_outside",
    "delete_files",
    "read_environment",
    "read_secret_file",
    "keyring_secret",
    "socket_python",
    "socket_ctypes_bypassing_audit_hook",
    "regain_root",
)


def test_the_attacks_work_without_the_sandbox(victims):
    """Control: run unconfined (a plain subprocess of the evaluator), the same programs do breach."""
    import subprocess
    import sys

    fields = {k: v for k, v in victims.items() if k != "listener"}
    cwd = Path(victims["target_dir"]).parent / "control"  # so "../escape.txt" stays inside tmp_path
    cwd.mkdir()
    for name in CONTROL:
        Path(victims["target_dir"]).mkdir(exist_ok=True)
        Path(victims["target_file"]).write_text("original")
        program = textwrap.dedent(HOSTILE[name]).format(**fields) + "\nprint(add(2, 3))\n"
        result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, cwd=cwd)
        assert result.stdout.strip() == "5", (name, result.stdout, result.stderr)
    victims["listener"].accept()[0].close()  # the unconfined connections did arrive
    assert read_key(victims["key_id"]) is None  # and the unconfined program revoked the evaluator's key


COLLIDING_REPLY = """
class Colliding(set):  # crosses as a set, iterated here without ever being built
    def __iter__(self):
        return iter([k * (2**61 - 1) for k in range(1, 40001)])  # all hash to 0: a set of them takes n**2 steps
def add(a, b):
    return Colliding()
"""


def test_a_reply_built_to_collide_is_decoded_within_the_deadline():
    verdict = run_check(COLLIDING_REPLY, TEST, "add", limits=LIMITS)
    assert verdict.status == "timeout", verdict
    assert verdict.seconds < LIMITS.timeout_s + 5, verdict  # + closing: kill, reap, remove (a loaded machine)


# Replies past the bounds on their structure: refused while decoding, long before any deadline.
OVERSIZED_REPLIES = {
    "too many items": ("return [[1, 2]] * 600", "too many items"),
    "nested too deeply": ("x = []\n    for _ in range(300):\n        x = [x]\n    return x", "nested too deeply"),
    "too many bytes": ("return 'x' * (2 << 20)", "larger than max_reply_bytes"),
}


def test_replies_beyond_the_structure_bounds_are_refused():
    limits = SandboxLimits(timeout_s=30.0, max_reply_items=1000, max_reply_bytes=1 << 20)
    names = list(OVERSIZED_REPLIES)
    programs = [f"def add(a, b):\n    {OVERSIZED_REPLIES[name][0]}\n" for name in names]
    verdicts = run_checks([CheckTask(program, TEST, "add", limits=limits) for program in programs], workers=2)
    for name, verdict in zip(names, verdicts, strict=True):
        assert verdict.status == "failed" and OVERSIZED_REPLIES[name][1] in verdict.detail, (name, verdict)
        assert verdict.seconds < 15, (name, verdict)
