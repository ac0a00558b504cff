"""What a chapter states about its runs: the values its text glues in, made from results alone.

Each function returns ``{glue name: value}``; `glue_all` hands them to MyST-NB in one call, so a
chapter's closing cell is one line and no number in the text is typed by hand.
"""

from __future__ import annotations

from agegender import provenance
from agegender.results import tables
from agegender.results.store import RunResults


class MarkdownText(str):
    """Text glued as Markdown (``{glue:md}``) rather than as plain text."""


def glue_all(values: dict) -> None:
    """Glue every value under its name, without displaying it (MyST-NB)."""
    from IPython.display import Markdown
    from myst_nb import glue

    for name, value in values.items():
        glue(name, Markdown(value) if isinstance(value, MarkdownText) else value, display=False)


def model_chapter(run: RunResults) -> dict:
    """A model chapter's values: headline metrics, data sizes, epochs, weights, notice, card."""
    overall = run.metrics["overall"]
    record = run.provenance
    metrics = ("age_mae", "age_cs5", "gender_accuracy", "gender_auc")
    return {key: f"{overall[key]:.3f}" for key in metrics} | {
        "n_test": overall["n"],
        "n_train": record["parameters"]["data"]["train"]["images"],
        "image_px": record["parameters"]["image_size"],
        "epochs_run": record["epochs_run"],
        "weights_used": provenance.weights_label(record["weights"]),
        "weights_notice": MarkdownText(provenance.weights_notice(run.name, record["weights"])),
        "provenance_card": MarkdownText(provenance.card(record)),
    }


def comparison_chapter(
    runs: dict[str, RunResults],
    peers: dict[str, RunResults],
    baselines: dict[str, RunResults] | None = None,
) -> dict:
    """The comparison's values: the best model on age and on gender, the peer's and the
    baselines' sentences, the summary tables, and the notices of transfer models that ran
    without pretrained weights."""
    baselines = baselines or {}
    best_age = min(runs.values(), key=lambda run: run.metrics["overall"]["age_mae"])
    best_gender = max(runs.values(), key=lambda run: run.metrics["overall"]["gender_accuracy"])
    notices = [provenance.weights_notice(n, r.provenance["weights"]) for n, r in runs.items()]
    return {
        "best_age_model": f"{best_age.name} ({tables.weights_tag(best_age)})",
        "best_age_mae": f"{best_age.metrics['overall']['age_mae']:.2f}",
        "best_gender_model": f"{best_gender.name} ({tables.weights_tag(best_gender)})",
        "best_gender_accuracy": f"{best_gender.metrics['overall']['gender_accuracy']:.3f}",
        "summary_table": tables.headline_table({**runs, **peers, **baselines}),
        "protocol_table": tables.cost_table(runs),
        "peer_sentence": peer_sentence(peers),
        "baseline_sentence": baseline_sentence(runs, baselines),
        "weights_notice": MarkdownText("\n\n".join(n for n in notices if n)),
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
    for metric, words, better in (
        ("age_mae", "age MAE", lambda model, constant: model < constant),
        ("gender_accuracy", "gender accuracy", lambda model, constant: model > constant),
    ):
        behind = [
            n for n, r in runs.items() if not better(r.metrics["overall"][metric], base[metric])
        ]
        if behind:
            sentences.append(f"{_names(behind)} {_do(behind)} not beat it on {words}.")
        else:
            sentences.append(f"Every model beats it on {words}.")
    return " ".join(sentences)


def _names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _do(names: list[str]) -> str:
    return "does" if len(names) == 1 else "do"
