#!/usr/bin/python3
"""The pipelines' default inner learning-rate schedules (loco-worker --schedule specs).

  schedules.py diloco --rounds R --inner-steps H   cosine over the R*H inner steps, warm-up
                                                   min(1000, R*H/10) (DiLoCo/OpenDiLoCo's 1,000 of
                                                   88,000 steps scaled to short runs)
  schedules.py demo --rounds R --lr LR             cosine over R steps (DeMo: one step a round),
                                                   warm-up min(250, R/10), down to 0.1*LR (DeMo's
                                                   OLMo config: t_warmup 250, alpha_f 0.1)
Used by scripts/diloco and scripts/demo. Standard library only.
"""
import argparse


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


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("diloco")
    d.add_argument("--rounds", type=int, required=True)
    d.add_argument("--inner-steps", type=int, required=True)
    m = sub.add_parser("demo")
    m.add_argument("--rounds", type=int, required=True)
    m.add_argument("--lr", required=True)
    a = p.parse_args()
    print(diloco(a.rounds, a.inner_steps) if a.cmd == "diloco" else demo(a.rounds, a.lr))


if __name__ == "__main__":
    main()
