"""`agegender evaluate`: a trained model tested on labelled photos from elsewhere.

The labels are checked before any photo is read (bad rows named by line), every photo's fate is
counted, and on the test split's own files (as crops) the numbers are the test split's."""

import json
import re
import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest

from agegender import external
from agegender.cli import main
from agegender.data.dataset import prepare
from agegender.errors import AgegenderError
from agegender.predict import NO_FACE, Predictor, predict
from agegender.results import store

UTKFACE_NAMES = r"^(?P<age>\d+)_(?P<gender>[01])_"


def _photos(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")
    return external.set_photos(folder)


# --- labels ---------------------------------------------------------------------------------


def test_csv_labels_are_read_and_every_bad_row_is_named_by_its_line(tmp_path):
    photos = _photos(tmp_path / "set", ["a.jpg", "b.jpg", "c.png", "d.jpg", "e.jpg"])
    (tmp_path / "set" / "sub").mkdir()
    (tmp_path / "set" / "sub" / "f.jpg").write_bytes(b"")
    photos = external.set_photos(tmp_path / "set")
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "\ufeffFile, Age ,gender\n"  # a byte-order mark and spaces, as spreadsheets write them
        "a.jpg,31,female\n"
        "b.jpg,4.5,M\n"
        "sub/f.jpg,70,\n"
        "\n"
        "c.png,abc,1\n"
        "d.jpg,200,0\n"
        "e.jpg,20,other\n"
        "missing.jpg,20,0\n"
        "a.jpg,32,1\n"
        "d.jpg\n"
    )
    got = external.labels_from_csv(labels, photos)
    assert got.table[["file", "age"]].values.tolist() == [
        ["a.jpg", 31.0],
        ["b.jpg", 4.5],
        ["sub/f.jpg", 70.0],
    ]
    assert got.table["gender"].tolist()[:2] == [1.0, 0.0] and np.isnan(got.table["gender"][2])
    assert got.bad == [
        "line 6: age 'abc' is not a number",
        "line 7: age 200 is outside 0-116",
        "line 8: gender 'other' is not one of 0, 1, m, f, male, female, man, woman (or empty)",
        "line 9: no photo 'missing.jpg' in the set",
        "line 10: a.jpg was already labelled on line 2",
        "line 11: 1 fields where the header names 3",
    ]
    assert got.unlabelled == ["c.png", "d.jpg", "e.jpg"]


def test_a_csv_without_the_needed_columns_is_refused_saying_what_it_lacks(tmp_path):
    photos = _photos(tmp_path / "set", ["a.jpg"])
    labels = tmp_path / "labels.csv"
    labels.write_text("name,years\na.jpg,3\n")
    with pytest.raises(AgegenderError, match="lacks file and age"):
        external.labels_from_csv(labels, photos)


def test_name_patterns_read_age_and_gender_and_name_the_photos_they_cannot_read(tmp_path):
    photos = _photos(tmp_path / "set", ["31_1_0_x.jpg", "7_0_2_y.jpg", "IMG_0001.jpg", "9_5_z.jpg"])
    got = external.labels_from_names(UTKFACE_NAMES, photos)
    assert got.table[["file", "age", "gender"]].values.tolist() == [
        ["31_1_0_x.jpg", 31.0, 1.0],
        ["7_0_2_y.jpg", 7.0, 0.0],
    ]
    assert got.bad == [
        "9_5_z.jpg: the name does not match the pattern",
        "IMG_0001.jpg: the name does not match the pattern",
    ]
    ages_only = external.labels_from_names(r"^(?P<age>\d+)_", photos)
    assert len(ages_only.table) == 3 and ages_only.table["gender"].isna().all()


@pytest.mark.parametrize(
    ("pattern", "message"),
    [(r"(\d+)_", "no group named age"), (r"(?P<age>\d+", "not a regular expression")],
)
def test_a_name_pattern_without_an_age_group_or_that_does_not_compile_is_refused(
    tmp_path, pattern, message
):
    with pytest.raises(AgegenderError, match=message):
        external.labels_from_names(pattern, _photos(tmp_path / "set", ["1_0.jpg"]))


def test_bad_labels_are_listed_with_a_count_and_a_way_on(tmp_path):
    labelled = external.Labelled(
        pd.DataFrame(), [f"line {n}: age 'x' is not a number" for n in range(2, 15)], []
    )
    with pytest.raises(AgegenderError) as refused:
        external.refuse_bad(labelled, "labels.csv")
    text = str(refused.value)
    assert text.startswith("13 bad label(s) in labels.csv")
    assert "line 11:" in text and "line 12:" not in text and "... and 3 more" in text
    assert "--skip-bad" in text


# --- photos through detection (generated photos, red squares for faces) ---------------------


@pytest.fixture
def photo_set(tmp_path, squares_photo):
    """A set with one face, two faces, none, and an unreadable file; labels with one bad row."""
    folder = tmp_path / "set"
    folder.mkdir()
    squares_photo().save(folder / "one.jpg")
    squares_photo(squares=((20, 30, 60), (150, 40, 40))).save(folder / "two.png")
    squares_photo(squares=()).save(folder / "none.jpg")
    (folder / "broken.jpg").write_bytes(b"not an image")
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "file,age,gender\none.jpg,30,1\ntwo.png,40,0\nnone.jpg,50,1\nbroken.jpg,60,0\n"
        "ghost.jpg,1,1\n"
    )
    return folder, labels


@pytest.fixture
def evaluate_set(photo_set, tiny_model_file, red_squares, project):
    """`external.evaluate` of `photo_set` (its bad label skipped) with the tiny model, red
    squares for faces, under the profile "mine"."""
    folder, labels = photo_set

    def evaluate(**options):
        return external.evaluate(
            folder,
            labels=labels,
            model=Predictor(tiny_model_file, red_squares),
            profile="mine",
            skip_bad=True,
            bootstrap_resamples=20,
            paths=project,
            **options,
        )

    return evaluate


def test_bad_labels_stop_everything_before_any_photo_is_read(
    photo_set, tiny_model_file, red_squares, project
):
    folder, labels = photo_set
    predictor = Predictor(tiny_model_file, red_squares)
    with pytest.raises(AgegenderError, match=re.escape("line 6: no photo 'ghost.jpg'")):
        external.evaluate(folder, labels=labels, model=predictor, profile="mine", paths=project)
    assert not (project.results / "mine").exists()


def test_every_photo_is_counted_and_the_faces_found_are_measured(
    evaluate_set, photo_set, tiny_model_file, red_squares, project
):
    folder, _ = photo_set
    [written] = evaluate_set()
    assert written == project.results / "mine" / "external" / "set" / "tiny"
    run = store.load(written)
    assert run.predictions["file"].tolist() == ["one.jpg", "two.png"]
    assert run.predictions["faces_in_photo"].tolist() == [1, 2]
    counts = run.metrics["photos"]
    assert {k: counts[k] for k in ("labelled", "evaluated", "no_face", "unreadable")} == {
        "labelled": 4,
        "evaluated": 2,
        "no_face": 1,
        "unreadable": 1,
    }
    assert counts["several_faces"] == 1 and counts["bad_labels"] == 1
    assert [p["file"] for p in counts["not_evaluated"]] == ["none.jpg", "broken.jpg"]
    assert counts["not_evaluated"][0]["problem"] == NO_FACE
    assert "not an image" in counts["not_evaluated"][1]["problem"]
    assert run.metrics["overall"]["n"] == 2
    assert run.provenance["parameters"]["photos_sha256"]
    # each photo's largest face, answered as `agegender predict` answers it
    answers = predict(folder / "two.png", Predictor(tiny_model_file, red_squares))
    assert run.predictions["age_pred"].iloc[1] == pytest.approx(answers["age"].iloc[0], abs=0.05)
    assert (
        "4 labelled photo(s): 2 evaluated, 1 without a face found, 1 unreadable"
        in external.report(written)
    )


def test_an_archive_is_evaluated_as_its_folder_and_leaves_nothing_behind(
    photo_set, tiny_model_file, red_squares, project
):
    folder, labels = photo_set
    archive = folder.parent / "faces.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in folder.iterdir():
            zipped.write(path, f"faces/{path.name}")
    labels.write_text(
        "file,age,gender\n"
        + "".join(f"faces/{line}\n" for line in labels.read_text().splitlines()[1:])
    )
    predictor = Predictor(tiny_model_file, red_squares)
    [written] = external.evaluate(
        archive, labels=labels, model=predictor, profile="mine", skip_bad=True, paths=project
    )
    assert written.parent.name == "faces"  # the set is named after the archive
    assert store.load(written).predictions["file"].tolist() == ["faces/one.jpg", "faces/two.png"]
    assert list((project.data / "work" / "external").iterdir()) == []


def test_without_gender_labels_only_the_age_is_measured(
    photo_set, tiny_model_file, red_squares, project
):
    folder, _ = photo_set
    labels = folder.parent / "ages.csv"
    labels.write_text("file,age\none.jpg,30\ntwo.png,40\n")
    [written] = external.evaluate(
        folder,
        labels=labels,
        model=Predictor(tiny_model_file, red_squares),
        profile="mine",
        bootstrap_resamples=20,
        paths=project,
    )
    metrics = store.load(written).metrics
    assert metrics["overall"]["age_mae"] is not None
    assert metrics["overall"]["gender_accuracy"] is None
    genders = [g["group"] for g in metrics["by_group"] if g["grouping"] == "gender"]
    assert genders == ["unknown"]


def test_the_command_refuses_bad_labels_with_their_lines_and_a_non_zero_status(
    photo_set, tiny_model_file, capsys, project
):
    folder, labels = photo_set
    status = main(
        [
            "evaluate",
            str(folder),
            "--labels",
            str(labels),
            "--model",
            str(tiny_model_file),
            "--profile",
            "mine",
        ]
    )
    assert status == 2
    assert "line 6: no photo 'ghost.jpg' in the set" in capsys.readouterr().err


def test_a_missing_set_is_refused_before_the_model_is_loaded(project, capsys):
    status = main(["evaluate", "/no/such/set", "--name-pattern", UTKFACE_NAMES])
    assert status == 2
    assert "No such folder or archive: /no/such/set" in capsys.readouterr().err


def test_the_command_needs_one_way_of_labelling(photo_set):
    folder, labels = photo_set
    with pytest.raises(SystemExit):
        main(["evaluate", str(folder)])
    with pytest.raises(SystemExit):
        main(["evaluate", str(folder), "--labels", str(labels), "--name-pattern", "(?P<age>.)"])


def test_a_model_kept_outside_a_work_folder_needs_a_profile(photo_set, tiny_model_file, project):
    folder, labels = photo_set
    with pytest.raises(AgegenderError, match="--profile"):
        external.evaluate(folder, labels=labels, model=tiny_model_file, paths=project)


# --- the test split's own files give the test split's numbers -------------------------------


@pytest.mark.slow
def test_the_test_splits_own_files_give_the_test_splits_numbers(utkface_folder, project, tmp_path):
    from agegender.training.utkface import train_on_utkface

    source, _ = utkface_folder
    data = prepare(project, str(source))
    train_on_utkface(
        data,
        "custom_cnn",
        profile="smoke",
        image_size=16,
        batch_size=16,
        epochs=1,
        depth=2,
        width=4,
        color="grey",  # a one-channel model: the crops go to it as the grey image cache gives them
        bootstrap_resamples=50,
        verbose=0,
    )
    chapter = store.load(project.run_results("smoke", "custom_cnn"))
    folder = tmp_path / "test_split"
    folder.mkdir()
    for file in chapter.predictions["file"]:
        shutil.copy(data.paths.images / file, folder / file)

    [written] = external.evaluate(
        folder,
        name_pattern=UTKFACE_NAMES,
        model=project.run_results("smoke", "custom_cnn"),
        aligned=True,
        bootstrap_resamples=50,
        paths=project,
    )
    assert written == project.results / "smoke" / "external" / "test_split" / "custom_cnn"
    got = store.load(written)
    for metric, value in chapter.metrics["overall"].items():
        assert got.metrics["overall"][metric] == pytest.approx(value, abs=1e-6), metric
    by_group = pd.DataFrame(got.metrics["by_group"]).set_index(["grouping", "group"])
    expected = pd.DataFrame(chapter.metrics["by_group"]).set_index(["grouping", "group"])
    pd.testing.assert_frame_equal(by_group, expected, atol=1e-6)
    assert json.dumps(got.metrics["confidence_intervals"]) is not None
    for metric, ci in chapter.metrics["confidence_intervals"].items():
        for end in ("low", "high"):
            assert got.metrics["confidence_intervals"][metric][end] == pytest.approx(
                ci[end], abs=1e-6, nan_ok=True
            )
    assert "on UTKFace's test split: age MAE" in external.report(written)


def test_the_peer_is_tested_on_the_same_photos_and_its_whole_photo_answers_are_counted(
    evaluate_set, project
):
    from agegender import peer

    if reason := peer.available():
        pytest.skip(reason)
    written = evaluate_set(peer=True)
    assert [path.name for path in written] == ["tiny", "age_and_gender_detector"]
    # read back by set, the model's run before the peer's (not in name order)
    assert list(store.load_external("mine", project)) == [
        ("set", "tiny"),
        ("set", "age_and_gender_detector"),
    ]
    run = store.load(written[1])
    assert run.peer and run.provenance["peer"]["mode"] == "detector"
    # generated photos hold no real face: the peer answers each readable one on the whole photo
    assert run.predictions["file"].tolist() == ["one.jpg", "two.png", "none.jpg"]
    assert run.metrics["photos"]["whole_image"] == 3
    assert run.metrics["photos"]["unreadable"] == 1
    # neither run is taken for one of the profile's peers or baselines
    assert store.load_peers("mine", project) == {} and store.load_baselines("mine", project) == {}


def test_the_runs_on_sets_are_tabled_beside_the_same_runs_on_the_test_split(evaluate_set, project):
    from agegender.results import tables

    evaluate_set()
    runs = store.load_external("mine", project)
    assert list(runs) == [("set", "tiny")]
    table = tables.external_table(runs, {"tiny": runs[("set", "tiny")]})
    column = table[("set", "tiny")]
    assert column["photos evaluated"] == "2 of 4"
    assert (column["no face found"], column["unreadable"]) == (1, 1)
    assert column["age MAE on the set"] == column["age MAE on the test split"]
    assert "±" in column["age MAE on the set"]


# --- the chapter's set ----------------------------------------------------------------------


def test_the_chapter_says_how_to_evaluate_a_set_until_there_is_one(evaluate_set, project):
    from pandas.io.formats.style import Styler

    assert "No set from elsewhere" in external.chapter_sentence("mine", project)
    note = external.chapter_view("mine", project)
    assert "agegender run mine --only 08_using_a_model -p external_set=" in note
    assert "agegender evaluate" in note
    assert external.chapter_evaluate("mine", "custom_cnn", None, paths=project) == []

    evaluate_set()
    view = external.chapter_view("mine", project)
    assert isinstance(view, Styler) and "tiny" in view.to_html()
    sentence = external.chapter_sentence("mine", project)
    assert sentence.startswith("On the set set (2 of 4 photos evaluated), tiny's age MAE was ")
    assert "against" not in sentence  # no test-split run of that name here


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"external_set": "/no/such/set"}, "external_set: no such folder"),
        ({"external_labels": "/no/such.csv"}, "external_labels: no such file"),
        ({"external_name_pattern": r"(\d+)"}, "no group named age"),
    ],
)
def test_the_chapters_set_parameters_are_refused_before_any_chapter_runs(values, message):
    from agegender import runner

    with pytest.raises(AgegenderError, match=message):
        runner.plan("smoke", overrides=values, only=["08_using_a_model"])
    external.check_chapter_parameters(external_set=None, external_name_pattern=r"(?P<age>\d+)")


@pytest.mark.real_data
def test_real_faces_pasted_into_photos_are_found_and_measured(real_faces, tiny_model_file, project):
    from PIL import Image

    from agegender.faces import detect, synthetic

    if reason := detect.available():
        pytest.skip(reason)
    files, split = real_faces
    folder = project.root / "pasted"
    folder.mkdir()
    truths = {}
    rng = np.random.default_rng(15)
    for file in files:
        canvas = synthetic.compose(Image.open(file).convert("RGB"), rng)
        canvas.image.save(folder / file.name, quality=95)  # UTKFace's name: its labels
        truths[file.name] = canvas.face_boxes()[0]
    [written] = external.evaluate(
        folder,
        name_pattern=UTKFACE_NAMES,
        model=tiny_model_file,
        profile="mine",
        bootstrap_resamples=20,
        paths=project,
    )
    run = store.load(written)
    counts = run.metrics["photos"]
    assert counts["evaluated"] >= 8 and counts["evaluated"] + counts["no_face"] == len(files)
    for row in run.predictions.itertuples():  # each answer is of the face pasted there
        assert synthetic.is_of(
            tuple(int(v) for v in row.box.strip("()").split(",")), truths[row.file]
        )
    labels = split.set_index("file").loc[run.predictions["file"]]
    assert run.predictions["age_true"].tolist() == labels["age"].astype(float).tolist()
    assert run.predictions["gender_true"].tolist() == labels["gender"].tolist()
