"""A stand-in for the few TensorFlow 1 graph operations the ADM evaluator (openai/guided-diffusion
evaluations/evaluator.py) builds around its Inception network: placeholders, casts, sums, products, comparisons and a
conditional, evaluated with numpy at the dtypes the graph names when a session runs them. It lets the evaluator's own
module be imported and its distance, precision / recall and Inception Score code run on given features without
TensorFlow; the Inception graph itself is not stood in for.
"""
from __future__ import annotations

import contextlib
import importlib.machinery
import sys
import types

import numpy as np


class Node:
    def __init__(self, fn):
        self.fn = fn  # feed dict -> numpy array

    def __sub__(self, other):
        return Node(lambda f: self.fn(f) - value(other, f))

    def __add__(self, other):
        return Node(lambda f: self.fn(f) + value(other, f))

    def __rmul__(self, other):
        return Node(lambda f: value(other, f) * self.fn(f))

    def __le__(self, other):
        return Node(lambda f: self.fn(f) <= value(other, f))

    def __getitem__(self, index):
        return Node(lambda f: self.fn(f)[index])


def value(x, feed):
    return x.fn(feed) if isinstance(x, Node) else x


def placeholder(dtype, shape=None):
    node = Node(None)
    node.fn = lambda f: np.asarray(f[node], dtype=dtype)
    return node


def _lift(op):
    return lambda *args, **kw: Node(lambda f: op(*(value(a, f) for a in args), **kw))


class Session:
    def __init__(self):
        self.graph = types.SimpleNamespace(as_default=contextlib.nullcontext)

    def run(self, fetches, feed_dict):
        if isinstance(fetches, list):
            return [x.fn(feed_dict) for x in fetches]
        return fetches.fn(feed_dict)


def _matmul(a, b, transpose_a=False, transpose_b=False):
    return (a.T if transpose_a else a) @ (b.T if transpose_b else b)


def _softmax(x):
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def module() -> types.ModuleType:
    tf = types.ModuleType("tensorflow.compat.v1")
    tf.float16, tf.float32 = np.float16, np.float32
    tf.placeholder = placeholder
    tf.cast = _lift(lambda x, dtype: np.asarray(x).astype(dtype))
    tf.square = _lift(np.square)
    tf.reduce_sum = _lift(lambda x, axis: np.sum(x, axis=axis))
    tf.reshape = _lift(np.reshape)
    tf.matmul = _lift(_matmul)
    tf.maximum = _lift(np.maximum)
    tf.reduce_all = _lift(np.all)
    tf.cond = lambda pred, yes, no: Node(lambda f: (yes() if pred.fn(f) else no()).fn(f))
    tf.variable_scope = lambda name: contextlib.nullcontext()
    tf.math = types.SimpleNamespace(is_finite=_lift(np.isfinite),
                                    reduce_any=_lift(lambda x, axis: np.any(x, axis=axis)))
    tf.nn = types.SimpleNamespace(softmax=_lift(_softmax))
    return tf


def install(monkeypatch) -> types.ModuleType:
    """Put the stand-in where `import tensorflow.compat.v1 as tf` finds it (for the test's duration)."""
    tf = module()
    root, compat = types.ModuleType("tensorflow"), types.ModuleType("tensorflow.compat")
    root.compat, compat.v1 = compat, tf
    for name, mod in (("tensorflow", root), ("tensorflow.compat", compat), ("tensorflow.compat.v1", tf)):
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None)  # what importlib.util.find_spec reads
        monkeypatch.setitem(sys.modules, name, mod)
    return tf
