import keras
import numpy as np
import pytest

from agegender.data.dataset import prepare
from agegender.data.loader import FaceBatches


def make_batches(n=10, batch_size=4, **kwargs):
    images = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1) * np.ones((1, 2, 2, 1), np.uint8)
    ages = np.arange(n) + 20
    genders = np.arange(n) % 2
    files = np.array([f"f{i}.jpg" for i in range(n)])
    return FaceBatches(images, np.arange(n), ages, genders, files, batch_size=batch_size, **kwargs)


def served_rows(batches):
    return np.concatenate([x[:, 0, 0, 0] for x, _ in (batches[i] for i in range(len(batches)))])


def test_unshuffled_batches_keep_order_and_the_last_partial_batch():
    batches = make_batches(n=10, batch_size=4)
    assert len(batches) == 3
    x, y = batches[2]
    assert x.shape == (2, 2, 2, 1) and x.dtype == np.float32
    assert set(y) == {"age", "gender"}
    np.testing.assert_array_equal(served_rows(batches), np.arange(10))
    np.testing.assert_array_equal(y["age"], [28, 29])
    batches.on_epoch_end()
    np.testing.assert_array_equal(served_rows(batches), np.arange(10))
    with pytest.raises(IndexError):
        batches[3]


def test_shuffled_batches_cover_every_row_once_and_reshuffle_each_epoch():
    batches = make_batches(n=50, batch_size=8, shuffle=True, seed=3)
    epoch0 = served_rows(batches)
    assert sorted(epoch0) == list(range(50))
    assert not np.array_equal(epoch0, np.arange(50))
    np.testing.assert_array_equal(epoch0, served_rows(make_batches(50, 8, shuffle=True, seed=3)))
    batches.on_epoch_end()
    epoch1 = served_rows(batches)
    assert sorted(epoch1) == list(range(50)) and not np.array_equal(epoch0, epoch1)


def test_set_epoch_gives_the_order_that_epoch_would_have():
    resumed = make_batches(n=40, batch_size=8, shuffle=True, seed=5)
    resumed.set_epoch(2)
    played = make_batches(n=40, batch_size=8, shuffle=True, seed=5)
    played.on_epoch_end()
    played.on_epoch_end()
    np.testing.assert_array_equal(served_rows(resumed), served_rows(played))


def test_targets_match_their_images():
    batches = make_batches(n=30, batch_size=7, shuffle=True, seed=1)
    for i in range(len(batches)):
        x, y = batches[i]
        rows = x[:, 0, 0, 0].astype(int)
        np.testing.assert_array_equal(y["age"], rows + 20)
        np.testing.assert_array_equal(y["gender"], rows % 2)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="batch_size"):
        make_batches(batch_size=0)
    with pytest.raises(ValueError, match="rows must index"):
        FaceBatches(np.zeros((3, 2, 2, 1)), [0, 3], [1, 2, 3], [0, 1, 0])
    with pytest.raises(ValueError, match="same length"):
        FaceBatches(np.zeros((3, 2, 2, 1)), [0], [1, 2], [0, 1, 0])


def test_keras_trains_and_predicts_from_the_loader():
    batches = make_batches(n=20, batch_size=6, shuffle=True)
    inputs = keras.Input((2, 2, 1))
    flat = keras.layers.Flatten()(inputs)
    model = keras.Model(
        inputs,
        {
            "age": keras.layers.Dense(1, name="age")(flat),
            "gender": keras.layers.Dense(1, activation="sigmoid", name="gender")(flat),
        },
    )
    model.compile("adam", loss={"age": "mae", "gender": "binary_crossentropy"})
    history = model.fit(batches, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    predictions = model.predict(make_batches(n=20, batch_size=6), verbose=0)
    assert predictions["age"].shape[0] == 20  # the partial batch was not dropped


def test_dataset_batches_serve_splits_and_fixed_subsets(utkface_folder, project):
    folder, _ = utkface_folder
    data = prepare(project, str(folder))
    train = data.batches("train", size=16, batch_size=8)
    val = data.batches("val", size=16, batch_size=8)
    assert train.shuffle and not val.shuffle
    assert len(train.rows) + len(val.rows) + len(data.rows("test")) == len(data.split)
    assert set(train.files).isdisjoint(val.files)
    np.testing.assert_array_equal(val.ages, data.split.loc[val.rows, "age"].to_numpy())
    small, larger = data.rows("train", 10), data.rows("train", 20)
    assert len(small) == 10 and set(small) <= set(larger)
    np.testing.assert_array_equal(small, data.rows("train", 10))
    with pytest.raises(ValueError, match="never shuffled"):
        data.batches("test", size=16, shuffle=True)
    with pytest.raises(ValueError, match="Received: which='holdout'"):
        data.rows("holdout")
    with pytest.raises(ValueError, match="max_images"):
        data.rows("train", 0)
