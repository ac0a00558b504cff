"""Builders: outputs, parameter counts, freezing, weights files, the offline ImageNet message."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import time

import h5py
import keras
import numpy as np
import pytest

from agegender.data.loader import FaceBatches
from agegender.errors import AgegenderError
from agegender.files import file_digest
from agegender.models import specs
from agegender.models.builders import build, imagenet_extractor, load_checkpoint
from agegender.models.finetune import base_blocks, base_of, unfreeze_top_blocks
from agegender.models.heads import DEX_BINS, age_distribution_model, assemble, parts
from agegender.models.layers import Augmentation, ImagenetPreprocess, RandomAffine, rotate_and_zoom
from agegender.models.weights import (
    DOWNLOAD_TIMEOUT_S,
    IMAGENET_FILES,
    ImagenetFile,
    resolve_weights,
)
from agegender.training.features import extract_features, features_key

SIZE = 32


def count(weights) -> int:
    return int(sum(np.prod(w.shape) for w in weights))


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(0, 255, (6, SIZE, SIZE, 3)).astype("float32")


@pytest.fixture(scope="module")
def vgg16():
    return build("vgg16_features", image_size=SIZE, weights=None)


@pytest.fixture(scope="module")
def resnet50():
    return build("resnet50_finetune", image_size=SIZE, weights=None)


@pytest.fixture(scope="module")
def cnn():
    return build("custom_cnn", image_size=SIZE, width=8, depth=3, units=16)


def outputs_of(model, images):
    return model.predict(images, verbose=0)


@pytest.mark.parametrize("name", ["custom_cnn", "vgg16", "resnet50"])
def test_every_builder_has_named_float32_outputs(name, request, images):
    model = request.getfixturevalue(name if name != "custom_cnn" else "cnn")
    assert model.output_names == ["age", "gender"]
    assert tuple(model.input.shape) == (None, SIZE, SIZE, 3)
    predicted = outputs_of(model, images)
    assert set(predicted) == {"age", "gender"}
    assert predicted["age"].shape == (6, 1) and predicted["age"].dtype == np.float32
    assert predicted["gender"].shape == (6, 1) and predicted["gender"].dtype == np.float32
    assert ((predicted["gender"] >= 0) & (predicted["gender"] <= 1)).all()
    extractor, heads = parts(model)
    assert extractor.name == "extractor" and heads.name == "heads"


def test_build_by_name_returns_the_named_model(images):
    for name in specs.model_names():
        if name == "custom_cnn":
            model = build(name, image_size=SIZE, width=4, depth=2)
        else:
            model = build(name, image_size=SIZE, weights=None)
        assert model.name == name


def test_custom_cnn_has_about_a_million_parameters_and_takes_greyscale():
    model = build("custom_cnn", image_size=128)
    assert 0.8e6 < model.count_params() < 1.3e6
    assert count(model.trainable_weights) > 0.99 * model.count_params()  # all but BN statistics
    grey = build("custom_cnn", image_size=64, channels=1, width=8, depth=2)
    assert tuple(grey.input.shape) == (None, 64, 64, 1)
    assert outputs_of(grey, np.zeros((2, 64, 64, 1), "float32"))["age"].shape == (2, 1)


def test_custom_cnn_options_change_its_shape():
    small = build("custom_cnn", image_size=SIZE, width=4, depth=2, units=8, dropout=0.0)
    large = build("custom_cnn", image_size=SIZE, width=8, depth=3, units=8)
    assert small.count_params() < large.count_params()
    convolutions = [layer for layer in parts(large)[0].layers if "conv" in layer.name]
    assert [layer.filters for layer in convolutions] == [8, 16, 32]
    double = build("custom_cnn", image_size=SIZE, width=8, depth=3, units=8, convs=2)
    convolutions = [layer for layer in parts(double)[0].layers if "conv" in layer.name]
    assert [layer.filters for layer in convolutions] == [8, 8, 16, 16, 32, 32]
    assert double.count_params() > large.count_params()


def test_frozen_vgg16_base_has_no_trainable_weights(vgg16):
    base = base_of(vgg16)
    assert base.name == "vgg16"
    assert count(base.trainable_weights) == 0
    _, heads = parts(vgg16)
    assert count(vgg16.trainable_weights) == count(heads.trainable_weights) > 0
    assert count(vgg16.weights) == count(base.weights) + count(heads.weights)


def test_resnet50_first_stage_trains_only_the_heads(resnet50):
    _, heads = parts(resnet50)
    assert count(resnet50.trainable_weights) == count(heads.trainable_weights)


def test_fine_tuning_unfreezes_exactly_the_top_blocks_but_no_batch_norm(images):
    model = build("resnet50_finetune", image_size=SIZE, weights=None)
    base = base_of(model)
    blocks = base_blocks(base)
    assert len(blocks) == 16 and blocks[-1] == "conv5_block3" and blocks[0] == "conv2_block1"
    unfrozen = unfreeze_top_blocks(model, 2)
    expected = [
        layer.name
        for layer in base.layers
        if layer.name.startswith(("conv5_block2_", "conv5_block3_"))
        and isinstance(layer, keras.layers.Conv2D)
    ]
    assert unfrozen == expected and len(expected) == 6
    trainable_in_base = {layer.name for layer in base.layers if layer.trainable and layer.weights}
    assert trainable_in_base == set(expected)
    assert not any(
        layer.trainable
        for layer in base.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    )
    _, heads = parts(model)
    conv_weights = sum(count(base.get_layer(name).weights) for name in expected)
    assert count(model.trainable_weights) == count(heads.trainable_weights) + conv_weights
    # batch norm stays in inference mode even in a training call
    bn = base.get_layer("conv5_block3_3_bn")
    before = keras.ops.convert_to_numpy(bn.moving_mean).copy()
    model(images, training=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(bn.moving_mean), before)
    with pytest.raises(ValueError, match="Received: blocks=17"):
        unfreeze_top_blocks(model, 17)


def test_custom_cnn_cannot_be_fine_tuned(cnn):
    with pytest.raises(ValueError, match="no pretrained base"):
        unfreeze_top_blocks(cnn, 1)


def test_dex_age_is_the_expected_value_of_its_distribution(images):
    model = build("custom_cnn", image_size=SIZE, width=4, depth=2, age_head="dex")
    distribution = age_distribution_model(model).predict(images, verbose=0)
    assert distribution.shape == (6, DEX_BINS)
    np.testing.assert_allclose(distribution.sum(axis=1), 1, rtol=1e-5)
    expected = (distribution * np.arange(DEX_BINS)).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(outputs_of(model, images)["age"], expected, rtol=1e-4)
    with pytest.raises(ValueError, match="no DEX"):
        age_distribution_model(build("custom_cnn", image_size=SIZE, depth=1))


def test_greyscale_is_repeated_to_rgb_for_imagenet_models():
    model = build("vgg16_features", image_size=SIZE, channels=1, weights=None)
    extractor, _ = parts(model)
    assert tuple(model.input.shape) == (None, SIZE, SIZE, 1)
    assert extractor.get_layer("grey_to_rgb").output.shape[-1] == 3
    grey = np.full((1, SIZE, SIZE, 1), 100.0, "float32")
    rgb = np.repeat(grey, 3, axis=-1)
    rgb_model = assemble(
        imagenet_extractor("vgg16", image_size=SIZE, weights=None),
        parts(model)[1],
        name="rgb",
    )
    base_of(rgb_model).set_weights(base_of(model).get_weights())
    np.testing.assert_allclose(
        outputs_of(model, grey)["age"], outputs_of(rgb_model, rgb)["age"], rtol=1e-5
    )


def test_preprocessing_is_the_applications_own():
    x = np.random.default_rng(1).uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    for family, module in (
        ("vgg16", keras.applications.vgg16),
        ("resnet50", keras.applications.resnet50),
    ):
        layer = ImagenetPreprocess(family)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(layer(x)), module.preprocess_input(x.copy()), rtol=1e-6
        )


def test_augmentation_acts_only_in_training(images):
    augmentation = Augmentation(flip=True, rotation=0.1, zoom=0.2, contrast=0.3)
    model = build(
        "custom_cnn",
        image_size=SIZE,
        width=4,
        depth=2,
        dropout=0.0,
        augmentation=augmentation,
        seed=1,
    )
    names = {layer.name for layer in parts(model)[0].layers}
    assert {"random_flip", "random_affine", "random_contrast"} <= names
    first, second = outputs_of(model, images)["age"], outputs_of(model, images)["age"]
    np.testing.assert_array_equal(first, second)
    trained = keras.ops.convert_to_numpy(model(images, training=True)["age"])
    assert not np.allclose(trained, first)
    assert Augmentation.off().layers() == []
    only_flip = Augmentation(rotation=0, zoom=0, contrast=0).layers()
    assert [layer.name for layer in only_flip] == ["random_flip"]


def test_rotate_and_zoom_turns_and_magnifies_about_the_centre():
    x = np.arange(2 * 5 * 5 * 3, dtype="float32").reshape(2, 5, 5, 3)

    def transformed(turns, scales):
        turns, scales = (np.full((2, 1, 1), v, "float32") for v in (turns, scales))
        return keras.ops.convert_to_numpy(rotate_and_zoom(x, turns, scales))

    np.testing.assert_array_equal(transformed(0.0, 1.0), x)
    np.testing.assert_allclose(transformed(0.25, 1.0), np.rot90(x, 1, axes=(1, 2)), atol=1e-4)
    np.testing.assert_allclose(transformed(0.5, 1.0), x[:, ::-1, ::-1], atol=1e-4)
    zoomed = transformed(0.0, 0.5)  # a window half the side: the centre stays, the corner moves in
    np.testing.assert_array_equal(zoomed[:, 2, 2], x[:, 2, 2])
    np.testing.assert_allclose(zoomed[:, 0, 0], x[:, 1, 1], atol=1e-4)
    np.testing.assert_allclose(zoomed[:, 0, 1], (x[:, 1, 1] + x[:, 1, 2]) / 2, atol=1e-4)


def test_the_augmentation_compiles_with_xla_and_survives_saving(tmp_path, images):
    model = build(
        "custom_cnn", image_size=SIZE, width=4, depth=2, augmentation=Augmentation(), seed=1
    )
    model.compile(
        optimizer="sgd", loss={"age": "mae", "gender": "binary_crossentropy"}, jit_compile=True
    )
    assert model.jit_compile  # Keras' RandomRotation or RandomZoom would have turned it off
    model.fit(
        images, {"age": np.full(len(images), 30.0), "gender": np.ones(len(images))}, verbose=0
    )
    model.save(tmp_path / "m.keras")
    loaded = load_checkpoint(tmp_path / "m.keras")
    layer = parts(loaded)[0].get_layer("random_affine")
    assert (layer.rotation, layer.zoom) == (0.05, 0.1)
    with pytest.raises(ValueError, match=r"Received: zoom=1\.5"):
        RandomAffine(0.1, 1.5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"name": "vgg19", "image_size": SIZE}, "name must be one of"),
        ({"name": "custom_cnn", "image_size": 0}, "Received: image_size=0"),
        ({"name": "custom_cnn", "image_size": 8, "depth": 5}, "Received: image_size=8"),
        ({"name": "custom_cnn", "image_size": SIZE, "weights": "imagenet"}, "no ImageNet weights"),
        ({"name": "custom_cnn", "image_size": SIZE, "channels": 2}, "Received: channels=2"),
        ({"name": "custom_cnn", "image_size": SIZE, "convs": 0}, "Received: convs=0"),
        ({"name": "custom_cnn", "image_size": SIZE, "age_head": "ordinal"}, "Received: age_head="),
        ({"name": "custom_cnn", "image_size": SIZE, "dropout": 1.5}, "Received: dropout=1.5"),
        ({"name": "vgg16_features", "image_size": 16, "weights": None}, "Received: image_size=16"),
        ({"name": "vgg16_features", "image_size": SIZE, "weights": "w.npz"}, "Received: weights="),
        (
            {"name": "resnet50_finetune", "image_size": SIZE, "weights": None, "pooling": "max"},
            "Received: pooling=",
        ),
    ],
)
def test_arguments_are_checked_first(options, message):
    with pytest.raises(ValueError, match=message):
        build(**options)


def test_missing_weights_file_is_a_user_error(tmp_path):
    with pytest.raises(AgegenderError, match="not found"):
        build("custom_cnn", image_size=SIZE, weights=tmp_path / "nope.weights.h5")


# --- weights files -------------------------------------------------------------------------------


def test_custom_cnn_weights_file_round_trip(tmp_path, images):
    model = build("custom_cnn", image_size=SIZE, width=4, depth=2)
    path = tmp_path / "cnn.weights.h5"
    model.save_weights(path)
    loaded = build("custom_cnn", image_size=SIZE, width=4, depth=2, weights=path)
    for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    info = resolve_weights(path)
    assert (info.kind, info.path, info.md5) == ("file", str(path), file_digest(path, "md5"))


def test_base_weights_file_round_trip(tmp_path, vgg16):
    path = tmp_path / "vgg16_base.weights.h5"
    base_of(vgg16).save_weights(path)
    loaded = build("vgg16_features", image_size=SIZE, weights=path)
    for a, b in zip(base_of(vgg16).get_weights(), base_of(loaded).get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert count(base_of(loaded).trainable_weights) == 0


def write_legacy_h5(model, path):
    """Write weights in the Keras 2 HDF5 layout of the published ImageNet files."""
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


def test_imagenet_file_in_keras_home_is_used_offline(tmp_path, monkeypatch, vgg16):
    # A stand-in for the real file, in the same legacy HDF5 layout, under the real file name.
    home = tmp_path / "keras_home"
    (home / "models").mkdir(parents=True)
    spec = IMAGENET_FILES["vgg16"]
    path = home / "models" / spec.file
    write_legacy_h5(base_of(vgg16), path)
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.setitem(
        IMAGENET_FILES,
        "vgg16",
        ImagenetFile("vgg16", spec.file, file_digest(path, "md5"), spec.url),
    )
    info = resolve_weights("imagenet", base="vgg16", download=False)
    assert (info.kind, info.path, info.md5) == ("imagenet", str(path), file_digest(path, "md5"))
    loaded = build("vgg16_features", image_size=SIZE)  # weights="imagenet" by default
    for a, b in zip(base_of(vgg16).get_weights(), base_of(loaded).get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_damaged_imagenet_file_is_reported(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / IMAGENET_FILES["resnet50"].file).write_bytes(b"not weights")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(AgegenderError, match="damaged") as error:
        resolve_weights("imagenet", base="resnet50")
    assert "4d473c1dd8becc155b73f8504c6f6626" in str(error.value)


@pytest.mark.parametrize("name", ["vgg16_features", "resnet50_finetune"])
def test_offline_imagenet_fails_fast_and_says_what_to_do(name, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    spec = IMAGENET_FILES[specs.spec(name).base]
    started = time.monotonic()
    with pytest.raises(AgegenderError) as error:
        build(name, image_size=SIZE)  # no internet here: the download must fail
    elapsed = time.monotonic() - started
    message = str(error.value)
    assert spec.file in message and spec.md5 in message
    assert str(tmp_path / "models" / spec.file) in message
    assert "weights=null" in message
    assert elapsed < 2 * DOWNLOAD_TIMEOUT_S + 10
    with pytest.raises(AgegenderError, match="not on this machine"):
        resolve_weights("imagenet", base=spec.base, download=False)


def test_keras_checkpoint_is_a_starting_point(tmp_path, cnn, images):
    path = tmp_path / "trained.keras"
    cnn.save(path)
    loaded = build("custom_cnn", image_size=SIZE, weights=path)
    np.testing.assert_allclose(
        outputs_of(loaded, images)["age"], outputs_of(cnn, images)["age"], rtol=1e-5
    )
    assert resolve_weights(path).kind == "checkpoint"
    other = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    other.save(tmp_path / "other.keras")
    with pytest.raises(AgegenderError, match="not an age and gender model"):
        load_checkpoint(tmp_path / "other.keras")


def test_saved_dex_vgg16_model_loads_with_its_custom_layers(tmp_path, images):
    model = build("vgg16_features", image_size=SIZE, weights=None, age_head="dex", units=8)
    model.save(tmp_path / "dex.keras")
    loaded = load_checkpoint(tmp_path / "dex.keras")
    np.testing.assert_allclose(
        outputs_of(loaded, images)["age"], outputs_of(model, images)["age"], rtol=1e-4
    )
    assert base_of(loaded).name == "vgg16"


# --- cached features -----------------------------------------------------------------------------


def loader_of(images, rows, files=True):
    n = len(images)
    names = [f"face{i}.jpg" for i in range(n)] if files else None
    return FaceBatches(
        images.astype("uint8"), rows, np.arange(n) + 20, np.arange(n) % 2, names, batch_size=4
    )


def test_features_are_computed_once_and_match_the_end_to_end_model(tmp_path, vgg16, images):
    extractor, heads = parts(vgg16)
    loader = loader_of(images, np.arange(6))
    first, seconds = extract_features(extractor, loader, tmp_path)
    cached = list(tmp_path.glob("*.npy"))
    assert len(cached) == 1 and first.shape == (6, 1, 1, 512)
    assert seconds > 0
    direct = extractor.predict(images.astype("uint8").astype("float32"), verbose=0)
    np.testing.assert_allclose(first, direct, rtol=1e-4, atol=1e-4)

    def fail(*args, **kwargs):
        raise AssertionError("features were computed again")

    original = extractor.predict_on_batch
    extractor.predict_on_batch = fail
    try:
        again, seconds_again = extract_features(extractor, loader, tmp_path)
    finally:
        extractor.predict_on_batch = original
    np.testing.assert_array_equal(first, again)
    assert seconds_again == seconds  # a cached run still reports what the features cost
    heads_age = heads.predict(np.asarray(first), verbose=0)["age"]
    end_to_end = assemble(extractor, heads, name="check")
    np.testing.assert_allclose(
        outputs_of(end_to_end, images.astype("uint8").astype("float32"))["age"],
        heads_age,
        rtol=1e-4,
    )


def test_feature_cache_key_follows_rows_files_and_weights(vgg16, images):
    extractor, _ = parts(vgg16)
    key = features_key(extractor, loader_of(images, np.arange(6)))
    assert key == features_key(extractor, loader_of(images, np.arange(6)))
    assert key != features_key(extractor, loader_of(images, np.arange(5)))
    unnamed = features_key(extractor, loader_of(images, np.arange(6), files=False))
    assert unnamed != features_key(extractor, loader_of(images[::-1].copy(), np.arange(6), False))
    other = imagenet_extractor("vgg16", image_size=SIZE, weights=None)
    assert key != features_key(other, loader_of(images, np.arange(6)))


def test_shuffled_loader_cannot_be_cached(tmp_path, vgg16, images):
    loader = FaceBatches(
        images.astype("uint8"), np.arange(6), np.zeros(6), np.zeros(6), batch_size=4, shuffle=True
    )
    with pytest.raises(ValueError, match="row order"):
        extract_features(parts(vgg16)[0], loader, tmp_path)
