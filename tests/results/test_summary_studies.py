"""The comparison chapter's study values: made from results, and a sentence where there are none."""

import json

from support import write_run

from agegender import runner, studies
from agegender.config import Paths
from agegender.results import store, summary


def test_studies_without_results_say_how_to_make_them(tmp_path):
    paths = Paths(tmp_path, tmp_path / "data")
    write_run(paths.run_results("cpu", "custom_cnn"))
    runs = store.load_models("cpu", paths)
    values = summary.studies_chapter("cpu", runs, paths)
    assert "agegender study cpu" in values["recipe_table"]
    assert values["seeds_sentence"] == "" and values["data_size_final"] is None
    assert values["time_to_accuracy"].loc["custom_cnn", "best val MAE"] == "8.00"


def test_study_values_come_from_the_runs(tmp_path):
    paths = Paths(tmp_path, tmp_path / "data")
    write_run(paths.run_results("cpu", "custom_cnn"))
    declared = studies.studies(runner.load_profile("cpu"))
    folder = paths.profile_results("cpu") / store.STUDIES
    for seed, name in enumerate(declared["seeds"].variants):
        write_run(folder / "seeds" / name, seed=seed)
    for name in declared["data_size"].variants:
        write_run(folder / "data_size" / name)
        record = json.loads((folder / "data_size" / name / "provenance.json").read_text())
        images = declared["data_size"].variants[name]["max_train_images"]
        record["parameters"]["data"]["train"]["images"] = images
        (folder / "data_size" / name / "provenance.json").write_text(json.dumps(record))
    values = summary.studies_chapter("cpu", store.load_models("cpu", paths), paths)
    assert values["seeds_sentence"].startswith("Over 3 seeds with 400 training images")
    table = values["data_size_table"].set_index("training images")
    assert table.loc[400, "runs"] == 3  # the seeds' runs join the data-size curve
    assert values["data_size_final"]["images"] == 400
    assert "doubling changed" in values["data_size_sentence"]


def test_the_gap_to_the_peer_is_said_in_words(tmp_path):
    paths = Paths(tmp_path, tmp_path / "data")
    write_run(paths.run_results("cpu", "custom_cnn"))
    write_run(paths.run_results("cpu", "peer"), age_offset=4.0, seed=1)
    record_path = paths.run_results("cpu", "peer") / "provenance.json"
    record_path.write_text(json.dumps({**json.loads(record_path.read_text()), "peer": {}}))
    runs, peers = store.load_models("cpu", paths), store.load_peers("cpu", paths)
    model, peer = runs["custom_cnn"].metrics["overall"], peers["peer"].metrics["overall"]
    sentence = summary.peer_gap_sentence(runs, peers)
    gap = peer["age_mae"] - model["age_mae"]
    assert sentence.startswith(f"On age MAE, custom_cnn is {abs(gap):.2f} years ")
    assert ("ahead of" if gap > 0 else "behind") in sentence.split(";")[0]
    assert summary.peer_gap_sentence(runs, {}) == ""


def test_the_answer_says_what_the_runs_can_and_cannot_tell(tmp_path):
    paths = Paths(tmp_path, tmp_path / "data")
    write_run(paths.run_results("cpu", "custom_cnn"))
    write_run(paths.run_results("cpu", "vgg16_features"), age_offset=6.0, seed=1)
    runs = store.load_models("cpu", paths)
    scratch = runs["custom_cnn"].metrics["confidence_intervals"]["age_mae"]
    answer = summary.answer(runs, {})
    assert answer.startswith("custom_cnn (from scratch) is best on")
    assert f"**{scratch['value']:.2f}** [{scratch['low']:.2f}, {scratch['high']:.2f}]" in answer
    assert "vgg16_features ran from random initialisation" in answer
    assert "cannot say whether ImageNet pretraining beats training from scratch" in answer

    imagenet = paths.run_results("cpu", "vgg16_features")
    record = json.loads((imagenet / "provenance.json").read_text())
    record["weights"]["kind"] = "imagenet"
    (imagenet / "provenance.json").write_text(json.dumps(record))
    answer = summary.answer(store.load_models("cpu", paths), {})
    assert "vgg16_features started from ImageNet weights" in answer
    assert "cannot say" not in answer


def test_the_comparison_has_one_notice_for_every_untrained_transfer_model(tmp_path):
    paths = Paths(tmp_path, tmp_path / "data")
    for name in ("custom_cnn", "vgg16_features", "resnet50_finetune"):
        write_run(paths.run_results("cpu", name))
    notice = summary.transfer_notice(store.load_models("cpu", paths))
    assert notice.count(":::{warning}") == 1
    assert "vgg16_features (random initialisation) and resnet50_finetune" in notice
    assert "custom_cnn" not in notice


def test_what_was_run_says_where_each_number_comes_from(tmp_path):
    paths = Paths(tmp_path, tmp_path / "data")
    paths.split_file.parent.mkdir(parents=True)
    paths.split_file.write_text("split\n" + "train\n" * 400 + "val\n" * 60 + "test\n" * 60)
    write_run(paths.run_results("cpu", "custom_cnn"))
    (paths.profile_results("cpu") / store.CHAPTER_TIMES).write_text(
        json.dumps({"02_custom_cnn": {"seconds": 600.0}, "05_comparison": {"seconds": 60.0}})
    )
    note = summary.what_was_run("cpu", store.load_models("cpu", paths), paths)
    assert note.startswith(":::{note} What was run\nProfile `cpu`: ") and note.endswith(":::")
    assert "The committed split: 400 train, 60 val, 60 test images." in note
    assert "**custom_cnn**: 400 training images (all of them) at 64 px" in note
    assert "The 2 chapters took 11 min" in note


def test_markdown_glued_into_another_page_has_an_html_twin():
    note = summary.MarkdownText(":::{note} What was run\nProfile **cpu**.\n\n- a run\n:::")
    assert note._repr_html_() == (
        '<div class="admonition note"><p class="admonition-title">What was run</p>'
        "<p>Profile <strong>cpu</strong>.</p>\n<ul>\n<li>a run</li>\n</ul>\n</div>"
    )
    assert summary.MarkdownText("**5.31** [5.15, 5.48]")._repr_html_() == (
        "<p><strong>5.31</strong> [5.15, 5.48]</p>\n"
    )
