"""The first code that runs in a sandbox process: confine itself, then load the untrusted program and serve calls.

``sandbox.py`` starts this file as ``python -I -S -B _harness.py`` (stdlib only, no site-packages, nothing from
the environment). It is trusted code; the program it loads is not. The threat model is in ``sandbox.py``.

Process tree (root path): this process (root, host PID namespace) → ``init`` (PID 1 of a new PID namespace,
root, only reaps) → ``worker`` (drops to a throw-away uid, then runs the program). When ``init`` exits the
kernel kills everything left in the namespace (fork bombs, daemons).

Protocol, one JSON object per line. In: a config line, then ``{"call": name, "args": [...]}`` requests. Out:
``{"confined": true, "layers": [...]}`` (sent before the program runs), ``{"ready": true}`` (or
``{"ready": false, "error": ...}``), then ``{"ok": value}`` or
``{"error": text}`` per request. Values cross as tagged JSON (``encode``/``decode``), never pickle.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import json
import os
import resource
import signal
import stat
import sys
import time
from collections.abc import Iterator

# ---------------------------------------------------------------- values across the boundary

MAX_DEPTH = 200
MAX_ITEMS = 1 << 20  # values in one message; SandboxLimits.max_reply_items lowers it for replies
_VIEWS = tuple((f"dict_{name}", type(getattr({}, name)()), getattr(dict, name)) for name in ("keys", "values", "items"))


def encode(value: object, depth: int = 0) -> list:
    """Plain data → tagged JSON. Containers are copied element by element; other types are refused.

    Iterables a check can only iterate cross as what it would iterate: an iterator (generator, map, zip...)
    as its items, read here to the end, arriving as an iterator over them (single pass, unequal to any list,
    as the original); a range as a range; a dict view as a view of a copied dict.
    """
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    if value is None:
        return ["none"]
    if isinstance(value, bool):
        return ["bool", bool(value)]
    if isinstance(value, int):
        return ["int", hex(int(value))]  # hex: no 4300-digit limit, exact
    if isinstance(value, float):
        return ["float", float.__repr__(float(value))]
    if isinstance(value, str):
        return ["str", str.__str__(value)]
    if isinstance(value, bytes):
        return ["bytes", bytes(value).hex()]
    if isinstance(value, complex):
        value = complex(value)
        return ["complex", float.__repr__(value.real), float.__repr__(value.imag)]
    for tag, kind in (("list", list), ("tuple", tuple), ("set", set), ("frozenset", frozenset)):
        if isinstance(value, kind):
            return [tag, [encode(item, depth + 1) for item in list(value)]]
    if isinstance(value, dict):
        return ["dict", [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in list(dict(value).items())]]
    if isinstance(value, range):
        return ["range", hex(value.start), hex(value.stop), hex(value.step)]
    for tag, kind, _ in _VIEWS:
        if isinstance(value, kind):
            return [tag, encode(dict(value.mapping), depth + 1)]
    if isinstance(value, Iterator):
        items = list(itertools.islice(value, MAX_ITEMS + 1))
        if len(items) > MAX_ITEMS:
            raise ValueError(f"iterator yields more than {MAX_ITEMS} items")
        return ["iterator", [encode(item, depth + 1) for item in items]]
    raise TypeError(f"a {type(value).__name__} cannot cross the sandbox boundary (plain data only)")


_SCALARS = {"int": lambda s: int(s, 16), "float": float, "str": str, "bytes": bytes.fromhex}
_SEQUENCES = {"list": list, "tuple": tuple, "iterator": iter}


def decode(node: object, *, max_items: int = MAX_ITEMS, deadline: float | None = None) -> object:
    """Tagged JSON → plain data, strictly: anything malformed raises ValueError/TypeError, and so does a value
    of more than ``max_items`` items or nested deeper than MAX_DEPTH; past the monotonic ``deadline``,
    TimeoutError. The clock is read between any two items, because the sender picks the items: values whose
    hashes collide make each insertion into a set or dict cost as much as all before it."""
    return _Decoder(max_items, deadline).value(node, 0)


class _Decoder:
    def __init__(self, max_items: int, deadline: float | None):
        self.items_left, self.deadline = max_items, deadline

    def value(self, node: object, depth: int) -> object:
        if depth > MAX_DEPTH:
            raise ValueError("value nested too deeply")
        self.items_left -= 1
        if self.items_left < 0:
            raise ValueError("value has too many items")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TimeoutError("the deadline passed while decoding the value")
        if not isinstance(node, list) or not node or not isinstance(node[0], str):
            raise ValueError(f"malformed value {str(node)[:80]!r}")
        tag, rest = node[0], node[1:]
        if tag == "none" and not rest:
            return None
        if tag == "bool" and len(rest) == 1 and isinstance(rest[0], bool):
            return rest[0]
        if tag in _SCALARS and len(rest) == 1 and isinstance(rest[0], str):
            return _SCALARS[tag](rest[0])
        if tag == "complex" and len(rest) == 2 and all(isinstance(x, str) for x in rest):
            return complex(float(rest[0]), float(rest[1]))
        if tag == "range" and len(rest) == 3 and all(isinstance(x, str) for x in rest):
            return range(*(int(x, 16) for x in rest))
        if len(rest) != 1 or not isinstance(rest[0], list):
            raise ValueError(f"malformed value with tag {tag!r}")
        if tag in _SEQUENCES:
            return _SEQUENCES[tag]([self.value(item, depth + 1) for item in rest[0]])
        if tag in ("set", "frozenset"):
            members = set()
            for item in rest[0]:  # one at a time, each after a look at the clock
                members.add(self.value(item, depth + 1))
            return members if tag == "set" else frozenset(members)
        if tag == "dict":
            return self.mapping(rest[0], depth)
        for view, _, of in _VIEWS:
            if tag == view:
                mapping = self.value(rest[0], depth + 1)
                if not isinstance(mapping, dict):
                    raise ValueError(f"malformed {view}")
                return of(mapping)
        raise ValueError(f"malformed value with tag {tag!r}")

    def mapping(self, pairs: list, depth: int) -> dict:
        out = {}
        for pair in pairs:
            if not isinstance(pair, list) or len(pair) != 2:
                raise ValueError("malformed dict")
            key = self.value(pair[0], depth + 1)
            out[key] = self.value(pair[1], depth + 1)
        return out


def describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"[:1000]


# ---------------------------------------------------------------- line I/O on raw fds


class LineReader:
    """Reads newline-terminated lines from a raw fd with its own buffer (so nothing is read ahead by stdio)."""

    def __init__(self, fd: int):
        self.fd, self.buffer = fd, b""

    def readline(self) -> bytes | None:
        while b"\n" not in self.buffer:
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line


def send(fd: int, message: dict) -> None:
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(fd, data) :]


# ---------------------------------------------------------------- confinement

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_SECCOMP, PR_SET_NO_NEW_PRIVS = 1, 22, 38
PRIVATE_TMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")  # the world-writable places
# The kernel's key-management syscalls, which libc does not wrap: (AUDIT_ARCH_*, add_key, request_key, keyctl).
KEY_SYSCALLS = {"x86_64": (0xC000003E, 248, 249, 250), "aarch64": (0xC00000B7, 217, 218, 219)}
KEYCTL_JOIN_SESSION_KEYRING = 1

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


def _blocking_ancestor(path: str) -> str | None:
    """The topmost directory on ``path`` that other users cannot traverse (e.g. /root), or None."""
    current = "/"
    for part in path.strip("/").split("/"):
        current = os.path.join(current, part)
        if not os.stat(current).st_mode & stat.S_IXOTH:
            return current
    return None


def _expose_python(layers: list[str]) -> None:
    """Make the Python installation readable to the sandbox uid: hide its home behind a tmpfs, rebind prefix."""
    prefix = os.path.realpath(sys.base_prefix)
    blocked = _blocking_ancestor(prefix)
    if blocked is None:
        return
    stage = "/tmp/.python-prefix"  # /tmp is already a private tmpfs here
    os.mkdir(stage, 0o755)
    _mount(prefix, stage, None, MS_BIND | MS_REC)
    _mount("tmpfs", blocked, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    os.makedirs(prefix, 0o755, exist_ok=True)
    _mount(stage, prefix, None, MS_BIND | MS_REC)
    _mount(None, prefix, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    _check(_libc.umount2(stage.encode(), MNT_DETACH), "umount staging")
    os.rmdir(stage)
    layers.append(f"hidden:{blocked}")


def _namespaces_as_root(layers: list[str], uid: int) -> bool:
    """New net/mount/PID/IPC/UTS namespaces, private tmpfs on the world-writable dirs and for the working
    directory (so all the program can write is a few size-limited tmpfs). True if the PID namespace exists."""
    if _libc.unshare(CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS) != 0:
        if _libc.unshare(CLONE_NEWNET) == 0:
            layers.append("netns")
        return False
    layers += ["netns", "mountns", "pidns", "ipcns"]
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    for path in PRIVATE_TMP_DIRS:
        if os.path.isdir(path) and not os.path.islink(path):
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=1777")
    layers.append("private-tmp")
    _expose_python(layers)
    workdir = "/tmp/work"  # on the private /tmp: ".." and everything else it can write are tmpfs too
    os.mkdir(workdir, 0o700)
    os.chown(workdir, uid, uid)
    os.chdir(workdir)
    layers.append("private-workdir")
    return True


def _set_rlimits(limits: dict, layers: list[str], extra_processes: int = 0) -> None:
    cpu = int(limits["cpu_s"])
    for kind, value in (
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),
        (resource.RLIMIT_AS, (limits["memory_bytes"],) * 2),
        (resource.RLIMIT_NPROC, (limits["max_processes"] + extra_processes,) * 2),
        (resource.RLIMIT_FSIZE, (limits["max_file_bytes"],) * 2),
        (resource.RLIMIT_NOFILE, (limits["max_open_files"],) * 2),
        (resource.RLIMIT_CORE, (0, 0)),
        (resource.RLIMIT_MSGQUEUE, (0, 0)),
    ):
        resource.setrlimit(kind, value)
    layers.append("rlimits")


def _key_syscalls() -> tuple[int, int, int, int]:
    machine = os.uname().machine
    if machine not in KEY_SYSCALLS:
        raise RuntimeError(f"no key syscall table for {machine} (known: {', '.join(KEY_SYSCALLS)})")
    return KEY_SYSCALLS[machine]


def _join_fresh_session_keyring(layers: list[str]) -> None:
    """Leave the evaluator's session keyring for a new, empty, anonymous one. A process possesses (may read,
    update, unlink) every key reachable from its session keyring, whatever its uid: without this the program
    could read and clear the secrets the evaluator keeps there."""
    keyctl = _key_syscalls()[3]
    serial = _libc.syscall(ctypes.c_long(keyctl), ctypes.c_long(KEYCTL_JOIN_SESSION_KEYRING), None)
    if serial >= 0:
        layers.append("keyring:fresh-session")
    elif ctypes.get_errno() in (errno.ENOSYS, errno.EPERM):
        # A kernel without keys, or a policy above us (a container's seccomp profile) that denies the key
        # syscalls to every process here, the evaluator included: no key can have been added to leak.
        layers.append(f"keyring:unavailable-here({errno.errorcode[ctypes.get_errno()]})")
    else:
        _check(serial, "join a new session keyring")


class _SockFilter(ctypes.Structure):
    _fields_ = (("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32))


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter)))


def _deny_key_syscalls(layers: list[str]) -> None:
    """A seccomp filter: add_key, request_key and keyctl fail with EPERM (the program has no business with
    kernel keys; a second layer behind the fresh keyring), and so does every syscall made through another ABI
    (x32, 32-bit x86), where these have other numbers. Needs no_new_privs, set before."""
    arch, *numbers = _key_syscalls()
    load_word, jump_eq, jump_ge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, JMP|JGE|K, RET|K
    allow, deny = 0x7FFF0000, 0x00050000 | errno.EPERM  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | EPERM
    head = [(load_word, 0, 0, 4), (jump_eq, 1, 0, arch), (ret, 0, 0, deny), (load_word, 0, 0, 0)]  # arch, nr
    tests = [(jump_ge, 0x40000000), *((jump_eq, number) for number in numbers)]  # x32 ABI bit, key syscalls
    # Each test jumps to the final "deny" when true: len(tests) - i instructions ahead, past "allow".
    program = [*head, *((code, len(tests) - i, 0, k) for i, (code, k) in enumerate(tests))]
    program += [(ret, 0, 0, allow), (ret, 0, 0, deny)]
    filters = (_SockFilter * len(program))(*(_SockFilter(*instruction) for instruction in program))
    fprog = _SockFprog(len(program), filters)
    _check(_libc.prctl(PR_SET_SECCOMP, ctypes.c_ulong(2), ctypes.byref(fprog), 0, 0), "seccomp filter")
    layers.append("seccomp:keys")


def _drop_privileges(uid: int, layers: list[str]) -> None:
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:
        raise RuntimeError("privileges were not dropped")
    layers.append(f"uid:{uid}")


def _block_sockets(event: str, args: tuple) -> None:
    if event.startswith("socket."):
        raise PermissionError(f"network access is disabled in the sandbox ({event})")


def _own_process_count() -> int:
    uid = os.getuid()
    count = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                count += os.stat(f"/proc/{name}").st_uid == uid
    return count


def _close_protocol_fds(*fds: int) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    for fd in (*fds, null):
        os.close(fd)


def _wait_for(child: int) -> int:
    """Reap children until ``child`` exits; its exit code (128+signal when killed)."""
    while True:
        pid, status = os.wait()
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            return code if code >= 0 else 128 - code


def _serve(program: str, rpc_in: int, rpc_out: int, layers: list[str]) -> None:
    namespace: dict = {}
    try:
        exec(compile(program, "<program>", "exec"), namespace)
    except BaseException as err:
        send(rpc_out, {"ready": False, "error": describe(err)})
        os._exit(1)
    send(rpc_out, {"ready": True})
    reader = LineReader(rpc_in)
    while True:
        line = reader.readline()
        if line is None:
            os._exit(0)
        try:
            request = json.loads(line)
            args = [decode(arg) for arg in request["args"]]
            reply = {"ok": encode(namespace[request["call"]](*args))}
        except BaseException as err:
            reply = {"error": describe(err)}
        send(rpc_out, reply)


def main() -> None:
    reader = LineReader(0)
    config = json.loads(reader.readline() or b"{}")
    rpc_in, rpc_out = os.dup(0), os.dup(1)
    os.umask(0o022)
    layers: list[str] = ["scrubbed-env", "tempdir"]
    is_root = os.geteuid() == 0
    try:
        own_processes = 0 if is_root else _own_process_count()
        pid_namespace = False
        if is_root:
            pid_namespace = _namespaces_as_root(layers, int(config["uid"]))
            if "mountns" not in layers and _blocking_ancestor(os.path.realpath(sys.base_prefix)):
                raise RuntimeError(f"{sys.base_prefix} is not readable by other users and no mount namespace exists")
        elif _libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0:
            layers.append("netns(userns)")
        if pid_namespace:
            init = os.fork()
            if init:  # outer harness: hold nothing, wait, pass the status on
                _close_protocol_fds(rpc_in, rpc_out)
                os._exit(_wait_for(init))
            _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
            layers.append("private-proc")
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            worker = os.fork()
            if worker:  # PID 1: reap, then exit, which tears the namespace down
                _close_protocol_fds(rpc_in, rpc_out)
                os._exit(_wait_for(worker))
        _set_rlimits(config["limits"], layers, extra_processes=own_processes)
        _join_fresh_session_keyring(layers)
        if is_root:
            _drop_privileges(int(config["uid"]), layers)
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        _deny_key_syscalls(layers)
        sys.addaudithook(_block_sockets)
        layers.append("audit-hook")
        missing = [name for name in config["required_layers"] if not any(x.startswith(name) for x in layers)]
        if missing:
            raise RuntimeError(f"isolation layers unavailable here: {', '.join(missing)} (have {', '.join(layers)})")
    except BaseException as err:
        send(rpc_out, {"confined": False, "isolation_error": describe(err), "layers": layers})
        os._exit(3)
    send(rpc_out, {"confined": True, "layers": layers})  # before any untrusted code runs: this one is genuine
    _close_protocol_fds()
    _serve(config["program"], rpc_in, rpc_out, layers)


if __name__ == "__main__":
    main()
