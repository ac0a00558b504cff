"""The benchmarks run and report what they promise (their timings are never asserted)."""

import numpy as np

from agegender.bench import bench_data, bench_training
from agegender.data.dataset import prepare


def test_bench_data_rebuilds_and_reloads_the_cache_outside_the_project(utkface_folder, project):
    folder, _ = utkface_folder
    data = prepare(project, str(folder))
    figures = bench_data(data, size=16)
    assert figures["images"] == len(data.split) and figures["size"] == 16
    assert figures["pixel_checksum"] == int(data.image_cache(16).images.sum(dtype=np.uint64))
    assert figures["decode_images_per_s"] > 0 and figures["build_peak_rss_mib"] > 0
    assert [p.name for p in data.paths.data.iterdir() if p.name.startswith(".bench")] == []


def test_bench_training_reports_every_model_and_the_cached_feature_speedup(utkface_folder, project):
    folder, _ = utkface_folder
    figures = bench_training(
        prepare(project, str(folder)),
        sizes=(32,),
        batch_size=4,
        batches=2,
        head_epoch_images=40,
        head_batch_size=8,
    )
    assert [row["model"] for row in figures["training"]] == [
        "custom_cnn",
        "vgg16_features (frozen base, end to end)",
        "resnet50_finetune stage 1 (base frozen)",
        "resnet50_finetune stage 2 (top 3 blocks)",
    ]
    assert all(row["train_images_per_s"] > 0 for row in figures["training"])
    (cached,) = figures["vgg16_cached_features"]
    assert cached["epoch_images"] == 40 and cached["speedup"] > 0
