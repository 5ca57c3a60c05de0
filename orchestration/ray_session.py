"""Join a Ray cluster, or start a private local one, for the CLI entry points (``comol train``, ``comol sweep``).

A cluster is named by ``--address`` or ``$RAY_ADDRESS`` (as under ``ray job submit``). Without one, a local
Ray is started in its own short temp dir (Ray's socket paths have a length limit), never the shared
``/tmp/ray`` of other clusters on the machine, and stopped again on close. An already-initialised Ray (a
test session, a notebook) is used as it is and left running.

Worker logs (Ray Train workers, Tune trial actors) reach this terminal only with ``verbose``: the entry points
print their own progress, and a failure names the log or error file to read.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass


@dataclass
class RaySession:
    started_here: bool
    temp_dir: str | None  # the private local Ray's temp dir (its logs), when this session made it

    def close(self, keep_logs: bool = False) -> str | None:
        """Shut down a Ray this session started. Its temp dir goes too, unless ``keep_logs`` (something
        failed and its logs are there): then the logs folder is returned for the user to read."""
        import ray

        if self.started_here and ray.is_initialized():
            ray.shutdown()
        if self.temp_dir is None:
            return None
        if keep_logs:
            return f"{self.temp_dir}/session_latest/logs"
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        return None


def connect_ray(
    address: str | None = None, *, verbose: bool = False, num_cpus: int | None = None, temp_dir: str | None = None
) -> RaySession:
    """Join ``address`` / ``$RAY_ADDRESS``, else start a private local Ray (in ``temp_dir`` if given, kept)."""
    import ray

    if ray.is_initialized():
        return RaySession(False, None)
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=verbose)
        return RaySession(True, None)
    # Token auth: a new local cluster follows $RAY_AUTH_MODE, and Ray turns tokens on when it is unset
    # (setting the variable here would be too late: Ray reads it when it is imported).
    given = temp_dir is not None
    temp_dir = temp_dir or tempfile.mkdtemp(prefix="cr", dir="/tmp")
    ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, _temp_dir=temp_dir, log_to_driver=verbose)
    return RaySession(True, None if given else temp_dir)
