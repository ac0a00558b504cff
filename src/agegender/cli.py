"""The `agegender` command: `data prepare`, `data report`, `run`, `study`, `build`, `bench`,
`predict`, `evaluate`."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from agegender.errors import AgegenderError


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except AgegenderError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        cause = f" by {interrupt}" if str(interrupt) else ""  # SIGTERM (agegender.runner)
        print(
            f"interrupted{cause}: nothing half-written was kept; run the command again to resume",
            file=sys.stderr,
        )
        return 128 + signal.SIGTERM if cause else 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agegender", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    data = commands.add_parser("data", help="get UTKFace, check it, split it, report on it")
    data_commands = data.add_subparsers(required=True, metavar="ACTION")
    prepare = data_commands.add_parser(
        "prepare", help="fetch or unpack UTKFace, check every file, make or verify the split"
    )
    _data_options(prepare)
    prepare.add_argument("--sha256", help="expected sha256 of a downloaded archive")
    prepare.add_argument(
        "--new-split",
        action="store_true",
        help="write a new split from the files on disk (replaces the committed "
        "one; results are then not comparable with the published ones)",
    )
    prepare.add_argument(
        "--duplicates",
        choices=("one", "all"),
        default="one",
        help="with --new-split: keep one file per duplicate group, or all copies",
    )
    prepare.add_argument(
        "--conflicts",
        choices=("exclude", "first"),
        default="exclude",
        help="with --new-split: drop duplicate groups whose labels disagree, or "
        "keep them with the first file's labels",
    )
    prepare.add_argument("--seed", type=int, default=None, help="with --new-split: split seed")
    prepare.set_defaults(handler=_prepare)

    report = data_commands.add_parser(
        "report", help="counts: files, rejections, duplicates, splits"
    )
    _data_options(report)
    report.add_argument("--json", action="store_true", help="print one JSON object")
    report.set_defaults(handler=_report)

    run = commands.add_parser("run", help="execute the chapters with papermill under a profile")
    run.add_argument(
        "profile",
        help="smoke, cpu, gpu, or auto (gpu when Keras sees a GPU, "
        "else cpu); see src/agegender/profiles/",
    )
    run.add_argument(
        "--only",
        type=lambda text: text.split(","),
        default=None,
        metavar="CHAPTER[,CHAPTER]",
        help="chapters by name, e.g. data,custom_cnn",
    )
    run.add_argument(
        "-p",
        "--parameter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a parameter (a number, true/false, null or text), "
        "e.g. -p epochs=3 -p weights=null",
    )
    run.set_defaults(handler=_run)

    study = commands.add_parser(
        "study", help="run a profile's studies (recipe selection, seeds, data size) into results/"
    )
    study.add_argument("profile", help="a profile with a 'studies' section, e.g. cpu")
    study.add_argument(
        "--only",
        type=lambda text: text.split(","),
        default=None,
        metavar="STUDY[,STUDY]",
        help="studies by name (default: all the profile's)",
    )
    study.add_argument(
        "--fresh", action="store_true", help="start every variant over instead of resuming"
    )
    _data_options(study)
    study.set_defaults(handler=_study)

    build = commands.add_parser("build", help="build the book (warnings are errors)")
    build.set_defaults(handler=_build)

    bench = commands.add_parser(
        "bench",
        help="measure throughput and memory; writes results/bench/<device>.json (not a test: "
        "timings are noisy)",
    )
    _data_options(bench)
    bench.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    bench.add_argument(
        "--only",
        type=lambda text: text.split(","),
        default=None,
        metavar="PART[,PART]",
        help="pipeline, features, compile, backends, scaling (default: all)",
    )
    bench.add_argument(
        "--device",
        choices=("auto", "cpu", "gpu"),
        default="auto",
        help="which plan, and the results file's name (auto: gpu when Keras sees a GPU)",
    )
    bench.add_argument(
        "--backend",
        choices=("tensorflow", "jax", "torch"),
        default=None,
        help="the Keras backend of every part but 'backends' (default: $KERAS_BACKEND, else "
        "tensorflow)",
    )
    bench.add_argument(
        "--quick", action="store_true", help="a small run in minutes, to check that it all works"
    )
    bench.set_defaults(handler=_bench)

    predict = commands.add_parser(
        "predict",
        help="age and gender of the faces in photos, with a model trained here",
        description="Find the faces in photos, cut each out as UTKFace's crops were cut, and "
        "estimate its age and gender. Exit status 0 when at least one photo was read (photos "
        "without faces or unreadable ones are listed), 1 when none could be.",
    )
    predict.add_argument("photos", nargs="+", metavar="PHOTO|FOLDER", help="photos or folders")
    predict.add_argument(
        "--model",
        metavar="RUN",
        help="a run's results folder (e.g. results/cpu/vgg16_features) or a .keras file "
        "(default: the best model of the latest run on this machine)",
    )
    output = predict.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print one JSON object")
    output.add_argument("--csv", action="store_true", help="print a CSV table")
    predict.add_argument(
        "--annotate", metavar="OUT", help="write the photos with boxes and labels into folder OUT"
    )
    predict.set_defaults(handler=_predict)

    evaluate = commands.add_parser(
        "evaluate",
        help="test a trained model on labelled face photos from elsewhere",
        description="Test a trained model on a labelled set of face photos (a folder or an "
        "archive), each face found and cut out as for `predict`, with the test split's metrics, "
        "age bands and intervals, into results/<profile>/external/<set>/<model>/. Every label is "
        "checked first; photos without a face or unreadable are counted and listed.",
    )
    evaluate.add_argument("source", metavar="SOURCE", help="a folder or a .zip/.tar(.gz) archive")
    labels = evaluate.add_mutually_exclusive_group(required=True)
    labels.add_argument(
        "--labels", metavar="CSV", help="a CSV file with the columns file, age[, gender]"
    )
    labels.add_argument(
        "--name-pattern",
        metavar="REGEX",
        help="a regular expression with the named groups age (and gender) searched in each "
        r"file's name, e.g. '^(?P<age>\d+)_(?P<gender>[01])_'",
    )
    evaluate.add_argument(
        "--model",
        metavar="RUN",
        help="a run's results folder or a .keras file (default: as for predict)",
    )
    evaluate.add_argument("--set", dest="name", help="the set's name (default: SOURCE's name)")
    evaluate.add_argument("--profile", help="the results' profile (default: the model's, e.g. cpu)")
    evaluate.add_argument(
        "--aligned",
        action="store_true",
        help="the photos are UTKFace-like face crops already: no face detection",
    )
    evaluate.add_argument(
        "--peer", action="store_true", help="test the off-the-shelf peer on the same photos too"
    )
    evaluate.add_argument(
        "--skip-bad",
        action="store_true",
        help="evaluate the photos with good labels when some are bad (counted in the results)",
    )
    evaluate.set_defaults(handler=_evaluate)
    return parser


def _data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source",
        help="folder, .tar.gz/.tgz/.zip archive, http(s) URL or "
        "kaggle:OWNER/DATASET (default: $UTKFACE_SOURCE)",
    )
    parser.add_argument(
        "--data-dir",
        help="where raw images and caches live (default: ./data, or $AGEGENDER_DATA_DIR)",
    )


def _prepare_data(args: argparse.Namespace, **options):
    from agegender.config import Paths
    from agegender.data.dataset import prepare

    return prepare(Paths.default(args.data_dir), args.source, **options)


def _prepare(args: argparse.Namespace) -> int:
    from agegender.data import split

    seed = split.DEFAULT_SEED if args.seed is None else args.seed
    data = _prepare_data(
        args,
        sha256=args.sha256,
        new_split=args.new_split,
        duplicates=args.duplicates,
        conflicts=args.conflicts,
        seed=seed,
    )
    counts = data.split["split"].value_counts()
    print(
        f"UTKFace ready in {data.paths.images}: {len(data.manifest)} files, "
        f"{int(data.manifest['use'].sum())} used; split {data.paths.split_file.name}: "
        + ", ".join(f"{name} {counts.get(name, 0)}" for name in split.SPLITS)
    )
    if data.check.new:
        print(
            f"note: {len(data.check.new)} usable file(s) on disk are not in the split, "
            f"e.g. {data.check.new[0]}"
        )
    return 0


def _report(args: argparse.Namespace) -> int:
    from agegender.data.dataset import report

    counts = report(_prepare_data(args))
    print(json.dumps(counts, indent=2) if args.json else _format_report(counts))
    return 0


def _format_report(counts: dict) -> str:
    from agegender.data.dataset import COUNTS

    lines = ["UTKFace data report", ""]
    for key, words in COUNTS.items():
        lines.append(f"  {words:<44}{counts[key]:>8}")
    lines.append(f"  {'rejected':<44}{sum(counts['rejected'].values()):>8}")
    lines += [f"    {reason:<42}{n:>8}" for reason, n in counts["rejected"].items()]
    lines.append("  split")
    lines += [f"    {name:<42}{n:>8}" for name, n in counts["splits"].items()]
    lines += [
        "",
        f"  policy          {counts['policy']}",
        f"  dataset sha256  {counts['dataset_sha256']}",
        f"  split sha256    {counts['split_sha256']}",
    ]
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    from agegender import runner

    steps = runner.plan(
        args.profile, only=args.only, overrides=runner.parse_overrides(args.parameter)
    )
    runner.execute(steps)
    return 0


def _study(args: argparse.Namespace) -> int:
    from agegender import runner, studies

    profile = runner.load_profile(args.profile)
    chosen = studies.select(studies.studies(profile), args.only)
    if not chosen:
        print(f"Profile {profile['parameters']['profile']!r} declares no studies.")
        return 0
    data = _prepare_data(args)
    for study in chosen:
        studies.run(data, profile, study, fresh=args.fresh)
    return 0


def _build(args: argparse.Namespace) -> int:
    from agegender import runner

    print(f"The book is in {runner.build()}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from agegender.bench import report, suite

    device = args.device
    if device == "auto":
        from agegender.runner import default_profile

        device = default_profile()
    changes = {"backend": args.backend or os.environ.get("KERAS_BACKEND") or "tensorflow"}
    if args.only:
        changes["parts"] = tuple(args.only)
    if args.quick:
        changes |= suite.QUICK
    try:
        settings = suite.Settings.for_device(device, **changes)
    except ValueError as error:
        raise AgegenderError(str(error)) from None
    progress = (lambda line: print(line, file=sys.stderr)) if args.json else print
    figures = suite.run(settings, _prepare_data(args), progress=progress)
    print(json.dumps(figures, indent=2) if args.json else report.summary(figures))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from agegender import predict

    quiet = args.json or args.csv
    table = predict.predict(
        args.photos,
        args.model,
        annotate=args.annotate,
        progress=None if quiet else lambda rows: print(predict.format_rows(rows)),
    )
    if args.json:
        print(json.dumps(predict.as_json(table), indent=2))
    elif args.csv:
        print(predict.as_csv(table), end="")
    print(predict.summary(table), file=sys.stderr)
    return 0 if predict.photos_read(table) else 1


def _evaluate(args: argparse.Namespace) -> int:
    from agegender import external

    folders = external.evaluate(
        args.source,
        labels=args.labels,
        name_pattern=args.name_pattern,
        model=args.model,
        name=args.name,
        profile=args.profile,
        aligned=args.aligned,
        peer=args.peer,
        skip_bad=args.skip_bad,
        progress=_progress_line if sys.stderr.isatty() else None,
    )
    for folder in folders:
        print(external.report(folder))
    return 0


def _progress_line(done: int, total: int) -> None:
    print(f"\r{done}/{total} photos", end="\n" if done == total else "", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
