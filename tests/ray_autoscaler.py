"""A real autoscaling Ray cluster on 127.0.0.1, as the KubeRay sweep cluster behaves.

The head has no CPU (like `num-cpus: "0"` in k8s/ray/raycluster.yaml), and the only worker group
starts at zero: every trial waits until Ray's own autoscaler adds a worker node for it. The nodes
come from Ray's fake multi-node provider (`type: fake_multinode`): the real autoscaler (monitor
process, its scheduling and idle timeout) launching local raylets instead of cloud VMs. Ray 2.60
ships no example config for it, so `cluster_config` writes one.

Every node stays on loopback: with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 Ray binds 127.0.0.1 instead
of resolving it to the machine's interface address (docs: STACK.md). Token authentication is off
(RAY_AUTH_MODE=disabled) for this head only. `stop()` ends the head's process group (the monitor
and every raylet it launched are in it) and then any process left that names this cluster's own
temporary folder, by pid: nothing else on the machine is touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tests.helpers import answers

BIN = Path(sys.executable).parent
HEAD_START_SECONDS = 90
WORKER_TYPE = "cpu1"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cluster_config(gcs_port: int, worker_cpus: int, max_workers: int, idle_minutes: float) -> dict:
    """The autoscaler's cluster config: a 0-CPU head and one worker type scaled from zero."""
    return {
        "cluster_name": "covidct-test",
        "max_workers": max_workers,
        "idle_timeout_minutes": idle_minutes,
        "upscaling_speed": 2.0,
        "provider": {
            "type": "fake_multinode",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "gcs_address": f"127.0.0.1:{gcs_port}",
        },
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "max_workers": 0, "node_config": {}},
            WORKER_TYPE: {"resources": {"CPU": worker_cpus}, "min_workers": 0,
                          "max_workers": max_workers, "node_config": {}},
        },
        "head_node_type": "ray.head.default",
        "auth": {"ssh_user": "nobody"},
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


class AutoscalingCluster:
    """`ray start --head --block --num-cpus=0 --autoscaling-config=...` with its own ports and folder.

    Attributes once started: `address` (GCS, for RAY_ADDRESS), `dashboard` (the job server's URL),
    `env` (what a driver or `ray` command run against this cluster needs).
    """

    def __init__(self, env: dict, worker_cpus: int = 1, max_workers: int = 2, idle_minutes: float = 5):
        # Short: Ray's socket paths must stay under 108 bytes.
        self.folder = tempfile.mkdtemp(prefix="ray-as-")
        self.ports = {name: _free_port() for name in (
            "port", "dashboard-port", "ray-client-server-port", "node-manager-port",
            "object-manager-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
            "metrics-export-port", "runtime-env-agent-port")}
        self.address = f"127.0.0.1:{self.ports['port']}"
        self.dashboard = f"http://127.0.0.1:{self.ports['dashboard-port']}"
        self.max_workers = max_workers
        self.worker_cpus = worker_cpus
        self.env = {
            **env,
            "RAY_AUTH_MODE": "disabled",  # a token file in ~/.ray would otherwise turn auth on
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # every node binds 127.0.0.1
            "RAY_FAKE_CLUSTER": "1",
            "AUTOSCALER_UPDATE_INTERVAL_S": "1",
            "RAY_USAGE_STATS_ENABLED": "0",
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # `python` of a job = the venv's
        }
        config = cluster_config(self.ports["port"], worker_cpus, max_workers, idle_minutes)
        self.config_path = Path(self.folder) / "autoscaling.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = Path(self.folder) / "head.log"
        self._process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
                   "--num-cpus=0", "--num-gpus=0", "--include-dashboard=true",
                   "--dashboard-host=127.0.0.1", f"--temp-dir={self.folder}",
                   "--disable-usage-stats", "--object-store-memory=134217728",
                   f"--autoscaling-config={self.config_path}"]
        command += [f"--{name}={port}" for name, port in self.ports.items()]
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(command, env=self.env, stdout=log,
                                             stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + HEAD_START_SECONDS
        while not answers(f"{self.dashboard}/api/version"):
            if self._process.poll() is not None or time.monotonic() > deadline:
                log = self.log_path.read_text(errors="replace")[-3000:]
                self.stop()
                raise RuntimeError(f"the Ray head did not come up:\n{log}")
            time.sleep(0.5)

    def monitor_log(self) -> str:
        """The autoscaler's own log: what it decided and which nodes it launched."""
        logs = sorted(Path(self.folder).glob("session_*/logs/monitor.log"))
        return "".join(p.read_text(errors="replace") for p in logs)

    def _leftover_pids(self) -> list[int]:
        """Processes of this cluster still alive: their command line names its folder."""
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if self.folder in cmdline:
                pids.append(int(proc.name))
        return pids

    def stop(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.terminate()  # --block stops the processes it started
                try:
                    self._process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(self._process.pid, signal.SIGKILL)  # our own session, by its id
                    self._process.wait()
            try:
                os.killpg(self._process.pid, signal.SIGKILL)  # the autoscaled raylets, if any
            except ProcessLookupError:
                pass
        for pid in self._leftover_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.folder, ignore_errors=True)
