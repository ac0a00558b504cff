import ast
import subprocess
import sys

import nbformat
import pytest
from support import write_notebook

from agegender import runner
from agegender.config import Paths
from agegender.errors import AgegenderError
from agegender.results import store, tables

ROOT_MARKERS = ("pyproject.toml",)


@pytest.fixture
def book(tmp_path):
    """A project whose toc lists three chapters; the second fails."""
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "intro.md").write_text("# Intro\n")
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nchapters:\n  - file: book/01_first\n"
        "  - file: book/02_custom_cnn\n    sections:\n      - file: book/03_last\n"
    )
    write_notebook(
        tmp_path / "book" / "01_first.ipynb",
        'seed: int = 1  # a seed\nprofile: str = "none"  # the profile',
        'open("first.txt", "w").write(f"{seed} {profile}")',
    )
    write_notebook(
        tmp_path / "book" / "02_custom_cnn.ipynb",
        "epochs: int = 1  # epochs",
        'raise ValueError(f"broken after {epochs} epochs")',
    )
    write_notebook(
        tmp_path / "book" / "03_last.ipynb",
        "seed: int = 1  # a seed",
        'open("last.txt", "w").write("ran")',
    )
    return tmp_path


def test_chapters_follow_the_toc(book):
    assert [nb.stem for nb in runner.chapters(book)] == ["01_first", "02_custom_cnn", "03_last"]


def test_plan_gives_each_chapter_only_what_it_declares(book):
    steps = runner.plan("smoke", overrides={"epochs": 3}, root=book)
    assert [(s.notebook.stem, s.parameters) for s in steps] == [
        ("01_first", {"seed": 0, "profile": "smoke"}),
        ("02_custom_cnn", {"epochs": 3}),
        ("03_last", {"seed": 0}),
    ]
    only = runner.plan("smoke", only=["custom_cnn", "03_last"], root=book)
    assert [s.notebook.stem for s in only] == ["02_custom_cnn", "03_last"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"profile": "huge"}, "Unknown profile 'huge'"),
        ({"only": ["resnet"]}, r"Unknown chapter\(s\) \['resnet'\]"),
        ({"overrides": {"epoch": 3}}, r"Unknown parameter\(s\) \['epoch'\]"),
        ({"overrides": {"epochs": "three"}}, "epochs='three' does not match its type int"),
        ({"overrides": {"epochs": True}}, "epochs=True does not match its type int"),
        ({"only": ["first"], "overrides": {"epochs": 3}}, r"Unknown parameter\(s\) \['epochs'\]"),
    ],
)
def test_plan_refuses_what_it_cannot_run(book, arguments, message):
    with pytest.raises(AgegenderError, match=message):
        runner.plan(arguments.pop("profile", "smoke"), root=book, **arguments)


def test_overrides_are_yaml_values():
    assert runner.parse_overrides(["epochs=3", "weights=null", "lr=1e-3", "name=x=y"]) == {
        "epochs": 3,
        "weights": None,
        "lr": 1e-3,
        "name": "x=y",
    }
    with pytest.raises(AgegenderError, match="KEY=VALUE"):
        runner.parse_overrides(["epochs"])


def test_execute_stops_at_the_first_failing_chapter(book):
    original = (book / "book" / "02_custom_cnn.ipynb").read_text()
    steps = runner.plan("smoke", overrides={"epochs": 2}, root=book)
    with pytest.raises(AgegenderError) as raised:
        runner.execute(steps)
    message = str(raised.value)
    assert "02_custom_cnn.ipynb failed in cell" in message
    assert "ValueError: broken after 2 epochs" in message
    assert (book / "book" / "first.txt").read_text() == "0 smoke"
    assert not (book / "book" / "last.txt").exists()  # never reached
    assert (book / "book" / "02_custom_cnn.ipynb").read_text() == original
    assert (book / "book" / "02_custom_cnn.failed.ipynb").is_file()
    times = store.load_chapter_times("smoke", Paths.default(root=book))
    assert list(times) == ["01_first"] and times["01_first"]["seconds"] > 0  # finished ones only
    assert tables.chapter_times_table(times).loc["all chapters", "minutes"] == round(
        times["01_first"]["seconds"] / 60, 1
    )
    executed = nbformat.read(book / "book" / "01_first.ipynb", as_version=4)
    tags = [c.metadata.get("tags", []) for c in executed.cells]
    assert not any("injected-parameters" in t for t in tags)  # inert on Colab: it became text
    (ran_with,) = [c for c in executed.cells if runner.RAN_WITH_TAG in c.metadata.get("tags", [])]
    assert ran_with.cell_type == "markdown" and "`smoke` profile" in ran_with.source
    assert 'seed = 0\nprofile = "smoke"' in ran_with.source
    lint = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "format",
            "--check",
            "--isolated",
            str(book / "book" / "01_first.ipynb"),
        ],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout
    assert not list((book / "book").glob(".*running*"))


@pytest.fixture
def imagenet_reachable(monkeypatch):
    """As on a connected machine: ImageNet weights could be downloaded (nothing is)."""
    monkeypatch.setattr("agegender.models.builders.check_imagenet", lambda base: None)


def test_the_real_profiles_name_only_real_chapters_and_parameters(imagenet_reachable):
    notebooks = {nb.stem: runner.declared_parameters(nb) for nb in runner.chapters()}
    declared = set().union(*notebooks.values())
    for name in runner.profiles():
        profile = runner.load_profile(name)
        assert set(profile["parameters"]) <= declared, name
        for chapter, values in profile["chapters"].items():
            assert chapter in notebooks and set(values) <= set(notebooks[chapter]), (name, chapter)
        assert runner.plan(name)  # and the whole plan checks out


def test_a_profile_value_for_an_undeclared_parameter_is_refused(book, monkeypatch):
    real = runner.load_profile

    def with_typo(name):
        profile = real(name)
        profile["chapters"] = {"03_last": {"seeed": 3}}
        return profile

    monkeypatch.setattr(runner, "load_profile", with_typo)
    with pytest.raises(AgegenderError, match=r"sets \['seeed'\] for 03_last"):
        runner.plan("smoke", root=book)


def test_profiles_are_the_three_documented_ones():
    assert runner.profiles() == ["cpu", "gpu", "smoke"]
    for name in runner.profiles():
        profile = runner.load_profile(name)
        assert profile["description"] and profile["parameters"]["profile"] == name


NATIVE = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1795357181.999849   14465 cudart_stub.cc:31] Could not find cuda drivers\n"
)


def test_executed_chapters_keep_python_warnings_but_not_native_log_lines(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/01_only\n")
    write_notebook(
        tmp_path / "book" / "01_only.ipynb",
        "seed: int = 1  # a seed",
        "import os\nimport sys\n\n"
        f"os.write(2, {NATIVE.encode()!r})  # as a C++ library writes\n"
        f"sys.stderr.write({NATIVE!r} + 'UserWarning: kept\\n')",
    )
    runner.execute(runner.plan("smoke", root=tmp_path))
    executed = nbformat.read(tmp_path / "book" / "01_only.ipynb", as_version=4)
    streams = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in streams if o.output_type == "stream")
    assert text == "UserWarning: kept\n"


def test_every_chapter_default_is_the_gpu_profiles_value_or_the_librarys(imagenet_reachable):
    """What a Colab or Kaggle user with a GPU gets on pressing the launch button: a chapter's
    parameters cell says what `agegender run gpu` gives it, and where the profile is silent, what
    the package itself defaults to."""
    from agegender.models.specs import model_names
    from agegender.training.utkface import default_settings

    for step in runner.plan("gpu"):
        model = runner.chapter_name(step.notebook)
        library = default_settings(model) if model in model_names() else {}
        for key, declared in runner.declared_parameters(step.notebook).items():
            default = ast.literal_eval(declared["default"])
            if key in step.parameters:
                assert default == step.parameters[key], (step.notebook.stem, key)
            elif key in library:
                assert default == library[key], (step.notebook.stem, key)


def test_a_progress_bar_keeps_its_last_frame_only():
    tqdm = "\rcheck:   0%|  | 0/9\rcheck:  44%|█ | 4/9\rcheck: 100%|██| 9/9\n"
    assert runner.terminal_text(tqdm) == "check: 100%|██| 9/9\n"
    keras = "\r\x1b[1m 1/2\x1b[0m ━━ 4s\x08\x08\x08\x08\x08\x08\x08\x08\r\x1b[1m 2/2\x1b[0m ━━ 1s\n"
    assert runner.terminal_text(keras) == " 2/2 ━━ 1s\n"
    assert runner.terminal_text("Epoch 1/2\nloss: 3\nEpoch 2/2\nloss: 2\n") == (
        "Epoch 1/2\nloss: 3\nEpoch 2/2\nloss: 2\n"
    )


def test_tidy_joins_stream_frames_and_replaces_an_earlier_ran_with_cell(tmp_path):
    notebook = nbformat.v4.new_notebook()
    frames = [
        nbformat.v4.new_output("stream", name="stderr", text=f"\rbar {i}/3") for i in range(1, 4)
    ]
    code = nbformat.v4.new_code_cell("work()", outputs=[*frames])
    code.outputs.append(nbformat.v4.new_output("stream", name="stdout", text="done\n"))
    stale = runner.ran_with("# Parameters\nseed = 1", runner.Step(tmp_path, {}, "old"))
    injected = nbformat.v4.new_code_cell(
        '# Parameters\nseed = 2\nprofile = "cpu"', metadata={"tags": ["injected-parameters"]}
    )
    notebook.cells = [stale, injected, code]
    path = tmp_path / "chapter.ipynb"
    nbformat.write(notebook, path)
    runner.tidy(path, runner.Step(path, {"seed": 2}, "cpu"))
    cells = nbformat.read(path, as_version=4).cells
    assert [c.cell_type for c in cells] == ["markdown", "code"]
    assert "`cpu` profile" in cells[0].source and "seed = 2" in cells[0].source
    assert [(o.name, o.text) for o in cells[1].outputs] == [
        ("stderr", "bar 3/3"),
        ("stdout", "done\n"),
    ]
