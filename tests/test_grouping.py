"""The suite's own scheduling: under `make test` (xdist, --dist loadgroup) each module runs whole in
one worker, so its module fixtures (a trained run, a Ray cluster) are built once and two Ray
clusters never start at once. pytest 9.2 with pytest-xdist 3.8 dropped the groups without a word
(pytest-dev/pytest-xdist#1386); this test says so if it happens again."""

import pytest


def test_each_module_is_one_xdist_group_under_loadgroup(request):
    config = request.config
    if not hasattr(config, "workerinput") or not getattr(config.option, "loadgroup", False):
        pytest.skip("not an xdist worker with --dist loadgroup: no groups to check")
    module = request.node.nodeid.split("::")[0]
    assert request.node.nodeid.endswith(f"@{module}"), (
        f"{request.node.nodeid}: xdist did not take this module's group; modules are split "
        "across workers (check the pytest / pytest-xdist versions against pyproject.toml)")
