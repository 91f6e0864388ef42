"""The suite's own scheduling: under `make test` (xdist, --dist loadgroup) each module runs whole in
one worker, so its module fixtures (a trained run, a Ray cluster) are built once and two Ray
clusters never start at once. pytest 9.2 with pytest-xdist 3.8 dropped the groups without a word
(pytest-dev/pytest-xdist#1386); this test says so if it happens again."""


def test_each_module_is_one_xdist_group_under_loadgroup(request):
    module = request.node.nodeid.split("@")[0].split("::")[0]
    # tests/conftest.py marks every test with its module's group, with or without xdist ...
    assert [m.args[0] for m in request.node.iter_markers("xdist_group")] == [module]
    # ... and under `make test` xdist must have taken it (it suffixes the test's id with it).
    if hasattr(request.config, "workerinput") and getattr(request.config.option, "loadgroup", False):
        assert request.node.nodeid.endswith(f"@{module}"), (
            f"{request.node.nodeid}: xdist did not take this module's group; modules are split "
            "across workers (check the pytest / pytest-xdist versions against pyproject.toml)")
