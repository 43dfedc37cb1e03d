"""myelin.optim.lr_scheduler: each schedule against its published formula over 30 epochs,
ReduceLROnPlateau's patience/cooldown/min_lr rules, state dicts and validation."""

import math

import numpy as np
import pytest

from myelin import optim
from myelin.nn import Parameter
from myelin.optim.lr_scheduler import (
    CosineAnnealingLR,
    ExponentialLR,
    LRScheduler,
    MultiStepLR,
    ReduceLROnPlateau,
    StepLR,
)

EPOCHS = 30
BASE = [0.1, 0.03]


def _opt(lrs=BASE):
    groups = [{"params": [Parameter(np.ones(2))], "lr": lr} for lr in lrs]
    return optim.SGD(groups, lr=1.0)


def _schedule(sched, epochs=EPOCHS):
    """The lrs of every group for epochs 0..epochs-1, read from the optimizer and get_last_lr."""
    got = []
    for epoch in range(epochs):
        lrs = [g["lr"] for g in sched.optimizer.param_groups]
        assert sched.get_last_lr() == lrs
        assert sched.last_epoch == epoch
        got.append(lrs)
        sched.step()
    return got


def _check(sched, formula):
    got = _schedule(sched)
    for epoch, lrs in enumerate(got):
        want = [formula(base, epoch) for base in BASE]
        assert lrs == pytest.approx(want, rel=1e-12, abs=0), f"epoch {epoch}"


def test_step_lr():
    _check(StepLR(_opt(), step_size=7, gamma=0.3), lambda b, e: b * 0.3 ** (e // 7))


def test_multistep_lr_unsorted_and_repeated_milestones():
    ms = [20, 5, 12, 12]
    _check(
        MultiStepLR(_opt(), milestones=ms, gamma=0.5),
        lambda b, e: b * 0.5 ** sum(1 for m in ms if m <= e),
    )


def test_exponential_lr():
    _check(ExponentialLR(_opt(), gamma=0.9), lambda b, e: b * 0.9**e)


@pytest.mark.parametrize("eta_min", [0.0, 0.001])
def test_cosine_annealing_lr(eta_min):
    t_max = 12  # 30 epochs: down to eta_min at 12, back up to base at 24, down again
    _check(
        CosineAnnealingLR(_opt(), T_max=t_max, eta_min=eta_min),
        lambda b, e: eta_min + (b - eta_min) * (1 + math.cos(math.pi * e / t_max)) / 2,
    )


def test_cosine_reaches_eta_min_at_t_max():
    sched = CosineAnnealingLR(_opt(), T_max=10, eta_min=0.002)
    for _ in range(10):
        sched.step()
    assert sched.get_last_lr() == pytest.approx([0.002, 0.002], rel=1e-12)


def test_article_usage():
    """The documented pattern: StepLR(step_size=10, gamma=0.5), one step() per epoch."""
    optimizer = optim.SGD([Parameter(np.ones(3))], lr=0.1)
    scheduler = StepLR(optimizer, step_size=10, gamma=0.5)
    seen = []
    for _epoch in range(30):
        seen.append(scheduler.get_last_lr()[0])
        scheduler.step()
    assert seen == [0.1] * 10 + [0.05] * 10 + [0.025] * 10
    assert scheduler.get_last_lr()[0] == 0.0125
    assert optimizer.param_groups[0]["lr"] == 0.0125


def test_construction_sets_initial_lr_and_epoch_zero():
    opt = _opt()
    sched = ExponentialLR(opt, gamma=0.5)
    assert [g["initial_lr"] for g in opt.param_groups] == BASE
    assert sched.base_lrs == BASE and sched.last_epoch == 0
    assert sched.get_last_lr() == BASE
    # get_last_lr returns a copy
    sched.get_last_lr().append(1.0)
    assert sched.get_last_lr() == BASE


def test_scheduled_lr_drives_the_optimizer():
    p = Parameter(np.zeros(1))
    opt = optim.SGD([p], lr=1.0)
    sched = StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(4):
        p.grad = np.ones(1)
        opt.step()
        sched.step()
    np.testing.assert_allclose(p.data, [-(1 + 0.5 + 0.25 + 0.125)])


def test_resume_with_last_epoch():
    opt = _opt()
    StepLR(opt, step_size=3, gamma=0.5)
    for g in opt.param_groups:
        g["lr"] = 123.0  # ignored: resuming recomputes from initial_lr
    sched = StepLR(opt, step_size=3, gamma=0.5, last_epoch=4)
    assert sched.last_epoch == 5
    assert sched.get_last_lr() == pytest.approx([b * 0.5 for b in BASE], rel=1e-12)
    with pytest.raises(ValueError, match="initial_lr"):
        StepLR(_opt(), step_size=3, last_epoch=4)


def test_step_with_epoch():
    sched = ExponentialLR(_opt(), gamma=0.5)
    sched.step(3)
    assert sched.last_epoch == 3
    assert sched.get_last_lr() == pytest.approx([b * 0.125 for b in BASE], rel=1e-12)


def test_state_dict_round_trip():
    a = CosineAnnealingLR(_opt(), T_max=9, eta_min=0.001)
    for _ in range(5):
        a.step()
    sd = a.state_dict()
    assert "optimizer" not in sd and sd["last_epoch"] == 5
    opt_b = _opt()
    b = CosineAnnealingLR(opt_b, T_max=3)
    b.load_state_dict(sd)
    assert b.optimizer is opt_b and b.T_max == 9 and b.eta_min == 0.001
    for _ in range(6):
        a.step()
        b.step()
        assert a.get_last_lr() == b.get_last_lr()
    assert [g["lr"] for g in opt_b.param_groups] == a.get_last_lr()


@pytest.mark.parametrize(
    ("make", "exc", "match"),
    [
        (lambda o: StepLR(o, step_size=0), ValueError, "step_size"),
        (lambda o: StepLR(o, step_size=2.5), TypeError, "step_size"),
        (lambda o: StepLR(o, step_size=2, gamma="x"), TypeError, "gamma"),
        (lambda o: MultiStepLR(o, milestones=5), TypeError, "milestones"),
        (lambda o: MultiStepLR(o, milestones=[3, 1.5]), TypeError, r"milestones\[1\]"),
        (lambda o: ExponentialLR(o, gamma=None), TypeError, "gamma"),
        (lambda o: CosineAnnealingLR(o, T_max=0), ValueError, "T_max"),
        (lambda o: StepLR(o, step_size=2, last_epoch=-2), ValueError, "last_epoch"),
        (lambda o: ReduceLROnPlateau(o, factor=1.0), ValueError, "factor"),
        (lambda o: ReduceLROnPlateau(o, mode="lowest"), ValueError, "mode"),
        (lambda o: ReduceLROnPlateau(o, threshold_mode="pct"), ValueError, "threshold_mode"),
        (lambda o: ReduceLROnPlateau(o, patience=-1), ValueError, "patience"),
        (lambda o: ReduceLROnPlateau(o, cooldown=1.5), TypeError, "cooldown"),
        (lambda o: ReduceLROnPlateau(o, min_lr=[0.1]), ValueError, "min_lrs"),
        (lambda o: ReduceLROnPlateau(o, min_lr=-1.0), ValueError, "min_lr"),
    ],
)
def test_invalid_arguments_raise(make, exc, match):
    with pytest.raises(exc, match=match):
        make(_opt())


def test_needs_an_optimizer():
    with pytest.raises(TypeError, match="Optimizer"):
        StepLR([Parameter(np.ones(1))], step_size=2)
    with pytest.raises(TypeError, match="Optimizer"):
        ReduceLROnPlateau(None)


# ---------------------------------------------------------------- ReduceLROnPlateau


def _plateau_lrs(sched, metrics):
    out = []
    for m in metrics:
        sched.step(m)
        assert sched.get_last_lr() == [g["lr"] for g in sched.optimizer.param_groups]
        out.append(sched.get_last_lr()[0])
    return out


def test_plateau_patience_and_cooldown():
    sched = ReduceLROnPlateau(_opt([1.0]), factor=0.5, patience=2, cooldown=2)
    assert sched.get_last_lr() == [1.0]
    got = _plateau_lrs(sched, [1.0] * 14)
    # epoch 1 improves on inf; epochs 2-4 are bad, the third exceeds patience=2: reduce; two
    # cooldown epochs do not count; then three bad epochs again, and so on
    want = [1.0] * 3 + [0.5] * 5 + [0.25] * 5 + [0.125]
    assert got == want


def test_plateau_improvement_resets_the_count():
    sched = ReduceLROnPlateau(_opt([1.0]), factor=0.1, patience=1)
    got = _plateau_lrs(sched, [5.0, 5.0, 4.0, 4.0, 3.0, 3.0, 3.0])
    assert got == pytest.approx([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.1], rel=1e-15)
    assert sched.best == 3.0


def test_plateau_min_lr_and_eps():
    sched = ReduceLROnPlateau(_opt([1.0, 0.2]), factor=0.5, patience=0, min_lr=[0.3, 0.01])
    for _ in range(4):
        sched.step(1.0)
    assert sched.get_last_lr() == pytest.approx([0.3, 0.025], rel=1e-15)
    # a reduction smaller than eps is skipped
    tiny = ReduceLROnPlateau(_opt([1e-9]), factor=0.1, patience=0)
    for _ in range(3):
        tiny.step(1.0)
    assert tiny.get_last_lr() == [1e-9]


def test_plateau_thresholds_and_max_mode():
    # rel, min: 0.99995 is not below 1 * (1 - 1e-4), so it does not count as better
    sched = ReduceLROnPlateau(_opt([1.0]), patience=0, threshold=1e-4)
    assert _plateau_lrs(sched, [1.0, 0.99995]) == pytest.approx([1.0, 0.1], rel=1e-15)
    # abs, min: must beat best - 0.5 (1.4 does, 1.0 does not)
    sched = ReduceLROnPlateau(_opt([1.0]), patience=0, threshold=0.5, threshold_mode="abs")
    assert _plateau_lrs(sched, [2.0, 1.4, 1.0]) == pytest.approx([1.0, 1.0, 0.1], rel=1e-15)
    # max mode (accuracy): rising values are improvements
    sched = ReduceLROnPlateau(_opt([1.0]), mode="max", patience=1)
    got = _plateau_lrs(sched, [0.5, 0.6, 0.7, 0.7, 0.69])
    assert got == pytest.approx([1.0, 1.0, 1.0, 1.0, 0.1], rel=1e-15)
    assert sched.best == 0.7


def test_plateau_state_dict_and_metric_types():
    a = ReduceLROnPlateau(_opt([1.0]), patience=1, cooldown=1)
    a.step(np.float32(2.0))
    a.step(np.array(2.0))
    sd = a.state_dict()
    assert "optimizer" not in sd and sd["num_bad_epochs"] == 1
    b = ReduceLROnPlateau(_opt([1.0]), patience=5, mode="max")
    b.load_state_dict(sd)
    assert b.patience == 1 and b.mode == "min" and b.mode_worse == math.inf
    a.step(2.0)
    b.step(2.0)
    assert a.get_last_lr() == b.get_last_lr() == pytest.approx([0.1], rel=1e-15)
    with pytest.raises(TypeError, match="metrics"):
        a.step("low")


def test_all_are_schedulers():
    for cls in (StepLR, MultiStepLR, ExponentialLR, CosineAnnealingLR, ReduceLROnPlateau):
        assert issubclass(cls, LRScheduler)
    assert optim.lr_scheduler.StepLR is StepLR
