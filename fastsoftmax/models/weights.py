"""A fitted model's weights, coef_ and intercept_: host arrays, or after a GPU fit the device's,
copied to the host when first read (one transfer for both)."""

from __future__ import annotations

import numpy as np

from ..arrays import device_of, to_numpy
from ..ops.dispatch import array_module


def _host_weight(attribute, name):
    """coef_ or intercept_: a host array, copied from the device when first read after a GPU fit."""

    def get(self):
        self._host_weights()
        try:
            return getattr(self, attribute)
        except AttributeError:
            raise AttributeError(f"{name}: this {type(self).__name__} is not fitted yet") from None

    def set(self, value):
        self._host_weights()
        setattr(self, attribute, value)

    return property(get, set)


class HostWeights:
    """coef_ and intercept_ on the host, whichever device trained them (a mixin of the models)."""

    def _host_weights(self):
        trained = self.__dict__.pop("_trained", None)
        if trained is not None:  # one transfer for both
            coef, b = trained
            both = to_numpy(array_module(device_of(coef)).concatenate([coef.ravel(), b]))
            self._coef, self._intercept = both[: coef.size].reshape(coef.shape), both[coef.size :]

    coef_ = _host_weight("_coef", "coef_")
    intercept_ = _host_weight("_intercept", "intercept_")

    def __getstate__(self):
        self._host_weights()  # a pickle holds host arrays, never device ones
        return super().__getstate__()


def set_weights(model, coef, b):
    """model's coef_ and intercept_ are now coef and b, which a fit may go on training: on the host, a
    copy now; on a GPU, a read of either copies both, only then (a callback that does not read them
    costs no transfer)."""
    if device_of(coef) != "cuda":  # a copy now: predict then leaves __dict__ as it is
        model.__dict__.pop("_trained", None)
        model._coef, model._intercept = np.array(coef), np.array(b)
        return
    model.__dict__.pop("_coef", None)
    model.__dict__.pop("_intercept", None)
    model._trained = coef, b
