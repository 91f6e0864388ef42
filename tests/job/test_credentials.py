"""Credentials that are not there yet (a new GKE pod's Workload Identity) are waited for; when they
never come, one message names Workload Identity and the exit code says "may succeed on retry".

Google's credential lookup runs for real: GOOGLE_APPLICATION_CREDENTIALS names a file that
appears late, or never. Nothing here reaches the network (the client is only constructed).
"""

import json
import os
import subprocess
import sys
import threading
import time

CONSTRUCT = "from job.storage import buckets; print(type(buckets.client()).__name__)"


def _env(tmp_path, wait_seconds: float) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "STORAGE_EMULATOR_HOST"}
    env.update(GOOGLE_APPLICATION_CREDENTIALS=str(tmp_path / "adc.json"),
               GOOGLE_CLOUD_PROJECT="covidct-test", COVIDCT_CREDENTIALS_WAIT_SECONDS=str(wait_seconds),
               TF_CPP_MIN_LOG_LEVEL="3")
    return env


def test_credentials_that_arrive_late_are_waited_for(tmp_path):
    def arrive():
        time.sleep(1.5)
        (tmp_path / "adc.json").write_text(json.dumps({
            "type": "authorized_user", "client_id": "id", "client_secret": "s", "refresh_token": "t"}))

    writer = threading.Thread(target=arrive)
    writer.start()
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-c", CONSTRUCT], env=_env(tmp_path, 30),
                          capture_output=True, text=True, timeout=120)
    writer.join()
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "Client" and time.monotonic() - t0 >= 1.5


def test_credentials_that_never_come_name_workload_identity_and_exit_1(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "job", "prepare", "--demo", "--config", "28",
         "--data-dir", "gs://covidct-test/data"],
        env=_env(tmp_path, 2), capture_output=True, text=True, timeout=120)
    assert done.returncode == 1  # may succeed on retry: the Job retries it
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Workload Identity" in lines[0] and "after 2 s" in lines[0], done.stderr
