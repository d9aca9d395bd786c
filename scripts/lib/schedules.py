#!/usr/bin/python3
"""The pipelines' default inner learning-rate schedules (loco-worker --schedule specs).

  schedules.py diloco --rounds R --inner-steps H   cosine over the R*H inner steps, warm-up
                                                   min(1000, R*H/10) (DiLoCo/OpenDiLoCo's 1,000 of
                                                   88,000 steps scaled to short runs)
  schedules.py demo --rounds R --lr LR             cosine over R steps (DeMo: one step a round),
                                                   warm-up min(250, R/10), down to 0.1*LR (DeMo's
                                                   OLMo config: t_warmup 250, alpha_f 0.1)
  schedules.py rounds --rule RULE --total T --h-base H --lr LR --schedule SPEC
                                                   the inner steps of each round, one a line:
                                                   constant (H each) or QSR (qsr:alpha=A[,power=P])
Used by scripts/diloco and scripts/demo. Standard library only.
"""
import argparse
import math
import sys


def warmup(steps, cap):
    """steps/10 (integer division), at least 1 and at most cap."""
    return max(1, min(cap, steps // 10))


def diloco(rounds, inner_steps):
    total = rounds * inner_steps
    return f"cosine:warmup={warmup(total, 1000)},total={total},min_lr=0"


def demo(rounds, lr):
    """min_lr is repr(0.1 * lr), the shortest text that reads back as that double (0 when lr is
    not a number: loco-worker then refuses the optimizer spec itself)."""
    try:
        min_lr = repr(0.1 * float(lr))
    except ValueError:
        min_lr = "0"
    return f"cosine:warmup={warmup(rounds, 250)},total={rounds},min_lr={min_lr}"


def parse_spec(text, kinds):
    """'name:key=value,...' -> (name, {key: value}); name must be one of kinds."""
    name, _, rest = text.partition(":")
    if name not in kinds:
        raise ValueError(f"'{text}': the kinds are {', '.join(kinds)}")
    params = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or key in params:
            raise ValueError(f"'{text}': '{item}' is not a new key=value")
        params[key] = value
    return name, params


def number(text, what, low=None, positive=False):
    try:
        x = float(text)
    except ValueError:
        raise ValueError(f"{what} must be a number, not '{text}'") from None
    if not math.isfinite(x) or (positive and x <= 0) or (low is not None and x < low):
        raise ValueError(f"{what} must be a finite number{' > 0' if positive else ''}"
                         f"{f' >= {low}' if low is not None else ''}, not '{text}'")
    return x


def scheduled_lr(spec, lr, t):
    """loco's schedule (lib/loco/optim/schedule.hpp) at step t: the same formulas, in double."""
    kind, p = parse_spec(spec, ("constant", "linear", "cosine"))
    unknown = set(p) - {"warmup", "total", "min_lr"}
    if unknown:
        raise ValueError(f"schedule '{spec}': unknown key {sorted(unknown)[0]}")
    w = int(p.get("warmup", 0))
    total = int(p.get("total", 0))
    min_lr = number(p.get("min_lr", "0"), f"schedule '{spec}': min_lr", low=0)
    if t < w:
        return lr * (t + 1) / w
    if kind == "constant":
        return lr
    if t >= total:
        return min_lr
    q = (t - w) / (total - w)
    c = 1 - q if kind == "linear" else (1 + math.cos(math.pi * q)) / 2
    return lr * c + min_lr * (1 - c)


def round_steps(rule, total, h_base, lr, schedule):
    """The inner steps of each round until the budget of total steps is trained.

    constant: h_base every round (the last round shorter when h_base does not divide total).
    qsr:alpha=A[,power=P] (the Quadratic Synchronization Rule, Gu et al. 2024, arXiv 2310.14423,
    Eq. (3); the authors' localopt.py adjust_h): a round starting at step t has
        H = h_base                                  while t < the schedule's warm-up,
        H = min(max(floor((A / lr(t))**P), h_base), total - t)   after it,
    lr(t) the scheduled rate of its first step; P = 2 (QSR), P = 1 the H ~ 1/lr rule it is
    compared with."""
    name, p = parse_spec(rule, ("constant", "qsr"))
    alpha = power = None
    warm = 0
    if name == "constant" and p:
        raise ValueError(f"'{rule}': constant takes no parameters")
    if name == "qsr":
        if set(p) - {"alpha", "power"} or "alpha" not in p:
            raise ValueError(f"'{rule}': qsr takes alpha=A (required) and power=P")
        alpha = number(p["alpha"], "qsr alpha", positive=True)
        power = number(p.get("power", "2"), "qsr power", positive=True)
        lr = number(lr, "qsr: the inner optimizer's lr (give --lr)", positive=True)
        warm = int(parse_spec(schedule, ("constant", "linear", "cosine"))[1].get("warmup", 0))
    steps, t = [], 0
    while t < total:
        h = h_base
        if alpha is not None and t >= warm:
            eta = scheduled_lr(schedule, lr, t)
            h = max(int((alpha / eta) ** power), h_base) if eta > 0 else total - t
        h = min(h, total - t)
        steps.append(h)
        t += h
    return steps


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("diloco")
    d.add_argument("--rounds", type=int, required=True)
    d.add_argument("--inner-steps", type=int, required=True)
    m = sub.add_parser("demo")
    m.add_argument("--rounds", type=int, required=True)
    m.add_argument("--lr", required=True)
    r = sub.add_parser("rounds")
    r.add_argument("--rule", required=True)
    r.add_argument("--total", type=int, required=True)
    r.add_argument("--h-base", type=int, required=True)
    r.add_argument("--lr", default="")
    r.add_argument("--schedule", required=True)
    a = p.parse_args()
    if a.cmd == "rounds":
        try:
            print("\n".join(map(str, round_steps(a.rule, a.total, a.h_base, a.lr, a.schedule))))
        except ValueError as e:
            print(f"schedules.py: {e}", file=sys.stderr)
            sys.exit(2)
        return
    print(diloco(a.rounds, a.inner_steps) if a.cmd == "diloco" else demo(a.rounds, a.lr))


if __name__ == "__main__":
    main()
