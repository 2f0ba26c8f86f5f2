"""advrobust.models: building a model by name, and its refusals."""

import pytest

from advrobust import models


@pytest.mark.parametrize("call, match", [
    (lambda: models.build("resnet"), "unknown model 'resnet'; choose one of: cnn, vgg19"),
    (lambda: models.build("vgg19", mode="partial", weights=None), "unknown VGG-19 mode 'partial'; choose one of: frozen, finetune"),
    (lambda: models.build("vgg19", weights=None, trainable_blocks=6), r"trainable_blocks must be in 0..base_blocks \(5\)"),
])
def test_bad_names_and_options(call, match):
    with pytest.raises(ValueError, match=match):
        call()
