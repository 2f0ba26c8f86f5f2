"""advrobust.models.vgg19: logits, frozen and fine-tuned blocks, image size, weights files and the
base transfer."""

import numpy as np
import pytest

from advrobust import models
from attacks.backend import keras
from tests.advrobust.models.conftest import X, ends_in_linear_dense


def test_vgg19_outputs_logits_for_mnist_shaped_input():
    model = models.build("vgg19", weights=None, seed=0)
    assert model(X, training=False).shape == (4, 10)
    assert ends_in_linear_dense(model)
    assert models.vgg_base(model).input_shape == (None, 32, 32, 3)


def test_frozen_vgg19_has_no_trainable_convolution_weights():
    model = models.build("vgg19", mode="frozen", weights=None)
    names = [w.name for w in model.trainable_weights]
    assert names and not any("conv" in name for name in names)
    assert sorted(names) == sorted(["head_dense/kernel:0", "head_dense/bias:0", "logits/kernel:0", "logits/bias:0"])


@pytest.mark.parametrize("blocks", [1, 2, 5])
def test_finetune_unfreezes_exactly_the_configured_blocks(blocks):
    model = models.build("vgg19", mode="finetune", weights=None, trainable_blocks=blocks)
    conv_names = {w.name.split("/")[0] for w in model.trainable_weights if "conv" in w.name}
    open_blocks = range(6 - blocks, 6)
    expected = {layer.name for layer in models.vgg_base(model).layers
                if "conv" in layer.name and int(layer.name[5]) in open_blocks}
    assert conv_names == expected
    assert len(expected) == sum({1: 2, 2: 2, 3: 4, 4: 4, 5: 4}[b] for b in open_blocks)


def test_image_size_is_configurable_and_checked():
    model = models.build("vgg19", weights=None, image_size=48)
    assert models.vgg_base(model).input_shape == (None, 48, 48, 3)
    with pytest.raises(ValueError, match="image_size must be >= 32"):
        models.build("vgg19", weights=None, image_size=28)


def test_imagenet_offline_names_the_alternatives(monkeypatch):
    def no_network(*args, weights=None, **kwargs):
        if weights == "imagenet":
            raise OSError("URL fetch failure: Temporary failure in name resolution")
        return original(*args, weights=weights, **kwargs)

    original = keras.applications.VGG19
    monkeypatch.setattr(keras.applications, "VGG19", no_network)
    with pytest.raises(ValueError) as info:
        models.build("vgg19", weights="imagenet")
    message = str(info.value)
    assert "weights=None" in message and ".h5" in message and "pretrained-run" in message
    assert "Temporary failure in name resolution" in message


def test_missing_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights file .*absent.h5"):
        models.build("vgg19", weights=tmp_path / "absent.h5")


def test_vgg_round_trip_and_base_transfer(tmp_path):
    source = models.build("vgg19", mode="finetune", weights=None, trainable_blocks=2, seed=1)
    models.save(source, tmp_path / "source.keras", {"dataset": "mnist"})
    loaded = models.load(tmp_path / "source.keras")
    np.testing.assert_array_equal(loaded(X).numpy(), source(X).numpy())
    assert len(loaded.trainable_weights) == len(source.trainable_weights)

    transferred = models.build("vgg19", mode="frozen", weights=tmp_path / "source.keras", seed=2)
    for got, want in zip(models.vgg_base(transferred).get_weights(), models.vgg_base(source).get_weights()):
        np.testing.assert_array_equal(got, want)

    models.vgg_base(source).save_weights(tmp_path / "notop.h5")
    from_h5 = models.build("vgg19", weights=tmp_path / "notop.h5")
    np.testing.assert_array_equal(models.vgg_base(from_h5).get_weights()[-2],
                                  models.vgg_base(source).get_weights()[-2])


def test_base_blocks_cut_the_base_and_finetune_counts_from_the_cut(tmp_path):
    model = models.build("vgg19", mode="finetune", weights=None, base_blocks=3, trainable_blocks=1)
    base = models.vgg_base(model)
    assert base.layers[-1].name == "block3_pool" and base.output_shape == (None, 4, 4, 256)
    assert {w.name.split("/")[0] for w in model.trainable_weights if "conv" in w.name} == {
        "block3_conv1", "block3_conv2", "block3_conv3", "block3_conv4"}
    assert model(X).shape == (4, 10)
    # Transfer from a full base into a 3-block base copies the shared layers.
    source = models.build("vgg19", weights=None, seed=3)
    models.save(source, tmp_path / "full.keras", {})
    cut = models.build("vgg19", weights=tmp_path / "full.keras", base_blocks=3)
    np.testing.assert_array_equal(models.vgg_base(cut).get_layer("block3_conv4").get_weights()[0],
                                  models.vgg_base(source).get_layer("block3_conv4").get_weights()[0])
    # ...but a 3-block source cannot provide 5 blocks.
    models.save(cut, tmp_path / "cut.keras", {})
    with pytest.raises(ValueError, match="without block4_conv1"):
        models.build("vgg19", weights=tmp_path / "cut.keras", base_blocks=5)
    with pytest.raises(ValueError, match="base_blocks must be in 1..5"):
        models.build("vgg19", weights=None, base_blocks=0)
