import json
import os
import shutil
import subprocess
import sys

import pytest
from support import BAD_CONTENTS, BAD_NAMES

from agegender.cli import main
from agegender.data.dataset import COUNTS


def report_json(capsys) -> dict:
    capsys.readouterr()
    assert main(["data", "report", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_prepare_then_report_counts_everything(utkface_folder, project, capsys):
    folder, kinds = utkface_folder
    assert main(["data", "prepare", "--source", str(folder)]) == 0
    assert "103 used" in capsys.readouterr().out
    assert project.split_file.is_file() and project.split_file.with_suffix(".json").is_file()

    counts = report_json(capsys)
    assert set(counts) >= {
        *COUNTS,
        "rejected",
        "splits",
        "dataset_sha256",
        "split_sha256",
        "policy",
    }
    assert counts["files"] == sum(len(names) for names in kinds.values()) - 1  # conflict pair
    assert counts["accepted"] == counts["files"] - len(BAD_NAMES) - len(BAD_CONTENTS)
    assert counts["rejected"] == {
        reason: 1 for reason in [*BAD_NAMES.values(), *BAD_CONTENTS.values()]
    }
    assert (counts["duplicate_groups"], counts["duplicate_files"]) == (2, 2)
    assert (counts["conflicting_groups"], counts["conflicting_files"]) == (1, 2)
    assert counts["unique_images"] == counts["accepted"] - 2
    assert sum(counts["splits"].values()) == counts["used"] == counts["unique_images"] - 1
    assert counts["cross_split_duplicate_groups"] == 0
    assert len(counts["dataset_sha256"]) == len(counts["split_sha256"]) == 64

    assert main(["data", "report"]) == 0
    table = capsys.readouterr().out
    assert "duplicate groups" in table and "truncated or corrupt image" in table


def test_the_committed_split_is_kept_not_rewritten(utkface_folder, project, capsys):
    folder, _ = utkface_folder
    main(["data", "prepare", "--source", str(folder)])
    committed = project.split_file.read_bytes()
    os.utime(project.split_file, ns=(1, 1))
    assert main(["data", "prepare"]) == 0
    assert project.split_file.read_bytes() == committed
    assert project.split_file.stat().st_mtime_ns == 1


def test_new_split_with_another_policy(utkface_folder, project, capsys):
    folder, _ = utkface_folder
    main(["data", "prepare", "--source", str(folder)])
    assert (
        main(
            [
                "data",
                "prepare",
                "--new-split",
                "--duplicates",
                "all",
                "--conflicts",
                "first",
                "--seed",
                "5",
            ]
        )
        == 0
    )
    counts = report_json(capsys)
    assert counts["policy"] == {
        "duplicates": "all",
        "conflicts": "first",
        "fractions": [0.7, 0.15, 0.15],
        "seed": 5,
    }
    assert sum(counts["splits"].values()) == counts["accepted"]
    assert counts["cross_split_duplicate_groups"] == 0


def test_changed_data_is_explained_not_used(utkface_folder, project, capsys):
    folder, kinds = utkface_folder
    main(["data", "prepare", "--source", str(folder)])
    in_split = project.split_file.read_text().splitlines()[1].split(",")[0]
    (project.images / in_split).unlink()
    shutil.copy(project.images / kinds["odd"][0], project.images / "77_1_0_2099.jpg")
    capsys.readouterr()
    assert main(["data", "report"]) == 2
    error = capsys.readouterr().err
    assert "\nerror: The images in" in error or error.startswith("error: The images in")
    assert "1 file(s) listed in the split but missing on disk" in error
    assert in_split in error and "Traceback" not in error


def test_missing_data_is_a_clear_error(project, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr("agegender.platforms.KAGGLE_INPUT", tmp_path / "none")
    assert main(["data", "prepare"]) == 2
    assert "UTKFace was not found" in capsys.readouterr().err


def test_unknown_options_are_refused(capsys):
    with pytest.raises(SystemExit) as raised:
        main(["data", "prepare", "--colour", "blue"])
    assert raised.value.code == 2
    assert "unrecognized arguments: --colour" in capsys.readouterr().err


def test_console_script_runs_without_importing_tensorflow(utkface_folder, project):
    folder, _ = utkface_folder
    env = {**os.environ, "AGEGENDER_ROOT": str(project.root)}
    code = (
        "import sys; from agegender.cli import main; rc = main(sys.argv[1:]); "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules; sys.exit(rc)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "data", "prepare", "--source", str(folder)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    script = shutil.which("agegender", path=os.path.dirname(sys.executable))
    assert script, "the agegender console script is installed beside python"
    done = subprocess.run(
        [script, "data", "report", "--json"], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and json.loads(done.stdout)["files"] > 0
