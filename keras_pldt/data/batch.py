"""A training batch of `PLDT`: its named parts, checked once when the step is traced.

A batch is a dict ``{"source", "target", "unassociated", "product"}`` (as `keras_pldt.data`'s
pipelines yield it; extra keys are ignored) or a tuple ``(source, target[, unassociated])`` of
float tensors ``[B, S, S, 3]`` in [-1, 1]: a source (I_S), an image of its product (I_T) and one
of another product (I_T^-); ``product`` (int [B]) names each row's product.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

KEYS = ("source", "target", "unassociated")


class Batch(NamedTuple):
    """The parts of a batch that Algorithm 1 reads (`unassociated` and `product` may be None)."""

    source: tf.Tensor
    target: tf.Tensor
    unassociated: tf.Tensor | None
    product: tf.Tensor | None


def unpack_batch(data, image_size: int, dtype, needs_unassociated: bool = False) -> Batch:
    """The `Batch` of a dict or tuple batch, images cast to `dtype`; ValueError naming what is
    wrong when a part is missing or misshapen, and a run-time check that pixels lie in [-1, 1]."""
    expected = f"[batch, {image_size}, {image_size}, 3]"
    product = None
    if isinstance(data, dict):
        missing = [k for k in KEYS[:2] if k not in data]
        if missing:
            raise ValueError(
                f"PLDT batch dict is missing {missing}; expected keys {list(KEYS)} "
                f"with float tensors of shape {expected} in [-1, 1]"
            )
        parts, product = [data.get(k) for k in KEYS], data.get("product")
    elif isinstance(data, (tuple, list)) and len(data) in (2, 3):
        parts = [*data, None][:3]
    else:
        raise ValueError(
            "a PLDT batch is a dict {'source', 'target', 'unassociated'} or a tuple "
            f"(source, target, unassociated) of tensors {expected}; got {data!r}"
        )
    if parts[2] is None and needs_unassociated:
        raise ValueError(
            "variant 'rf+dd' needs unassociated targets (I_T^-): add an 'unassociated' "
            f"tensor of shape {expected} to each batch"
        )
    checks = []
    for name, tensor in zip(KEYS, parts, strict=True):
        if tensor is None:
            continue
        shape = tuple(tensor.shape)
        if len(shape) != 4 or tuple(shape[1:]) != (image_size, image_size, 3):
            raise ValueError(
                f"PLDT batch '{name}' has shape {shape}; expected {expected} "
                f"(config.image_size={image_size}), pixels in [-1, 1]"
            )
        largest = tf.reduce_max(tf.abs(tf.cast(tensor, tf.float32)))
        message = f"PLDT batch '{name}' has pixels outside [-1, 1]; scale images with x / 127.5 - 1"
        checks.append(tf.debugging.assert_less_equal(largest, 1.0 + 1e-3, message=message))
    with tf.control_dependencies(checks):
        source, target, unassociated = (
            None if t is None else tf.identity(tf.cast(t, dtype)) for t in parts
        )
    return Batch(source, target, unassociated, product)
