"""Adversarial attacks on TensorFlow models: pure functions of (model, x, y, parameters).

    from attacks import fgsm, bim, pgd, mim, apgd, square, fab, deepfool, carlini_wagner_l2, autoattack
    x_adv = pgd(model, x, y, eps=0.3)                  # shaped like x
    x_adv = pgd(model, x, y, eps=[0.1, 0.2, 0.3])      # (3, N, ...), one batched run
    x_adv = apgd(model, x, y, eps=0.3, loss="dlr")     # Auto-PGD (Croce & Hein 2020)
    x_adv = square(model, x, y, eps=0.3)               # black box: model outputs only
    x_adv = deepfool(model, x, y, norm="l2")           # minimal perturbation: no eps
    x_adv = fab(model, x, y, norm="l2")                # FAB-T (Croce & Hein 2020): minimal perturbation
    x_adv = fab(model, x, y, eps=0.3)                  # ... or an adversarial within eps, else x
    x_adv = carlini_wagner_l2(model, x, y)             # minimal L2 perturbation (C&W 2017)
    x_adv = autoattack(model, x, y, eps=0.3)           # worst case over AutoAttack's ensemble
    min_eps = minimal_epsilon(model, x, y, norm="l2")  # (N,) smallest adversarial radius each

The ensemble's full result (robust points, which member broke each, passes per image) comes
from ``attacks.ensemble.worst_case``.

Modules are named after the method (``auto_pgd``, ``square_attack``, ``deep_fool``,
``fab_attack``, ``minimal``) so that the functions exported here never hide the module of the
same name.

Importing this package selects Keras 2 for TensorFlow first (``attacks/backend.py``).
"""

from attacks import backend  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)
from attacks.auto_pgd import apgd
from attacks.carlini_wagner import carlini_wagner_l2
from attacks.deep_fool import deepfool
from attacks.ensemble import autoattack
from attacks.external import apgd_art
from attacks.fab_attack import fab
from attacks.gradient import bim, fgsm, mim, pgd
from attacks.losses import cross_entropy, margin
from attacks.minimal import minimal_epsilon
from attacks.noise import random_noise
from attacks.spec import ATTACKS, AttackSpec, get_attack
from attacks.square_attack import square


__all__ = ["fgsm", "bim", "pgd", "mim", "apgd", "deepfool", "carlini_wagner_l2", "square", "fab", "minimal_epsilon",
           "autoattack", "random_noise", "apgd_art", "cross_entropy", "margin", "ATTACKS", "AttackSpec", "get_attack"]
