"""The tools researchers already use, on one real conditional smoke run made by the CLI itself:
a quiet stderr on a machine without a GPU, TensorBoard's own loader reading the run's scalars,
sample grids (per class) and config, and an exported SavedModel that draws what `covidct
generate` draws, loaded by a process that imports nothing of this project."""

import io
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from job import cli

pytestmark = pytest.mark.heavy

# What a machine without a GPU printed before (issue 26); none of it may reach the user
# (tests/test_readme.py holds `covidct prepare --demo`, run by `make demo`, to the same list).
NOISE = ("cuInit", "cudart_stub", "Could not find cuda drivers", "absl::InitializeLog",
         "oneDNN custom operations", "Downloading and preparing dataset", "Unknown size")


def covidct(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "job", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=900)


@pytest.fixture(scope="module")
def cli_run(demo_data, tmp_path_factory):
    """`covidct train --preset smoke --set conditional=true` through the CLI: (run, process)."""
    run = tmp_path_factory.mktemp("tools") / "run"
    done = covidct("train", "--preset", "smoke", "--set", "conditional=true", "--set",
                   f"data_dir={demo_data}", "--run", str(run))
    assert done.returncode == 0, done.stderr[-3000:]
    return run, done


def test_no_gpu_machine_is_quiet_and_says_where_it_runs(cli_run):
    _, done = cli_run
    if any(pathlib.Path("/dev").glob("nvidia[0-9]*")):
        pytest.skip("this machine has an NVIDIA device: the no-GPU lines do not apply")
    for line in NOISE:
        assert line not in done.stderr, done.stderr
    devices = [line for line in done.stdout.splitlines() if line.startswith("devices: ")]
    assert devices == ["devices: 1 replica on /cpu:0 (CPU; no GPU visible)"], done.stdout
    epochs = [line for line in done.stdout.splitlines() if line.startswith("epoch ")]
    # smoke has 2 epochs: both are warm-up, so no ETA is guessed from them.
    assert len(epochs) == 2 and all(line.endswith("ETA after 2 warm-up epochs (tracing, compiling)")
                                    or line.endswith("ETA 0m00s") for line in epochs), epochs


def test_tensorboard_reads_scalars_sample_grids_and_config(cli_run):
    from tensorboard.backend.event_processing import plugin_event_accumulator as pea
    from tensorboard.util import tensor_util

    run, _ = cli_run
    events = pea.EventAccumulator(str(run / "events"), size_guidance={"tensors": 0})
    events.Reload()
    scalars = events.PluginTagToContent("scalars")
    for tag in ("g_loss", "d_loss", "swd", "quality_ratio", "images_per_second"):
        assert tag in scalars, sorted(scalars)
    assert [e.step for e in events.Tensors("g_loss")] == [1, 2]
    images = events.PluginTagToContent("images")
    assert {"samples", "samples/covid", "samples/non_covid"} <= set(images), sorted(images)
    # An image summary's tensor is [width, height, PNG bytes...].
    png = tensor_util.make_ndarray(events.Tensors("samples")[-1].tensor_proto)
    grid = np.array(Image.open(io.BytesIO(png[2])))
    assert (int(png[0]), int(png[1])) == (grid.shape[1], grid.shape[0])
    cells = 6  # 36 latents of 28x28 with 2 px gaps
    assert grid.shape == (cells * 28 + (cells - 1) * 2,) * 2
    saved = np.array(Image.open(run / "samples" / "epoch_0002.png"))
    assert np.array_equal(grid, saved)  # the grid the run wrote, not another drawing
    covid = tensor_util.make_ndarray(events.Tensors("samples/covid")[-1].tensor_proto)
    assert np.array(Image.open(io.BytesIO(covid[2]))).shape[0] < grid.shape[0]
    assert "config" in events.PluginTagToContent("text")
    text = tensor_util.make_ndarray(events.Tensors("config")[0].tensor_proto).item().decode()
    recorded = json.loads((run / "config.json").read_text())
    assert json.loads(text.strip("`\n")) == recorded


PLAIN_LOADER = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    saved, n, seed, latent, label = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    model = tf.saved_model.load(saved)
    serve = model.signatures["serving_default"]
    z = tf.random.stateless_normal([n, latent], seed=[seed, 104729])
    out = serve(z=z, label=tf.fill([n], label))["images"].numpy()
    assert out.dtype == np.uint8, out.dtype
    project = [m for m in sys.modules if m.split(".")[0] in ("job", "tune", "tfds_covidct", "bench")]
    np.save(sys.argv[6], out)
    print(json.dumps({"project_modules": project, "shape": list(out.shape)}))
""")


def test_exported_saved_model_draws_what_generate_draws(cli_run, tmp_path):
    run, _ = cli_run
    # In this process (TensorFlow is loaded): the README test runs both commands as subprocesses.
    assert cli.main(["export", "--run", str(run), "--format", "saved_model",
                     "--out", str(tmp_path / "export")]) == 0
    card = (tmp_path / "export" / "MODEL_CARD.md").read_text()
    for part in ("## Data", "## Training", "## Figures", "## Intended use", "## Limits",
                 "builder version 2.", "SYNTHETIC DEMO PHANTOMS", "Split `train`", "Split `test`",
                 "2 of 2 epochs", "quality_ratio", "Not for diagnosis"):
        assert part in card, (part, card)
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert f"{last['swd_holdout']:.4g} (floor {last['swd_floor']:.4g};" in card

    n, seed = 6, 3
    assert cli.main(["generate", "--run", str(run), "--n", str(n), "--seed", str(seed), "--label",
                     "non_covid", "--out", str(tmp_path / "png")]) == 0
    pngs = np.stack([np.array(Image.open(tmp_path / "png" / f"synthetic_{i:05d}.png")) for i in range(n)])

    script = tmp_path / "plain.py"
    script.write_text(PLAIN_LOADER)
    latent = json.loads((run / "config.json").read_text())["latent_dim"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    loaded = subprocess.run([sys.executable, str(script), str(tmp_path / "export" / "saved_model"),
                             str(n), str(seed), str(latent), "1", str(tmp_path / "out.npy")],
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    facts = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert facts["project_modules"] == [] and facts["shape"] == [n, 28, 28, 1]
    served = np.load(tmp_path / "out.npy")[..., 0]
    assert np.abs(served.astype(int) - pngs.astype(int)).max() <= 1
    assert served.std() > 0  # images, not a constant
