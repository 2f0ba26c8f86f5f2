"""Certified bounds on a network's logits over an eps-ball: IBP and CROWN-IBP.

A Keras model is read once into a :class:`Network`, a chain of small operations that
each know how to push an interval forward and a linear bound backward. Two methods:

* **IBP** (interval bound propagation, Gowal et al. 2018): a box [lower, upper] is pushed
  through every layer. The last affine layers are folded into the specification
  (``C @ W``) before the box is used, as Gowal et al. do, so an affine model is bounded
  exactly.
* **CROWN-IBP** (Zhang et al. 2020): the specification is pushed backward through the
  whole network as a linear function of the input (CROWN, Zhang et al. 2018), relaxing
  each ReLU with the IBP bounds of its input; the linear bound is then minimised over
  the input set in closed form. ``"crown_ibp"`` returns the elementwise maximum of that
  bound and IBP's, both sound, so it is never looser than IBP.

Relaxations. An unstable ReLU (``l < 0 < u``) is bounded above by the chord
``u (z - l) / (u - l)`` and below by ``z`` if ``u > -l`` else by 0 (CROWN's adaptive
choice). A max-pool output is bounded below by the input with the largest lower bound in
its window and above by the window's largest upper bound (a constant), unless the window
is decided (that input's lower bound is at least every other input's upper bound), where
it is that input exactly; deciding windows needs non-overlapping pools (strides at least
the pool size), overlapping ones always take the constant.

The input set is the eps-ball around ``x`` intersected with ``clip`` (as the attacks
search it). For L-inf that is a box. For L2, IBP bounds the first affine layer by the
dual norm (``|W_row|_2 * eps``, intersected with the box ``x +- eps``) and CROWN-IBP
minimises over the ball (``A x - eps |A|_2``); ``clip`` is then dropped, which only
loosens the bound. Past the first affine layer the L2 set is a box again, so L2
certificates are weaker than the norm alone would suggest.

Everything is TensorFlow, batched and differentiable in the model's weights, so a
certified-training loss can use :func:`margin_lower_bounds` directly. Layers: Dense and
Conv2D (activation ``relu`` or ``linear``), ReLU and ``Activation('relu')``,
MaxPooling2D, Flatten, Rescaling, Resizing (any interpolation, of a fixed input size),
Dropout (inference: identity) and InputLayer, in Sequential or single-path functional
tf-keras models (nested ones too); anything else (BatchNormalization, LeakyReLU, other
activations, branches) is refused by name rather than bounded wrongly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from attacks.backend import keras, tf

METHODS = ("ibp", "crown_ibp")
NORMS = ("inf", "l2")
SUPPORTED_LAYERS = ("InputLayer", "Dense", "Conv2D", "ReLU", "Activation", "MaxPooling2D", "Flatten",
                    "Rescaling", "Resizing", "Dropout")


def _sum_per_spec(tensor: tf.Tensor) -> tf.Tensor:
    """Sum (N, S, ...) over everything but the first two axes: (N, S)."""
    return tf.reduce_sum(tf.reshape(tensor, tf.concat([tf.shape(tensor)[:2], [-1]], axis=0)), axis=2)


def _split_signs(coef: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return tf.nn.relu(coef), -tf.nn.relu(-coef)


# The two products below are sums over a coefficient tensor of S times an example's size;
# written as matrix products they read it once instead of first writing coef * other.
def _dot_per_example(coef: tf.Tensor, values: tf.Tensor) -> tf.Tensor:
    """sum over everything but (N, S) of ``coef * values``, values (N, 1, ...) or (N, ...): (N, S)."""
    shape = tf.shape(coef)
    flat = tf.reshape(coef, tf.concat([shape[:2], [-1]], axis=0))
    return tf.linalg.matvec(flat, tf.reshape(values, [shape[0], -1]))


def _dot_bias(coef: tf.Tensor, bias: tf.Tensor) -> tf.Tensor:
    """sum over everything but (N, S) of ``coef * bias``, the bias broadcast from the right: (N, S)."""
    rank = coef.shape.rank
    if bias.shape.rank == 1 and rank is not None and rank >= 3:
        per_channel = tf.reduce_sum(coef, axis=list(range(2, rank - 1))) if rank > 3 else coef
        return tf.tensordot(per_channel, bias, axes=1)
    return _sum_per_spec(coef * bias)


class _Affine:
    """An affine layer ``linear(x) + bias``; subclasses give the linear part and its transpose.

    The layer's variables are kept and cast at every use, so the bounds follow training and
    gradients reach the variables whatever ``dtype`` is.
    """

    def __init__(self, name: str, dtype: tf.DType, weight: Any = None, bias: Any = None):
        self.name, self.dtype, self._weight, self._bias = name, dtype, weight, bias

    @property
    def weight(self) -> tf.Tensor:
        return tf.cast(self._weight, self.dtype)

    @property
    def bias(self) -> tf.Tensor | None:
        return None if self._bias is None else tf.cast(self._bias, self.dtype)

    def linear(self, x: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def abs_linear(self, x: tf.Tensor) -> tf.Tensor:
        """The linear part with every weight replaced by its absolute value."""
        raise NotImplementedError

    def transpose(self, coef: tf.Tensor, input_like: tf.Tensor) -> tf.Tensor:
        """``coef @ W``: coefficients (N, S, *out) on the output to (N, S, *in) on the input."""
        raise NotImplementedError

    def l2_radius(self, eps: tf.Tensor, output: tf.Tensor) -> tf.Tensor:
        """The largest change of each output over an L2 ball of radius ``eps``: eps |W_row|_2."""
        raise NotImplementedError

    def forward(self, x: tf.Tensor) -> tf.Tensor:
        out = self.linear(x)
        return out if self.bias is None else out + self.bias

    def interval(self, lower: tf.Tensor, upper: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        middle = self.forward((upper + lower) / 2)
        radius = self.abs_linear((upper - lower) / 2)
        return middle - radius, middle + radius

    def backward(self, coef: tf.Tensor, lower: tf.Tensor, upper: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        offset = tf.zeros(tf.shape(coef)[:2], coef.dtype) if self.bias is None else _dot_bias(coef, self.bias)
        return self.transpose(coef, lower), offset


class _Dense(_Affine):
    # tensordot, not einsum("...i,io->...o"): the einsum's weight gradient broadcasts over
    # the batch first, materialising (N, in, out) (on the reference CNN's 9216 x 128 layer,
    # 0.86 s of a 1.0 s IBP training step at batch 128); tensordot is one matmul each way.
    def linear(self, x):
        return tf.tensordot(x, self.weight, axes=1)

    def abs_linear(self, x):
        return tf.tensordot(x, tf.abs(self.weight), axes=1)

    def transpose(self, coef, input_like):
        return tf.tensordot(coef, self.weight, axes=[[-1], [1]])

    def l2_radius(self, eps, output):
        return eps * tf.norm(self.weight, axis=0) * tf.ones_like(output)


def _undilated(kernel: Any, dilations: tuple[int, int]) -> tf.Tensor:
    """The dilation-1 kernel of a dilated convolution: ``dilations - 1`` zeros between the
    taps, (kh - 1) dh + 1 by (kw - 1) dw + 1; the same kernel when both dilations are 1."""
    dh, dw = dilations
    if (dh, dw) == (1, 1):
        return kernel
    kh, kw, channels_in, channels_out = kernel.shape
    taps = [[i * dh, j * dw] for i in range(kh) for j in range(kw)]
    return tf.scatter_nd(taps, tf.reshape(kernel, (kh * kw, channels_in, channels_out)),
                         ((kh - 1) * dh + 1, (kw - 1) * dw + 1, channels_in, channels_out))


class _Conv(_Affine):
    def __init__(self, name: str, dtype: tf.DType, kernel: Any, bias: Any, strides: tuple[int, int],
                 padding: str, dilations: tuple[int, int]):
        super().__init__(name, dtype, kernel, bias)
        self.strides, self.padding, self.dilations = strides, padding.upper(), dilations

    def _conv(self, x, kernel):
        return tf.nn.conv2d(x, kernel, self.strides, self.padding, dilations=self.dilations)

    def linear(self, x):
        return self._conv(x, self.weight)

    def abs_linear(self, x):
        return self._conv(x, tf.abs(self.weight))

    def transpose(self, coef, input_like):
        shape = tf.shape(coef)
        flat = tf.reshape(coef, tf.concat([[-1], shape[2:]], axis=0))
        in_shape = tf.shape(input_like)[1:]
        # TensorFlow's CPU kernel of the transposed convolution refuses dilations > 1 on some
        # CPUs; the kernel with zeros between its taps is the same convolution at dilation 1.
        out = tf.nn.conv2d_transpose(flat, _undilated(self.weight, self.dilations),
                                     tf.concat([tf.shape(flat)[:1], in_shape], axis=0), self.strides, self.padding)
        return tf.reshape(out, tf.concat([shape[:2], in_shape], axis=0))

    def l2_radius(self, eps, output):
        # The full kernel's norm: at a 'same' border fewer weights touch the input, so it is an upper bound.
        return eps * tf.norm(tf.reshape(self.weight, [-1, tf.shape(self.weight)[-1]]), axis=0) * tf.ones_like(output)


class _Scale(_Affine):
    def linear(self, x):
        return x * self.weight

    def abs_linear(self, x):
        return x * tf.abs(self.weight)

    def transpose(self, coef, input_like):
        return coef * self.weight

    def l2_radius(self, eps, output):
        return eps * tf.abs(self.weight) * tf.ones_like(output)


class _Resize(_Affine):
    """A Resizing layer as the linear map it is: ``rows @ image @ cols.T`` per channel.

    Every interpolation of ``tf.image.resize`` (and the crop of ``crop_to_aspect_ratio``)
    acts on height and width separately, so the layer is a Kronecker product of two small
    matrices, read off the layer itself (:func:`_resize_matrices`). Bicubic and Lanczos
    kernels have negative weights; the bounds take absolute values, so they stay sound.
    """

    def __init__(self, name: str, dtype: tf.DType, rows: np.ndarray, cols: np.ndarray):
        super().__init__(name, dtype)
        self._rows, self._cols = rows, cols

    def _apply(self, x, rows, cols):
        return tf.einsum("ah,nhwc,bw->nabc", tf.cast(rows, self.dtype), x, tf.cast(cols, self.dtype))

    def linear(self, x):
        return self._apply(x, self._rows, self._cols)

    def abs_linear(self, x):
        return self._apply(x, np.abs(self._rows), np.abs(self._cols))

    def transpose(self, coef, input_like):
        return tf.einsum("ah,nsabc,bw->nshwc", tf.cast(self._rows, self.dtype), coef, tf.cast(self._cols, self.dtype))

    def l2_radius(self, eps, output):
        norms = np.linalg.norm(self._rows, axis=1)[:, None] * np.linalg.norm(self._cols, axis=1)[None, :]
        return eps * tf.cast(norms[None, :, :, None], self.dtype) * tf.ones_like(output)


def _resize_matrices(layer: Any) -> tuple[np.ndarray, np.ndarray]:
    """The height (H', H) and width (W', W) matrices of a built Resizing layer, checked.

    Row h of the image basis, constant along the width, comes out as column h of the height
    matrix times the width matrix's row sums; those are 1 for an interpolation, and the
    check below (the layer against the two matrices on a random image) catches any layer
    that is not this separable linear map, which is then refused rather than bounded wrongly.
    """
    shape = layer.input_shape
    if not isinstance(shape, tuple) or len(shape) != 4 or None in shape[1:3]:
        raise _refuse(layer, f"has input shape {shape}; bounds need a fixed height and width")
    height, width = int(shape[1]), int(shape[2])

    def run(images: np.ndarray) -> np.ndarray:
        return np.asarray(layer(tf.constant(images, tf.float32)), np.float64)

    rows = run(np.broadcast_to(np.eye(height)[:, :, None, None], (height, height, width, 1)))[:, :, 0, 0].T
    cols = run(np.broadcast_to(np.eye(width)[:, None, :, None], (width, height, width, 1)))[:, 0, :, 0].T
    probe = np.random.default_rng(0).random((1, height, width, 1))
    if not np.allclose(run(probe)[0, :, :, 0], rows @ probe[0, :, :, 0] @ cols.T, atol=1e-5):
        raise _refuse(layer, "is not a separable linear resize of height and width")
    return rows, cols


class _Flatten(_Affine):
    def linear(self, x):
        return tf.reshape(x, [tf.shape(x)[0], -1])

    abs_linear = linear

    def transpose(self, coef, input_like):
        return tf.reshape(coef, tf.concat([tf.shape(coef)[:2], tf.shape(input_like)[1:]], axis=0))


# The backward bound's elementwise chains run over (N, S, ...) tensors, S times an
# activation's size; compiled with XLA each chain is one pass over memory instead of one per
# operation (the ReLU's backward and its gradient 2.5x faster on CPU). The convolutions stay
# outside, on the default kernels, which XLA's CPU backend does not match.
@tf.function(jit_compile=True)
def _relu_backward(coef, lower, upper):
    """CROWN's ReLU relaxation: (the coefficients on the input (N, S, ...), offsets (N, S))."""
    lower, upper = lower[:, None], upper[:, None]
    unstable = (lower < 0) & (upper > 0)
    width = tf.where(unstable, upper - lower, tf.ones_like(upper))  # no 0/0, not even in the gradient
    active = tf.cast(lower >= 0, coef.dtype)
    upper_slope = tf.where(unstable, upper / width, active)
    upper_offset = tf.where(unstable, -lower * upper_slope, tf.zeros_like(upper))
    lower_slope = tf.where(unstable, tf.cast(upper > -lower, coef.dtype), active)
    negative = tf.minimum(coef, 0)
    return tf.where(coef > 0, coef * lower_slope, coef * upper_slope), _dot_per_example(negative, upper_offset)


def _pool_backward(coef, decided, upper_max):
    """A max pool's relaxation at its outputs: (coefficients for each window's argmax input
    (N, S, Ho, Wo, C), offsets (N, S)); ``decided`` (N, Ho, Wo, C) is 1 where that input is
    the window's maximum for certain, ``upper_max`` the window's largest upper bound."""
    positive, negative = _split_signs(coef)
    return positive + negative * decided[:, None], _dot_per_example(negative, (1 - decided) * upper_max)


@tf.function(jit_compile=True)
def _pool_spread_backward(coef, decided, upper_max, chosen, pool_size):
    """:func:`_pool_backward` with its coefficients spread over windows that tile the input:
    each repeated over its window and kept at the window's argmax input (``chosen``, (N, H,
    W, C)); one broadcast product instead of a scatter of N x S x H x W x C entries."""
    on_argmax, offset = _pool_backward(coef, decided, upper_max)
    (ph, pw), shape = pool_size, tf.shape(on_argmax)
    n, s, ho, wo, c = (shape[i] for i in range(5))
    windows = tf.broadcast_to(tf.reshape(on_argmax, [n, s, ho, 1, wo, 1, c]), [n, s, ho, ph, wo, pw, c])
    return tf.reshape(windows, [n, s, ho * ph, wo * pw, c]) * tf.cast(chosen, coef.dtype)[:, None], offset


class _Relu:
    def __init__(self, name: str):
        self.name = name

    def forward(self, x):
        return tf.nn.relu(x)

    def interval(self, lower, upper):
        return tf.nn.relu(lower), tf.nn.relu(upper)

    def backward(self, coef, lower, upper):
        return _relu_backward(coef, lower, upper)


class _MaxPool:
    def __init__(self, name: str, pool_size: tuple[int, int], strides: tuple[int, int], padding: str):
        self.name, self.pool_size, self.strides, self.padding = name, pool_size, strides, padding.upper()
        self.disjoint = all(s >= p for s, p in zip(strides, pool_size))

    def forward(self, x):
        return tf.nn.max_pool2d(x, self.pool_size, self.strides, self.padding)

    def interval(self, lower, upper):
        return self.forward(lower), self.forward(upper)

    def backward(self, coef, lower, upper):
        lower, upper = tf.stop_gradient(lower), upper
        lower_max, argmax = tf.nn.max_pool_with_argmax(lower, self.pool_size, self.strides, self.padding)
        upper_max = self.forward(upper)
        if self.disjoint:
            chosen = self._scatter(tf.ones_like(lower_max)[:, None], argmax, lower)[:, 0] > 0
            decided = self._decided(upper, lower_max, chosen)
        else:
            chosen, decided = None, tf.zeros_like(lower_max)
        if chosen is not None and self._tiles(lower):
            return _pool_spread_backward(coef, decided, upper_max, chosen, self.pool_size)
        on_argmax, offset = _pool_backward(coef, decided, upper_max)
        return self._scatter(on_argmax, argmax, lower), offset

    def _decided(self, upper, lower_max, chosen):
        """1 where the window's argmax input is certainly its maximum, else 0 (N, Ho, Wo, C)."""
        others_max = self.forward(tf.where(chosen, tf.fill(tf.shape(upper), upper.dtype.min), upper))
        return tf.cast(lower_max >= others_max, lower_max.dtype)

    def _tiles(self, input_like: tf.Tensor) -> bool:
        """Whether the windows tile the input exactly: stride = pool size, dividing H and W."""
        height, width = input_like.shape[1:3]
        return (tuple(self.strides) == tuple(self.pool_size) and height is not None and width is not None
                and height % self.pool_size[0] == 0 and width % self.pool_size[1] == 0)

    @staticmethod
    def _scatter(values: tf.Tensor, argmax: tf.Tensor, input_like: tf.Tensor) -> tf.Tensor:
        """Add (N, S, Ho, Wo, C) values onto their windows' argmax inputs: (N, S, H, W, C)."""
        shape, in_shape = tf.shape(values), tf.shape(input_like)
        n, s = shape[0], shape[1]
        size = tf.cast(tf.reduce_prod(in_shape[1:]), tf.int64)
        # The argmax is the same for every spec: scatter rows of S values at once.
        rows = tf.transpose(tf.reshape(values, [n, s, -1]), [0, 2, 1])
        index = tf.reshape(argmax, [n, -1]) + tf.range(tf.cast(n, tf.int64))[:, None] * size
        summed = tf.math.unsorted_segment_sum(tf.reshape(rows, [-1, s]), tf.reshape(index, [-1]),
                                              tf.cast(n, tf.int64) * size)
        return tf.reshape(tf.transpose(tf.reshape(summed, [n, -1, s]), [0, 2, 1]),
                          tf.concat([[n, s], in_shape[1:]], axis=0))


@dataclass(frozen=True)
class Network:
    """A model read as a chain of boundable operations (see :func:`network`).

    Attributes:
        ops: The operations in order; each has ``forward``, ``interval`` and ``backward``.
        num_classes: The number of logits K.
        dtype: The dtype every bound is computed in.
    """

    ops: tuple[Any, ...]
    num_classes: int
    dtype: tf.DType

    def forward(self, x: Any) -> tf.Tensor:
        """Run a batch through the operations (the model's inference-mode logits).

        Args:
            x: Inputs (N, ...) of the model's input shape.

        Returns:
            The logits (N, K) in ``dtype``.
        """
        h = tf.cast(x, self.dtype)
        for op in self.ops:
            h = op.forward(h)
        return h


def network(model: Any, *, dtype: Any = "float32") -> Network:
    """Read a tf-keras model into a :class:`Network` of boundable operations.

    The operations hold the model's own variables (cast to ``dtype``), so bounds are
    differentiable in the weights and follow later training.

    Args:
        model: A built tf-keras Sequential or single-path functional model mapping inputs
            to logits (N, K); nested Sequential or functional models are read through.
        dtype: The dtype to compute bounds in, e.g. ``"float32"`` or ``"float64"``.

    Returns:
        The model's :class:`Network`.

    Raises:
        TypeError: ``model`` is not a tf-keras Sequential or functional model.
        ValueError: The model is not built, is not a single chain of layers, does not
            output (N, K) logits, or holds a layer (or activation) without a sound bound
            here; the message names the layer, its class and what is supported.
    """
    dtype = tf.as_dtype(dtype)
    ops = tuple(op for layer in _chain(model) for op in _ops_of(layer, dtype))
    output_shape = model.output_shape
    if not isinstance(output_shape, tuple) or len(output_shape) != 2 or output_shape[1] is None:
        raise ValueError(f"model {model.name!r} must output logits of shape (N, K); its output shape is {output_shape}")
    return Network(ops=ops, num_classes=int(output_shape[1]), dtype=dtype)


def _chain(model: Any) -> list[Any]:
    """The layers of a Sequential or single-path functional model, nested models expanded."""
    if not isinstance(model, keras.Model) or not (isinstance(model, keras.Sequential)
                                                 or getattr(model, "_is_graph_network", False)):
        raise TypeError(f"certified bounds need a tf-keras Sequential or functional model, got "
                        f"{type(model).__module__}.{type(model).__name__}; rebuild a subclassed or Keras 3 "
                        "model as a tf-keras (attacks.backend.keras) Sequential or functional one")
    if not model.built:
        raise ValueError(f"model {model.name!r} is not built: call it on a batch or give it an input shape first")
    layers = list(model.layers)
    if not isinstance(model, keras.Sequential):
        _check_single_path(model, layers)
    return [inner for layer in layers
            for inner in (_chain(layer) if isinstance(layer, keras.Model) else [layer])]


def _check_single_path(model: Any, layers: list[Any]) -> None:
    def not_chain(where: str) -> ValueError:
        return ValueError(f"model {model.name!r} is not a single chain of layers ({where}); certified bounds "
                          "support only models with one input and one output where each layer feeds the next")

    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise not_chain(f"{len(model.inputs)} inputs, {len(model.outputs)} outputs")
    tensor = model.inputs[0]
    for layer in layers[1:]:
        # Follow the tensors, not layer.input: a nested model's input is its own Input.
        outputs = [layer.get_output_at(index) for index in range(len(layer.inbound_nodes))
                   if layer.get_input_at(index) is tensor]
        if len(outputs) != 1:
            raise not_chain(f"layer {layer.name!r} ({type(layer).__name__}) does not take just the output of "
                            "the layer before it")
        tensor = outputs[0]
    if tensor is not model.outputs[0]:
        raise not_chain(f"the last layer {layers[-1].name!r} is not the output")


def _refuse(layer: Any, why: str) -> ValueError:
    return ValueError(f"layer {layer.name!r} ({type(layer).__name__}) {why}; certified bounds support: "
                      f"{', '.join(SUPPORTED_LAYERS)} (Dense and Conv2D with activation relu or linear)")


def _activation_ops(layer: Any, activation: Any) -> list[Any]:
    if activation is keras.activations.linear:
        return []
    if activation in (keras.activations.relu, tf.nn.relu):
        return [_Relu(layer.name)]
    name = getattr(activation, "__name__", repr(activation))
    raise _refuse(layer, f"has activation {name!r}, which has no bound here (only relu and linear)")


def _ops_of(layer: Any, dtype: tf.DType) -> list[Any]:
    """The operations one layer becomes, or a ValueError naming it."""
    layers = keras.layers
    kind = type(layer)
    if kind is layers.InputLayer or isinstance(layer, layers.Dropout):
        return []
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise _refuse(layer, f"has data_format {layer.data_format!r}; only channels_last is supported")
    if kind is layers.Dense:
        return [_Dense(layer.name, dtype, layer.kernel, layer.bias),
                *_activation_ops(layer, layer.activation)]
    if kind is layers.Conv2D:
        if layer.groups != 1:
            raise _refuse(layer, f"has groups={layer.groups}; only groups=1 is supported")
        return [_Conv(layer.name, dtype, layer.kernel, layer.bias, tuple(layer.strides),
                      layer.padding, tuple(layer.dilation_rate)), *_activation_ops(layer, layer.activation)]
    if kind is layers.Activation:
        return _activation_ops(layer, layer.activation)
    if kind is layers.ReLU:
        if layer.max_value is not None or float(layer.negative_slope) != 0 or float(layer.threshold) != 0:
            raise _refuse(layer, "is not a plain ReLU (max_value, negative_slope or threshold set)")
        return [_Relu(layer.name)]
    if kind is layers.MaxPooling2D:
        return [_MaxPool(layer.name, tuple(layer.pool_size), tuple(layer.strides), layer.padding)]
    if kind is layers.Flatten:
        return [_Flatten(layer.name, dtype)]
    if kind is layers.Resizing:
        return [_Resize(layer.name, dtype, *_resize_matrices(layer))]
    if kind is layers.Rescaling:
        return [_Scale(layer.name, dtype, np.asarray(layer.scale, np.float64), np.asarray(layer.offset, np.float64))]
    raise _refuse(layer, "has no certified bound here")


def _check_choice(value: str, choices: tuple[str, ...], what: str) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")


def _input_box(x: tf.Tensor, eps: tf.Tensor, clip: tuple[float, float] | None) -> tuple[tf.Tensor, tf.Tensor]:
    lower, upper = x - eps, x + eps
    if clip is None:
        return lower, upper
    return tf.maximum(lower, clip[0]), tf.minimum(upper, clip[1])


def interval_bounds(net: Network, x: Any, eps: Any, *, norm: str = "inf",
                    clip: tuple[float, float] | None = (0.0, 1.0)) -> list[tuple[tf.Tensor, tf.Tensor]]:
    """Push the input set through the network with interval arithmetic (IBP).

    Args:
        net: The network from :func:`network`.
        x: The centres of the balls, (N, ...) in the model's input shape.
        eps: The radius, a number or scalar tensor >= 0.
        norm: ``"inf"`` or ``"l2"``.
        clip: The valid input range ``(low, high)`` the ball is intersected with, or None.

    Returns:
        ``len(net.ops) + 1`` pairs ``(lower, upper)``: entry i bounds the input of
        ``net.ops[i]`` and the last entry bounds the logits (N, K); each tensor has the
        batch's shape at that point and ``lower <= upper``.

    Raises:
        ValueError: ``norm`` is not ``"inf"`` or ``"l2"``.
    """
    _check_choice(norm, NORMS, "norm")
    x = tf.cast(x, net.dtype)
    eps = tf.cast(eps, net.dtype)
    bounds = [_input_box(x, eps, clip)]
    centre = x if norm == "l2" else None  # the L2 ball is kept exactly up to the first affine layer
    for op in net.ops:
        lower, upper = op.interval(*bounds[-1])
        if centre is not None and isinstance(op, _Flatten):
            centre = op.forward(centre)
        elif centre is not None and isinstance(op, _Affine):
            middle = op.forward(centre)
            radius = op.l2_radius(eps, middle)
            lower, upper = tf.maximum(lower, middle - radius), tf.minimum(upper, middle + radius)
            centre = None
        else:
            centre = None
        bounds.append((lower, upper))
    return bounds


def _minimum_over_box(coef: tf.Tensor, lower: tf.Tensor, upper: tf.Tensor) -> tf.Tensor:
    """min of coef . h over the box [lower, upper], per spec: (N, S)."""
    middle, radius = ((upper + lower) / 2)[:, None], ((upper - lower) / 2)[:, None]
    return _sum_per_spec(coef * middle - tf.abs(coef) * radius)


def _minimum_over_input(coef: tf.Tensor, x: tf.Tensor, eps: tf.Tensor, norm: str,
                        box: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
    if norm == "inf":
        return _minimum_over_box(coef, *box)
    flat = tf.reshape(coef, tf.concat([tf.shape(coef)[:2], [-1]], axis=0))
    return _sum_per_spec(coef * x[:, None]) - eps * tf.norm(flat, axis=2)


def _affine_tail_start(net: Network) -> int:
    """The index of the first op of the network's trailing run of affine ops."""
    start = len(net.ops)
    while start > 0 and isinstance(net.ops[start - 1], _Affine):
        start -= 1
    return start


def _backward_bound(net: Network, bounds: list[tuple[tf.Tensor, tf.Tensor]], spec: tf.Tensor, start: int,
                    x: tf.Tensor, eps: tf.Tensor, norm: str) -> tf.Tensor:
    """Lower bounds (N, S) of spec @ logits: backward through ops[start:], then over their input set."""
    coef, offset = spec, tf.zeros(tf.shape(spec)[:2], spec.dtype)
    for index in range(len(net.ops) - 1, start - 1, -1):
        coef, step = net.ops[index].backward(coef, *bounds[index])
        offset += step
    if start == 0:
        return offset + _minimum_over_input(coef, x, eps, norm, bounds[0])
    return offset + _minimum_over_box(coef, *bounds[start])


def spec_lower_bounds(net: Network, x: Any, eps: Any, spec: Any, *, method: str = "crown_ibp", norm: str = "inf",
                      clip: tuple[float, float] | None = (0.0, 1.0)) -> tf.Tensor:
    """Lower-bound linear functions of the logits, ``spec @ logits``, over the eps-ball.

    Args:
        net: The network from :func:`network`.
        x: The centres of the balls, (N, ...) in the model's input shape.
        eps: The radius, a number or scalar tensor >= 0.
        spec: The specification C, (N, S, K): row s of example n asks for a lower bound
            of ``C[n, s] @ logits(x')`` over every x' in the set.
        method: ``"ibp"`` or ``"crown_ibp"`` (the elementwise maximum of the CROWN
            backward bound and IBP's).
        norm: ``"inf"`` or ``"l2"``.
        clip: The valid input range ``(low, high)`` the ball is intersected with, or None.

    Returns:
        The lower bounds, (N, S) in ``net.dtype``: for every x' in the set,
        ``spec[n] @ logits(x'[n]) >= bound[n]`` (up to floating-point rounding).

    Raises:
        ValueError: ``method`` or ``norm`` is unknown.
    """
    _check_choice(method, METHODS, "method")
    x = tf.cast(x, net.dtype)
    eps = tf.cast(eps, net.dtype)
    spec = tf.cast(spec, net.dtype)
    bounds = interval_bounds(net, x, eps, norm=norm, clip=clip)
    interval = _backward_bound(net, bounds, spec, _affine_tail_start(net), x, eps, norm)
    if method == "ibp":
        return interval
    return tf.maximum(interval, _backward_bound(net, bounds, spec, 0, x, eps, norm))


def margin_spec(y: Any, num_classes: int, dtype: Any = "float32") -> tf.Tensor:
    """The margin specification C = e_y - e_j for every class j.

    Args:
        y: The labels (N,), integers in [0, num_classes).
        num_classes: K.
        dtype: The dtype of the result.

    Returns:
        C, (N, K, K): ``C[n, j] @ logits = logits[y[n]] - logits[j]`` (row y[n] is zero).
    """
    labels = tf.one_hot(tf.cast(y, tf.int32), num_classes, dtype=dtype)
    return labels[:, None, :] - tf.eye(num_classes, dtype=dtype)[None]


def margin_lower_bounds(net: Network, x: Any, y: Any, eps: Any, *, method: str = "crown_ibp", norm: str = "inf",
                        clip: tuple[float, float] | None = (0.0, 1.0)) -> tf.Tensor:
    """Lower-bound the margins ``logits[y] - logits[j]`` over the eps-ball.

    A certified-training loss is the cross-entropy of the negated bounds
    (``-bounds`` as logits, Gowal et al. 2018); an example is certified when every
    entry but the label's is > 0.

    Args:
        net: The network from :func:`network`.
        x: The centres of the balls, (N, ...) in the model's input shape.
        y: The labels (N,), integers in [0, K).
        eps: The radius, a number or scalar tensor >= 0.
        method: ``"ibp"`` or ``"crown_ibp"``.
        norm: ``"inf"`` or ``"l2"``.
        clip: The valid input range ``(low, high)`` the ball is intersected with, or None.

    Returns:
        The lower bounds, (N, K) in ``net.dtype``, 0 at each example's label.

    Raises:
        ValueError: ``method`` or ``norm`` is unknown.
    """
    # The spec of the K - 1 other classes: the label's row of margin_spec is zero, and
    # every row costs a backward pass of the network.
    y = tf.cast(y, tf.int32)
    k = net.num_classes
    others = tf.range(k - 1)[None] + tf.cast(tf.range(k - 1)[None] >= y[:, None], tf.int32)  # (N, K-1)
    spec = tf.one_hot(y, k, dtype=net.dtype)[:, None] - tf.one_hot(others, k, dtype=net.dtype)
    bounds = spec_lower_bounds(net, x, eps, spec, method=method, norm=norm, clip=clip)
    # Class j's bound sits at column j - (j > y) of the K - 1; the label's is the zero appended.
    classes = tf.range(k)[None]
    source = tf.where(classes < y[:, None], classes, tf.where(classes == y[:, None], k - 1, classes - 1))
    return tf.gather(tf.pad(bounds, [[0, 0], [0, 1]]), source, batch_dims=1)


def certified(margins: Any, y: Any) -> tf.Tensor:
    """Whether every margin but the label's is positive.

    Args:
        margins: Lower bounds of the margins (N, K), from :func:`margin_lower_bounds`.
        y: The labels (N,).

    Returns:
        (N,) bool: certified, i.e. the label's logit exceeds every other over the whole set.
    """
    margins = tf.convert_to_tensor(margins)
    is_label = tf.one_hot(tf.cast(y, tf.int32), tf.shape(margins)[1], on_value=True, off_value=False)
    return tf.reduce_all(tf.where(is_label, tf.ones_like(margins), margins) > 0, axis=1)


def logit_bounds(net: Network, x: Any, eps: Any, *, method: str = "crown_ibp", norm: str = "inf",
                 clip: tuple[float, float] | None = (0.0, 1.0)) -> tuple[tf.Tensor, tf.Tensor]:
    """Bound each logit over the eps-ball.

    Args:
        net: The network from :func:`network`.
        x: The centres of the balls, (N, ...) in the model's input shape.
        eps: The radius, a number or scalar tensor >= 0.
        method: ``"ibp"`` or ``"crown_ibp"``.
        norm: ``"inf"`` or ``"l2"``.
        clip: The valid input range ``(low, high)`` the ball is intersected with, or None.

    Returns:
        ``(lower, upper)``, each (N, K) in ``net.dtype``.

    Raises:
        ValueError: ``method`` or ``norm`` is unknown.
    """
    n = tf.shape(x)[0]
    identity = tf.tile(tf.eye(net.num_classes, dtype=net.dtype)[None], [n, 1, 1])
    both = tf.concat([identity, -identity], axis=1)
    bounds = spec_lower_bounds(net, x, eps, both, method=method, norm=norm, clip=clip)
    return bounds[:, :net.num_classes], -bounds[:, net.num_classes:]
