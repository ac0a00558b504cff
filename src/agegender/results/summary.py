"""What a chapter states about its runs: the values its text glues in, made from results alone.

Each function returns ``{glue name: value}``; `glue_all` hands them to MyST-NB in one call, so a
chapter's closing cell is one line and no number in the text is typed by hand.
"""

from __future__ import annotations

import html
import math
import re

from agegender import provenance
from agegender.config import Paths
from agegender.results import store, tables
from agegender.results import studies as study_results
from agegender.results.store import RunResults

# A MyST admonition: ":::{note} Title", its body, ":::".
ADMONITION = re.compile(r":::\{(\w+)\}[ \t]*(.*?)\n(.*)\n:::", re.DOTALL)


class MarkdownText(str):
    """Text glued as Markdown (``{glue:md}``) rather than as plain text, and shown as Markdown
    when a cell's value; with an HTML twin for pages that paste it from another document
    (MyST-NB pastes HTML across documents, never Markdown)."""

    def _repr_markdown_(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        from markdown_it import MarkdownIt

        render = MarkdownIt("commonmark").render
        admonition = ADMONITION.fullmatch(self.strip())
        if admonition is None:
            return render(str(self))
        kind, title, body = admonition.groups()
        return (
            f'<div class="admonition {kind}"><p class="admonition-title">'
            f"{html.escape(title or kind.title())}</p>{render(body)}</div>"
        )


def glue_all(values: dict) -> None:
    """Glue every value under its name, without displaying it (MyST-NB)."""
    from myst_nb import glue

    for name, value in values.items():
        glue(name, value, display=False)


# The data chapter's counts shown in its text (`agegender.data.dataset.report`).
DATA_COUNTS = (
    "files",
    "accepted",
    "unique_images",
    "duplicate_groups",
    "duplicate_files",
    "conflicting_groups",
    "used",
    "cross_split_duplicate_groups",
)


def data_chapter(counts: dict) -> dict:
    """The data chapter's values: `DATA_COUNTS`, each split's size (``split_<name>``) and the
    files rejected (``rejected_files``)."""
    return (
        {key: counts[key] for key in DATA_COUNTS}
        | {f"split_{name}": n for name, n in counts["splits"].items()}
        | {"rejected_files": sum(counts["rejected"].values())}
    )


def model_chapter(run: RunResults, constant: dict | None = None) -> dict:
    """A model chapter's values: headline metrics (with the digits of every table), data sizes,
    epochs, weights, notice, card, and what its predictions do (`behaviour`, against the
    `constant` baseline of `agegender.baselines.fit_constant` when given)."""
    overall = run.metrics["overall"]
    record = run.provenance
    metrics = ("age_mae", "age_cs5", "gender_accuracy", "gender_auc")
    return {key: f"{overall[key]:.{tables.DIGITS[key]}f}" for key in metrics} | {
        "n_test": f"{overall['n']:,}",
        "n_train": f"{record['parameters']['data']['train']['images']:,}",
        "image_px": record["parameters"]["image_size"],
        "epochs_run": record["epochs_run"],
        "weights_used": provenance.weights_label(record["weights"]),
        "weights_notice": MarkdownText(provenance.weights_notice(run.name, record)),
        "behaviour": behaviour(run, constant),
        "provenance_card": MarkdownText(provenance.card(record)),
    }


# A model whose age predictions spread less than this share of the true ages' spread gives
# nearly every face the same age; one whose share of "female" answers is this far from the true
# share leans to one answer.
COLLAPSED_SPREAD = 0.25
LEANING_SHARE = 0.15


def behaviour(run: RunResults, constant: dict | None = None) -> str:
    """What a model's test predictions do, in sentences: the range and spread of its ages against
    the true ones, its age MAE against the constant baseline's on the same images, and its share
    of "female" answers against the true share, saying so where it has collapsed."""
    p = run.predictions
    spread, true_spread = p["age_pred"].std(), p["age_true"].std()
    sentences = [
        f"Its age predictions run from {p['age_pred'].min():.1f} to {p['age_pred'].max():.1f} "
        f"years, with a standard deviation of {spread:.1f} years against {true_spread:.1f} for "
        "the true ages"
        + (
            ": it gives nearly every face the same age."
            if spread < COLLAPSED_SPREAD * true_spread
            else "."
        )
    ]
    if constant is not None:
        mae = run.metrics["overall"]["age_mae"]
        constant_mae = (p["age_true"] - constant["age"]).abs().mean()
        gap = constant_mae - mae
        verdict = "no better than" if gap < 1 else f"{gap:.2f} years better than"
        sentences.append(
            f"Its age MAE of {mae:.2f} years is {verdict} the {constant_mae:.2f} of a constant "
            f"guess (the training split's median age, {constant['age']:.0f} years, for everyone)."
        )
    said, truth = p["gender_pred"].mean(), p["gender_true"].mean()
    sentences.append(
        f"It calls {said:.0%} of the test faces female, where {truth:.0%} are"
        + (": it leans heavily to one answer." if abs(said - truth) > LEANING_SHARE else ".")
    )
    return " ".join(sentences).replace("%", " %")


def comparison_chapter(
    runs: dict[str, RunResults],
    peers: dict[str, RunResults],
    baselines: dict[str, RunResults] | None = None,
) -> dict:
    """The comparison's values: the answer to the book's question (`answer`), the summary tables,
    and the notices of transfer models that ran without pretrained weights."""
    return {
        "summary_table": tables.headline_table({**runs, **peers, **(baselines or {})}),
        "protocol_table": tables.cost_table(runs),
        "weights_notice": transfer_notice(runs),
        "answer": answer(runs, peers, baselines),
    }


def what_was_run(profile: str, runs: dict[str, RunResults], paths=None) -> MarkdownText:
    """A MyST note saying what the report's numbers come from: the profile and its purpose, the
    split's sizes, and per model its training images, image size, epochs (and whether validation
    stopped improving before the budget ran out), seed and training time; the chapters' total."""
    import pandas as pd

    from agegender import runner

    paths = paths or Paths.default()
    sizes = pd.read_csv(paths.split_file, usecols=["split"])["split"].value_counts()
    said = ", ".join(f"{sizes.get(which, 0):,} {which}" for which in ("train", "val", "test"))
    lines = [
        ":::{note} What was run",
        f"Profile `{profile}`: {runner.load_profile(profile)['description']}",
        "",
        f"The committed split: {said} images.",
        "",
        *(f"- {_run_line(run, sizes.get('train', 0))}" for run in runs.values() if run.trained),
    ]
    times = store.load_chapter_times(profile, paths)
    if times:
        minutes = sum(entry["seconds"] for entry in times.values()) / 60
        lines += [
            "",
            f"The {len(times)} chapters took {minutes:.0f} min on the machine that ran them.",
        ]
    return MarkdownText("\n".join([*lines, ":::"]))


def _run_line(run: RunResults, train_size: int) -> str:
    from agegender.models.specs import MODELS

    record = run.provenance
    config = record["parameters"]["config"]
    images = record["parameters"]["data"]["train"]["images"]
    subset = "all of them" if images == train_size else "a fixed, seeded subset"
    fine_tunes = run.name in MODELS and MODELS[run.name].fine_tunes
    budget = config["epochs"] + (config["fine_tune_epochs"] if fine_tunes else 0)
    best = run.metrics.get("best_epoch")
    if record["epochs_run"] < budget:
        ending = "validation stopped improving before the budget ran out"
    elif best is not None and best + 1 == record["epochs_run"]:
        ending = "still improving at its last epoch: not converged"
    else:
        ending = "its whole budget"
    kept = f", best epoch {best + 1} kept" if best is not None else ""
    return (
        f"**{run.name}**: {images:,} training images ({subset}) at "
        f"{record['parameters']['image_size']} px; {record['epochs_run']} of at most {budget} "
        f"epochs ({ending}{kept}); seed {record['seed']}; "
        f"{tables.training_seconds(record) / 60:.0f} min of training."
    )


def answer(
    runs: dict[str, RunResults],
    peers: dict[str, RunResults],
    baselines: dict[str, RunResults] | None = None,
) -> MarkdownText:
    """The book's question answered from the results, in a paragraph: the best approach on each
    task with its interval, how it stands against the peer and the constant baseline, and
    whether this run can say anything about transfer learning (and how to make it)."""
    sentences = [
        best_sentence(runs),
        peer_sentence(peers),
        peer_gap_sentence(runs, peers),
        baseline_sentence(runs, baselines or {}),
        transfer_sentence(runs),
    ]
    return MarkdownText(" ".join(s for s in sentences if s))


def best_sentence(runs: dict[str, RunResults]) -> str:
    """The best model on age MAE and on gender accuracy, with their 95 % intervals."""
    age = min(runs.values(), key=lambda run: run.metrics["overall"]["age_mae"])
    gender = max(runs.values(), key=lambda run: run.metrics["overall"]["gender_accuracy"])
    age_words = f"age MAE {_value(age, 'age_mae')} years"
    gender_words = f"gender accuracy {_value(gender, 'gender_accuracy')}"
    if age is gender:
        said = f"{_who(age)} is best on both tasks: {age_words} and {gender_words}"
    else:
        said = f"{_who(age)} is best on age, {age_words}; {_who(gender)} on gender, {gender_words}"
    return f"{said} (95 % intervals in brackets cover the sampling of test images only)."


def _who(run: RunResults) -> str:
    return f"{run.name} ({tables.weights_tag(run)})"


def _value(run: RunResults, metric: str) -> str:
    ci, digits = run.metrics["confidence_intervals"][metric], tables.DIGITS[metric]
    return f"**{ci['value']:.{digits}f}** [{ci['low']:.{digits}f}, {ci['high']:.{digits}f}]"


def transfer_notice(runs: dict[str, RunResults]) -> MarkdownText:
    """One MyST warning naming every transfer model that did not start from ImageNet ('' when
    there is none); each model's chapter says what of it trained."""
    untrained = [
        f"{name} ({provenance.weights_label(run.provenance['weights'])})"
        for name, run in _transfer_runs(runs).items()
        if run.provenance["weights"]["kind"] != "imagenet"
    ]
    if not untrained:
        return MarkdownText("")
    return MarkdownText(
        ":::{warning}\n"
        f"**Not transfer learning:** {_names(untrained)} did not start from ImageNet weights, so "
        "their rows measure networks that were mostly never trained, not transfer learning. "
        "Their chapters say what of them learned.\n:::"
    )


def _transfer_runs(runs: dict[str, RunResults]) -> dict[str, RunResults]:
    from agegender.models.specs import MODELS

    return {name: run for name, run in runs.items() if name in MODELS and MODELS[name].transfer}


def transfer_sentence(runs: dict[str, RunResults]) -> str:
    """Whether the runs compare ImageNet transfer with training from scratch, in words."""
    transfer = _transfer_runs(runs)
    pretrained = [n for n, r in transfer.items() if r.provenance["weights"]["kind"] == "imagenet"]
    if not transfer:
        return ""
    if pretrained:
        return (
            f"{_names(pretrained)} started from ImageNet weights, so the rows above compare "
            "transfer learning with training from scratch as run here."
        )
    return (
        f"{_names(sorted(transfer))} ran from random initialisation (no ImageNet weights could "
        "be had where this ran), so this run cannot say whether ImageNet pretraining beats "
        "training from scratch; run them with `weights=imagenet` (the default wherever the "
        "weights can be downloaded, e.g. `make report PROFILE=gpu`) to answer that."
    )


def studies_chapter(profile: str, runs: dict[str, RunResults], paths=None) -> dict:
    """The studies' values (`agegender.studies`): the recipe's table and sentence, the seed
    spread, the data-size table, and every model's time to accuracy; where a study has no
    results, a sentence saying how to make them."""
    from agegender import runner, studies

    declared = studies.studies(runner.load_profile(profile))
    missing = f"No results yet: `agegender study {profile}` makes them."
    loaded = {
        name: store.load_study(profile, name, study.variants, paths)
        for name, study in declared.items()
    }
    values = {"time_to_accuracy": study_results.time_to_accuracy(runs)}
    recipe, recipe_runs = declared.get("recipe"), loaded.get("recipe")
    values |= _recipe_values(recipe, recipe_runs) if recipe_runs else _absent("recipe", missing)
    seeds = loaded.get("seeds")
    values |= _seed_values(declared["seeds"], seeds) if seeds else _absent("seeds", missing)
    data_size = (
        {**(loaded.get("data_size") or {}), **(seeds or {})} if loaded.get("data_size") else {}
    )
    values |= (
        {
            "data_size_table": study_results.data_size_table(data_size),
            "data_size_about": declared["data_size"].about,
            "data_size_sentence": data_size_sentence(data_size),
            "data_size_final": _final_point(declared["data_size"], runs),
        }
        if data_size
        else _absent("data_size", missing)
    )
    return values


def data_size_sentence(runs: dict[str, RunResults]) -> str:
    """What each doubling of the training images bought, on average, in words."""
    table = study_results.data_size_table(runs)
    if len(table) < 2:
        return ""
    first, last = table.iloc[0], table.iloc[-1]
    doublings = math.log2(last["training images"] / first["training images"])
    per_mae = (last["age MAE"] - first["age MAE"]) / doublings
    per_accuracy = (last["gender accuracy"] - first["gender accuracy"]) / doublings
    split = "validation" if first["split"] == "val" else "test"
    return (
        f"From {first['training images']:,} to {last['training images']:,} training images, each "
        f"doubling changed the {split} age MAE by {per_mae:+.2f} years and the gender accuracy "
        f"by {per_accuracy:+.3f} on average."
    )


def _final_point(study, runs: dict[str, RunResults]) -> dict | None:
    """The study's model as its chapter ran it, on the study's split, for the data-size figure."""
    run = runs.get(study.model)
    if run is None:
        return None
    scores = run.metrics["validation"] if study.evaluate_on == "val" else run.metrics["overall"]
    return {
        "images": run.provenance["parameters"]["data"]["train"]["images"],
        "age MAE": scores["age_mae"],
        "gender accuracy": scores["gender_accuracy"],
        "label": f"its chapter's run ({run.provenance['epochs_run']} epochs)",
    }


def _absent(study: str, sentence: str) -> dict:
    return {
        f"{study}_table": MarkdownText(f"*{sentence}*"),
        f"{study}_about": sentence,
        f"{study}_sentence": "",
        f"{study}_final": None,
    }


def _recipe_values(recipe, runs: dict[str, RunResults]) -> dict:
    chosen = study_results.chosen_recipe(recipe.variants, runs)
    changes = ", ".join(f"{key}={value}" for key, value in chosen.items())
    return {
        "recipe_table": study_results.recipe_table(recipe.variants, runs),
        "recipe_about": recipe.about,
        "recipe_sentence": (
            f"By that rule the recipe is the reference with {changes}."
            if chosen
            else "By that rule no variant beat the reference, which stays the recipe."
        ),
    }


def _seed_values(seeds, runs: dict[str, RunResults]) -> dict:
    spread = study_results.seed_spread(runs)
    mae, accuracy = spread["age_mae"], spread["gender_accuracy"]
    return {
        "seeds_table": study_results.seed_table(runs),
        "seeds_about": seeds.about,
        "seeds_sentence": (
            f"Over {spread['seeds']} seeds with {spread['images']:,} training images, the test age "
            f"MAE is {mae[0]:.2f} ± {mae[1]:.2f} years and the gender accuracy "
            f"{accuracy[0]:.3f} ± {accuracy[1]:.3f} (mean ± standard deviation)."
        ),
    }


def peer_sentence(peers: dict[str, RunResults]) -> str:
    """The best off-the-shelf peer's age MAE and gender accuracy in words ('' without peers)."""
    if not peers:
        return ""
    best = min(peers.values(), key=lambda run: run.metrics["overall"]["age_mae"])
    overall = best.metrics["overall"]
    return (
        f"The off-the-shelf peer, untrained here, reaches an age MAE of {overall['age_mae']:.2f} "
        f"years and a gender accuracy of {overall['gender_accuracy']:.3f} on the same images."
    )


def peer_gap_sentence(runs: dict[str, RunResults], peers: dict[str, RunResults]) -> str:
    """How far the best trained model is ahead of or behind the best peer, on each task."""
    if not peers or not runs:
        return ""
    parts = []
    for metric, words, unit, digits, sign in (
        ("age_mae", "age MAE", " years", 2, -1),
        ("gender_accuracy", "gender accuracy", "", 3, 1),
    ):
        pick = min if sign < 0 else max
        model = pick(runs.values(), key=lambda run: run.metrics["overall"][metric])
        peer = pick(peers.values(), key=lambda run: run.metrics["overall"][metric])
        gap = sign * (model.metrics["overall"][metric] - peer.metrics["overall"][metric])
        where = "ahead of" if gap > 0 else "behind" if gap < 0 else "level with"
        amount = f"{abs(gap):.{digits}f}{unit} " if gap else ""
        parts.append(f"on {words}, {model.name} is {amount}{where} the peer")
    return f"{parts[0][0].upper()}{parts[0][1:]}; {parts[1]}."


def baseline_sentence(runs: dict[str, RunResults], baselines: dict[str, RunResults]) -> str:
    """Which models beat the constant baseline on age MAE and on gender accuracy, in words, with
    the baseline's own numbers ('' without baselines)."""
    if not baselines:
        return ""
    base = next(iter(baselines.values())).metrics["overall"]
    sentences = [
        f"A constant guess (the training split's median age for everyone, and the majority's "
        f"gender) scores an age MAE of {base['age_mae']:.2f} years and a gender accuracy of "
        f"{base['gender_accuracy']:.3f}."
    ]
    said = []
    for metric, words, better in (
        ("age_mae", "age MAE", lambda model, constant: model < constant),
        ("gender_accuracy", "gender accuracy", lambda model, constant: model > constant),
    ):
        behind = [
            n for n, r in runs.items() if not better(r.metrics["overall"][metric], base[metric])
        ]
        said.append(
            f"{_names(behind)} {_do(behind)} not beat it on {words}."
            if behind
            else f"Every model beats it on {words}."
        )
    everyone = all(sentence.startswith("Every") for sentence in said)
    sentences += ["Every model beats it on both."] if everyone else said
    return " ".join(sentences)


def _names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _do(names: list[str]) -> str:
    return "does" if len(names) == 1 else "do"
