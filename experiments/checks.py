"""The expected orderings (published or predicted), each a rule over the summaries over seeds.

Every check states its rule (:attr:`Check.rule`) and the families it compares
(:attr:`Check.families`). A check is *not reproduced* ("no") when the families it compares are
all at chance on its task (``experiments.stats``: the 95% interval over seeds reaches the chance
score, or, with one seed, the value is within 5% of it): an ordering among models that learned
nothing is not evidence of anything. *n/a*: the runs it needs are missing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from experiments.stats import Summaries, Summary, all_at_chance
from experiments.suites import (
    MQAR_CURVE_FAMILIES,
    NEGATIVE_FAMILIES,
    NEGATIVE_SUFFIX,
    SELECTIVE,
    SEQ2SEQ_ATTENTION,
    SEQ2SEQ_FAMILIES,
    TIME_INVARIANT,
)

from recurrax.models import CLASSIC, FAMILIES


class CheckResult(NamedTuple):
    status: str  # "yes" (reproduced), "no" (not reproduced), "n/a" (the runs needed are missing)
    evidence: str


class Check(NamedTuple):
    """One expected ordering: its row of the task suite, the task, the expectation, its rule, its
    test and the families it compares (all at chance: not reproduced)."""

    row: int
    task: str
    expected: str
    rule: str
    fn: Callable[[Summaries], CheckResult]
    families: tuple[str, ...] = FAMILIES

    @property
    def full_rule(self) -> str:
        """The rule, with the at-chance condition every check shares."""
        if len(self.families) == 1:
            return f"{self.rule}; fails when {self.families[0]} is at chance"
        return f"{self.rule}; fails when {', '.join(self.families)} are all at chance"

    def cells(self, summaries: Summaries) -> list[Summary]:
        """The cells of the compared families in every variant of the check's task."""
        return [
            summaries[v][f]
            for v in variants_of(summaries, self.task)
            for f in self.families
            if f in summaries[v]
        ]

    def __call__(self, summaries: Summaries) -> CheckResult:
        result = self.fn(summaries)
        if result.status != NA and all_at_chance(self.cells(summaries)):
            return CheckResult(
                "no",
                f"all compared families ({', '.join(self.families)}) at chance: " + result.evidence,
            )
        return result


NA = "n/a"


def variants_of(summaries: Summaries, task: str) -> list[str]:
    """Variant names of ``task`` (the name itself or ``task-...``), by their numeric suffix."""
    names = [v for v in summaries if v == task or v.startswith(task + "-")]

    def order(name):
        digits = "".join(c for c in name[len(task) :] if c.isdigit())
        return (int(digits) if digits else 0, name)

    return sorted(names, key=order)


def _length_of(variant: str) -> int | None:
    """``T`` of a variant named ``<task>-T<T>``."""
    tail = variant.rsplit("-", 1)[-1]
    return int(tail[1:]) if tail.startswith("T") and tail[1:].isdigit() else None


def fmt(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3g}" if abs(value) < 0.01 and value != 0 else f"{value:.3f}"


def _means(row: Mapping[str, Summary], families: Sequence[str]) -> dict[str, float]:
    return {f: row[f].mean for f in families if f in row}


def _list(values: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {fmt(v)}" for k, v in values.items())


def check_adding_rnn(s: Summaries) -> CheckResult:
    rows = [(v, _length_of(v)) for v in variants_of(s, "adding")]
    rows = [(v, T) for v, T in rows if T is not None and T >= 150 and "rnn" in s[v]]
    if not rows:
        return CheckResult(NA, "no adding run with T ≥ 150 for rnn")
    values = {f"T={T}": s[v]["rnn"].mean for v, T in rows}
    ok = all(value >= 0.10 for value in values.values())
    return CheckResult("yes" if ok else "no", f"rnn MSE: {_list(values)}")


def _below(value: float, reference: float) -> bool:
    """Clearly below: under 0.8× the reference, or solved (< 0.01)."""
    return value < 0.8 * reference or value < 0.01


def _adding_beats_rnn(s: Summaries, families: Sequence[str], max_length: int | None):
    parts, ok, seen = [], True, False
    for v in variants_of(s, "adding"):
        T = _length_of(v)
        if T is None or (max_length is not None and T > max_length) or "rnn" not in s[v]:
            continue
        values = _means(s[v], families)
        if len(values) < len(families):
            continue
        seen = True
        rnn = s[v]["rnn"].mean
        ok &= all(_below(value, rnn) for value in values.values())
        solved = [f for f, value in values.items() if value < 0.01]
        parts.append(
            f"T={T}: rnn {fmt(rnn)} vs {_list(values)}"
            + (f" (solved: {', '.join(solved)})" if solved else "")
        )
    if not seen:
        return CheckResult(NA, f"no adding runs with rnn and {', '.join(families)}")
    return CheckResult("yes" if ok else "no", "; ".join(parts))


def check_adding_gated(s: Summaries) -> CheckResult:
    return _adding_beats_rnn(s, ("lstm", "gru"), 500)


def check_adding_linear(s: Summaries) -> CheckResult:
    return _adding_beats_rnn(s, TIME_INVARIANT, None)


def _copy_rows(s: Summaries, family: str):
    rows = []
    for v in variants_of(s, "copy_memory"):
        if family in s[v] and s[v][family].baseline is not None:
            rows.append((v, _length_of(v), s[v][family]))
    return rows


def check_copy_lstm(s: Summaries) -> CheckResult:
    rows = _copy_rows(s, "lstm")
    if not rows:
        return CheckResult(NA, "no copy_memory run for lstm")
    cell = rows[-1][2]
    ok = cell.mean >= 0.9 * cell.baseline
    detail = "; ".join(f"T={T_}: {fmt(c.mean)} (baseline {fmt(c.baseline)})" for _, T_, c in rows)
    return CheckResult("yes" if ok else "no", f"lstm cross-entropy {detail}")


def check_copy_linear(s: Summaries) -> CheckResult:
    parts, ok, seen = [], True, False
    for v in variants_of(s, "copy_memory"):
        values = _means(s[v], TIME_INVARIANT)
        if len(values) < len(TIME_INVARIANT):
            continue
        seen = True
        baseline = next(iter(s[v].values())).baseline
        ok &= all(value < 0.5 * baseline for value in values.values())
        parts.append(f"T={_length_of(v)}: {_list(values)} (baseline {fmt(baseline)})")
    if not seen:
        return CheckResult(NA, "no copy_memory runs for lru and s5")
    return CheckResult("yes" if ok else "no", "; ".join(parts))


def _each_above(row, high, low, margin):
    """Whether every ``high`` family beats the best ``low`` family by ``margin`` (means), and
    with intervals apart when both have them; ``None`` when either group has no runs."""
    highs, lows = _means(row, high), _means(row, low)
    if not highs or not lows:
        return None
    best_low = max(lows, key=lows.get)
    ok = True
    for family, value in highs.items():
        ok &= value >= lows[best_low] + margin
        a, b = row[family].interval, row[best_low].interval
        if a is not None and b is not None:
            ok &= a[0] > b[1]
    return ok, f"{_list(highs)} vs {_list(lows)}"


def check_selective_copy(s: Summaries) -> CheckResult:
    for v in variants_of(s, "selective_copy"):
        result = _each_above(s[v], SELECTIVE, TIME_INVARIANT, 0.05)
        if result is not None:
            return CheckResult("yes" if result[0] else "no", "accuracy " + result[1])
    return CheckResult(NA, "no selective_copy runs for both groups")


def _extrapolation(s: Summaries, families: Sequence[str]):
    """Per family with length results: (acc at the train length, acc at the longest length)."""
    out = {}
    for v in variants_of(s, "induction_heads"):
        for family in families:
            cell = s[v].get(family)
            if cell is None or not cell.by_length:
                continue
            train_length = int(cell.task_config.get("length", min(cell.by_length)))
            at_train = cell.by_length.get(train_length, cell.mean)
            longest = max(cell.by_length)
            out[family] = (at_train, cell.by_length[longest], train_length, longest)
    return out


def _learned_extrapolation(s: Summaries, families: Sequence[str]):
    """The families that learned induction heads (accuracy ≥ 0.5 at the train length), with the
    evidence line for every family that ran; None when none of ``families`` ran."""
    rows = _extrapolation(s, families)
    if not rows:
        return None
    learned = {f: r for f, r in rows.items() if r[0] >= 0.5}
    detail = "; ".join(
        f"{f} {fmt(a)} at L={L} → {fmt(b)} at L={M}" for f, (a, b, L, M) in rows.items()
    )
    return learned, detail


def check_induction_selective(s: Summaries) -> CheckResult:
    found = _learned_extrapolation(s, SELECTIVE)
    if found is None:
        return CheckResult(NA, "no induction_heads runs of selective families")
    learned, detail = found
    if not learned:
        return CheckResult("no", f"no selective family learned the task (accuracy ≥ 0.5): {detail}")
    ok = all(b >= a - 0.1 for a, b, _, _ in learned.values())
    return CheckResult("yes" if ok else "no", detail)


def check_induction_others(s: Summaries) -> CheckResult:
    found = _learned_extrapolation(s, [f for f in FAMILIES if f not in SELECTIVE])
    if found is None:
        return CheckResult(NA, "no induction_heads runs of non-selective families")
    learned, detail = found
    if not learned:
        return CheckResult(NA, f"no non-selective family learned the task: {detail}")
    ok = all(b < a - 0.1 for a, b, _, _ in learned.values())
    return CheckResult("yes" if ok else "no", detail)


def mqar_curves(s: Summaries) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """``{setting: {family: [(state size, accuracy), ...]}}`` from the variants ``mqar-L*P*[-w*]``."""
    curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for v in variants_of(s, "mqar"):
        setting = "-".join(v.split("-")[:2])
        for family, cell in s[v].items():
            if cell.state_size is not None:
                curves.setdefault(setting, {}).setdefault(family, []).append(
                    (cell.state_size, cell.mean)
                )
    for setting in curves.values():
        for family in list(setting):
            setting[family] = sorted(setting[family])
            if len(setting[family]) < 2:
                del setting[family]
    return {k: v for k, v in curves.items() if v}


def check_mqar(s: Summaries) -> CheckResult:
    curves = mqar_curves(s)
    if not curves:
        return CheckResult(NA, "no MQAR state-size curve (needs ≥ 2 state sizes per family)")
    parts, rises, total = [], 0, 0
    for setting, families in curves.items():
        for family, points in families.items():
            total += 1
            up = points[-1][1] >= points[0][1] + 0.02
            rises += up
            parts.append(
                f"{setting} {family}: "
                + " → ".join(f"{fmt(acc)}@{size}" for size, acc in points)
                + ("" if up else " (no rise)")
            )
    ok = rises * 2 > total
    return CheckResult(
        "yes" if ok else "no", f"rises for {rises}/{total} families: " + "; ".join(parts)
    )


def check_listops(s: Summaries) -> CheckResult:
    for v in variants_of(s, "listops"):
        values = _means(s[v], TIME_INVARIANT)
        if values:
            baseline = next(iter(s[v].values())).baseline or 0.0
            ok = len(values) == len(TIME_INVARIANT) and all(
                value >= baseline + 0.03 for value in values.values()
            )
            others = _means(s[v], [f for f in FAMILIES if f not in TIME_INVARIANT])
            return CheckResult(
                "yes" if ok else "no",
                f"{_list(values)} vs majority class {fmt(baseline)} (others: {_list(others)})",
            )
    return CheckResult(NA, "no listops runs for lru/s5")


def _test_accuracy(s: Summaries, task: str, families: Sequence[str]) -> dict[str, float]:
    for v in variants_of(s, task):
        values = _means(s[v], families)
        if values:
            return values
    return {}


def check_parity_gated(s: Summaries) -> CheckResult:
    values = _test_accuracy(s, "parity", ("lstm", "gru"))
    if len(values) < 2:
        return CheckResult(NA, "no parity runs for lstm and gru")
    ok = all(value >= 0.9 for value in values.values())
    return CheckResult("yes" if ok else "no", f"accuracy on unseen lengths: {_list(values)}")


def check_parity_positive(s: Summaries) -> CheckResult:
    values = _test_accuracy(s, "parity", ("mamba", "mingru"))
    if len(values) < 2:
        return CheckResult(NA, "no parity runs for mamba and mingru")
    ok = all(value <= 0.6 for value in values.values())
    return CheckResult("yes" if ok else "no", f"accuracy on unseen lengths: {_list(values)}")


def check_parity_negative(s: Summaries) -> CheckResult:
    without = _means(s.get("parity", {}), NEGATIVE_FAMILIES)
    with_ = _means(s.get("parity" + NEGATIVE_SUFFIX, {}), NEGATIVE_FAMILIES)
    pairs = {f: (with_[f], without[f]) for f in NEGATIVE_FAMILIES if f in with_ and f in without}
    if not pairs:
        return CheckResult(NA, "no parity runs with and without negative transitions")
    ok = all(a >= b + 0.05 for a, b in pairs.values())
    evidence = ", ".join(f"{f} {fmt(a)} vs {fmt(b)}" for f, (a, b) in pairs.items())
    return CheckResult("yes" if ok else "no", f"with vs without: {evidence}")


def check_s5_word(s: Summaries) -> CheckResult:
    gated = _test_accuracy(s, "s5_word", ("lstm", "gru"))
    diagonal = _test_accuracy(s, "s5_word", [f for f in FAMILIES if f not in CLASSIC])
    if not gated or not diagonal:
        return CheckResult(NA, "no s5_word runs for lstm/gru and the linear recurrences")
    ok = max(gated.values()) >= max(diagonal.values()) + 0.02
    return CheckResult("yes" if ok else "no", f"{_list(gated)} vs {_list(diagonal)}")


def check_mnist1d(s: Summaries) -> CheckResult:
    values = _test_accuracy(s, "mnist1d", ("gru",))
    if not values:
        return CheckResult(NA, "no mnist1d run for gru")
    ok = values["gru"] >= 0.85
    return CheckResult("yes" if ok else "no", f"gru accuracy {fmt(values['gru'])} (published 0.91)")


def check_fashion(s: Summaries) -> CheckResult:
    parts, ok, seen = [], True, False
    for v in variants_of(s, "seq_fashion_mnist"):
        values = _means(s[v], ("s5", "lstm"))
        if len(values) < 2:
            continue
        seen = True
        ok &= values["s5"] >= values["lstm"]
        parts.append(f"{v}: {_list(values)}")
    if not seen:
        return CheckResult(NA, "no seq_fashion_mnist runs for s5 and lstm")
    return CheckResult("yes" if ok else "no", "; ".join(parts))


def check_char_lm(s: Summaries) -> CheckResult:
    values = _test_accuracy(s, "char_lm", ("mingru", "minlstm", "mamba"))
    if len(values) < 3:
        return CheckResult(NA, "no char_lm runs for mingru, minlstm and mamba")
    ok = values["mingru"] < values["mamba"] and values["minlstm"] < values["mamba"]
    return CheckResult("yes" if ok else "no", f"bits per char: {_list(values)}")


CHECKS: tuple[Check, ...] = (
    Check(1, "adding", "tanh RNN stays near 0.167 from T≈150", "rnn MSE ≥ 0.10 at every T ≥ 150", check_adding_rnn, ("rnn", "lstm", "gru", "lru", "s5")),
    Check(1, "adding", "LSTM/GRU solve T of a few hundred", "lstm and gru MSE < 0.8 × rnn (or < 0.01) at every T ≤ 500", check_adding_gated, ("rnn", "lstm", "gru")),
    Check(1, "adding", "LRU/S5-style models solve every T", "lru and s5 MSE < 0.8 × rnn (or < 0.01) at every T; solved = < 0.01", check_adding_linear, ("rnn", *TIME_INVARIANT)),
    Check(2, "copy_memory", "LSTM stalls at the baseline as T grows", "lstm cross-entropy ≥ 0.9 × baseline at the longest delay", check_copy_lstm, ("lstm", *TIME_INVARIANT)),
    Check(2, "copy_memory", "linear recurrences solve it", "lru and s5 cross-entropy < 0.5 × baseline at every delay", check_copy_linear, TIME_INVARIANT),
    Check(3, "selective_copy", "selective models ≈ 100%; time-invariant ones (LRU, S4D/S5) far lower", "each of mamba/rglru/mingru/minlstm ≥ the better of lru/s5 + 0.05, intervals apart", check_selective_copy, SELECTIVE + TIME_INVARIANT),
    Check(4, "induction_heads", "selective models extrapolate (Mamba 100% at every length)", "every selective family that learned (≥ 0.5 at the train length) loses ≤ 0.1 at the longest test length; none learned = not reproduced", check_induction_selective, SELECTIVE),
    Check(4, "induction_heads", "others degrade", "every non-selective family that learned loses > 0.1 at the longest test length", check_induction_others),
    Check(5, "mqar", "accuracy rises with state size", "accuracy at the largest state ≥ smallest + 0.02 for most curve families", check_mqar, MQAR_CURVE_FAMILIES),
    Check(6, "listops", "S4 59.6, S5 62.2, LRU 60.2 (≫ majority class)", "lru and s5 accuracy ≥ majority-class share + 0.03", check_listops, TIME_INVARIANT),
    Check(7, "parity", "LSTM/GRU ≈ 100% on parity", "lstm and gru accuracy ≥ 0.9 on the unseen test lengths", check_parity_gated, ("lstm", "gru")),
    Check(7, "parity", "positive-real diagonal recurrences (Mamba, minGRU) fail parity", "mamba and mingru accuracy ≤ 0.6 on the unseen test lengths", check_parity_positive, ("lstm", "gru", "mamba", "mingru")),
    Check(7, "parity", "negative transitions let input-dependent diagonal recurrences learn it (Grazzi et al. 2024)", "each of mamba/rglru/mingru/minlstm with negative_transitions ≥ without + 0.05 on unseen lengths", check_parity_negative, NEGATIVE_FAMILIES),
    Check(7, "s5_word", "S5 needs a non-solvable-group state: beyond diagonal linear recurrences", "best of lstm/gru ≥ best linear recurrence + 0.02 on unseen lengths", check_s5_word),
    Check(8, "mnist1d", "GRU ≈ 91% on MNIST-1D", "gru accuracy ≥ 0.85", check_mnist1d, ("gru",)),
    Check(8, "seq_fashion_mnist", "ordering as on sMNIST/psMNIST: S4 ≥ LSTM, gap larger when permuted", "s5 accuracy ≥ lstm on sequential and permuted", check_fashion, ("s5", "lstm")),
    Check(9, "char_lm", "test loss: minGRU 1.548, minLSTM 1.555 < Mamba 1.575 nats/char", "mingru and minlstm bits/char < mamba", check_char_lm, ("mingru", "minlstm", "mamba")),
)  # fmt: skip
"""The expected orderings (published or predicted), each as a rule over the measured summaries."""


def _target(task: str, families: Sequence[str], rule) -> Callable[[Summaries], CheckResult]:
    """A check that every listed family (that ran) meets ``rule(summary) -> (ok, text)`` on the
    first variant of ``task``."""

    def check(s: Summaries) -> CheckResult:
        row = s.get(task, {})
        present = [f for f in families if f in row]
        if not present:
            return CheckResult(NA, f"no {task} runs for {', '.join(families)}")
        results = [(f, *rule(row[f])) for f in present]
        ok = all(good for _, good, _ in results)
        return CheckResult("yes" if ok else "no", ", ".join(f"{f} {t}" for f, _, t in results))

    return check


def _at_least(threshold: float):
    return lambda c: (c.mean >= threshold, f"{fmt(c.mean)} (≥ {threshold:g})")


def _at_length(length: int, margin: float):
    def rule(c: Summary):
        value = c.by_length.get(length)
        if value is None or c.baseline is None:
            return False, f"no value at length {length}"
        return (
            value >= c.baseline + margin,
            f"{fmt(value)} at L={length} (chance {fmt(c.baseline)})",
        )

    return rule


def _far_below(task: str, leader: str, gap: float) -> Callable[[Summaries], CheckResult]:
    def check(s: Summaries) -> CheckResult:
        row = s.get(task, {})
        if leader not in row or not any(f in row for f in TIME_INVARIANT):
            return CheckResult(NA, f"no {task} runs for {leader} and lru/s5")
        others = _means(row, TIME_INVARIANT)
        ok = all(v <= row[leader].mean - gap for v in others.values())
        return CheckResult(
            "yes" if ok else "no", f"{leader} {fmt(row[leader].mean)} vs {_list(others)}"
        )

    return check


def _chance_without_above_with(s: Summaries) -> CheckResult:
    without = s.get("parity", {})
    with_ = s.get("parity" + NEGATIVE_SUFFIX, {})
    families = [f for f in ("mamba", "mingru") if f in without and f in with_]
    if not families:
        return CheckResult(
            NA, "no parity runs of mamba/mingru with and without negative transitions"
        )
    ok = all(
        without[f].at_chance and not with_[f].at_chance and with_[f].mean >= 0.75 for f in families
    )
    text = ", ".join(
        f"{f} without {fmt(without[f].mean)}{' (at chance)' if without[f].at_chance else ''}, "
        f"with {fmt(with_[f].mean)}{' (at chance)' if with_[f].at_chance else ''}"
        for f in families
    )
    return CheckResult("yes" if ok else "no", text)


MEDIUM_TARGETS: tuple[Check, ...] = (
    Check(3, "selective_copy", "Mamba ≥ 95%", "mamba accuracy ≥ 0.95", _target("selective_copy", ("mamba",), _at_least(0.95)), ("mamba",)),
    Check(3, "selective_copy", "LRU/S5 stay far lower", "lru and s5 accuracy ≤ mamba − 0.3", _far_below("selective_copy", "mamba", 0.3), ("mamba", *TIME_INVARIANT)),
    Check(4, "induction_heads", "Mamba ≥ 95% at its training length", "mamba accuracy ≥ 0.95 at L = 256", _target("induction_heads", ("mamba",), _at_least(0.95)), ("mamba",)),
    Check(4, "induction_heads", "Mamba above chance at 4× its training length", "mamba accuracy at L = 1024 ≥ chance + 0.1", _target("induction_heads", ("mamba",), _at_length(1024, 0.1)), ("mamba",)),
    Check(8, "mnist1d", "GRU ≥ 90%", "gru accuracy ≥ 0.90", _target("mnist1d", ("gru",), _at_least(0.90)), ("gru",)),
    Check(7, "parity", "LSTM/GRU 100% on unseen lengths", "lstm and gru accuracy ≥ 0.99 on lengths 41–1000", _target("parity", ("lstm", "gru"), _at_least(0.99)), ("lstm", "gru")),
    Check(7, "parity", "Mamba/minGRU at chance without negative transitions, well above with them", "at chance without; with: not at chance and accuracy ≥ 0.75", _chance_without_above_with, ("mamba", "mingru")),
)  # fmt: skip
"""The ``medium`` suite's targets, checked on its report beside the expected orderings."""

# ----------------------------------------------------------------------------- the seq2seq suite
# Rows are "<task>-<attention>": "<task>-bahdanau" with attention, "<task>-none" without.


def _best_at_least(row: str, threshold: float) -> Callable[[Summaries], CheckResult]:
    """The best family of ``row`` reaches ``threshold`` (every family's mean is listed)."""

    def check(s: Summaries) -> CheckResult:
        values = _means(s.get(row, {}), SEQ2SEQ_FAMILIES)
        if not values:
            return CheckResult(NA, f"no {row} runs")
        best = max(values, key=values.get)
        ok = values[best] >= threshold
        return CheckResult(
            "yes" if ok else "no", f"best {best} {fmt(values[best])}; {_list(values)}"
        )

    return check


def _attention_apart(task: str) -> Callable[[Summaries], CheckResult]:
    """For every family, the 95% interval with attention lies above the one without."""

    def check(s: Summaries) -> CheckResult:
        with_ = s.get(f"{task}-{SEQ2SEQ_ATTENTION}", {})
        without = s.get(f"{task}-none", {})
        families = [f for f in SEQ2SEQ_FAMILIES if f in with_ and f in without]
        if not families:
            return CheckResult(NA, f"no {task} runs with and without attention")
        ok, parts = True, []
        for f in families:
            a, b = with_[f].interval, without[f].interval
            apart = a is not None and b is not None and a[0] > b[1]
            ok &= apart
            parts.append(f"{f} {cell_range(with_[f])} vs {cell_range(without[f])}")
        return CheckResult("yes" if ok else "no", "; ".join(parts))

    return check


def cell_range(cell: Summary) -> str:
    """``mean [low, high]`` (or the mean alone, with one seed)."""
    if cell.interval is None:
        return fmt(cell.mean)
    return f"{fmt(cell.mean)} [{fmt(cell.interval[0])}, {fmt(cell.interval[1])}]"


def _longer_is_harder(short: str, long: str, attention: str) -> Callable[[Summaries], CheckResult]:
    """For every family, exact match at ``long`` is below ``short`` (rows with ``attention``)."""

    def check(s: Summaries) -> CheckResult:
        a, b = s.get(f"{short}-{attention}", {}), s.get(f"{long}-{attention}", {})
        families = [f for f in SEQ2SEQ_FAMILIES if f in a and f in b]
        if not families:
            return CheckResult(NA, f"no {short} and {long} runs with attention {attention}")
        ok = all(b[f].mean < a[f].mean for f in families)
        text = ", ".join(f"{f} {fmt(a[f].mean)} → {fmt(b[f].mean)}" for f in families)
        return CheckResult("yes" if ok else "no", text)

    return check


def _attention_drops_less(short: str, long: str) -> Callable[[Summaries], CheckResult]:
    """For every family, the drop from ``short`` to ``long`` is smaller with attention."""

    def check(s: Summaries) -> CheckResult:
        rows = {
            (length, att): s.get(f"{length}-{att}", {})
            for length in (short, long)
            for att in (SEQ2SEQ_ATTENTION, "none")
        }
        families = [f for f in SEQ2SEQ_FAMILIES if all(f in row for row in rows.values())]
        if not families:
            return CheckResult(NA, f"no {short} and {long} runs with and without attention")

        def drop(f, att):
            return rows[(short, att)][f].mean - rows[(long, att)][f].mean

        ok = all(drop(f, SEQ2SEQ_ATTENTION) < drop(f, "none") for f in families)
        text = ", ".join(
            f"{f} {fmt(drop(f, SEQ2SEQ_ATTENTION))} vs {fmt(drop(f, 'none'))}" for f in families
        )
        return CheckResult("yes" if ok else "no", f"drop with vs without attention: {text}")

    return check


SEQ2SEQ_CHECKS: tuple[Check, ...] = (
    Check(1, "reverse", "without attention, longer inputs are harder (Cho et al. 2014)", "every family's exact match without attention is lower on lengths 40–50 than at 20", _longer_is_harder("reverse-L20", "reverse-L40-50", "none"), SEQ2SEQ_FAMILIES),
    Check(2, "reverse", "attention keeps long inputs within reach (Bahdanau et al. 2015, Fig. 2)", "every family's drop from length 20 to 40–50 is smaller with attention than without", _attention_drops_less("reverse-L20", "reverse-L40-50"), SEQ2SEQ_FAMILIES),
)  # fmt: skip
"""The ``seq2seq`` suite's expected orderings (its report checks these in place of :data:`CHECKS`,
which are about the task suite)."""

SEQ2SEQ_TARGETS: tuple[Check, ...] = (
    Check(1, "dates", "≥ 99% exact match on held-out dates", "the best family with attention: exact match ≥ 0.99", _best_at_least(f"dates-{SEQ2SEQ_ATTENTION}", 0.99), SEQ2SEQ_FAMILIES),
    Check(2, "reverse", "≥ 99% exact match reversing length-20 strings", "the best family with attention: exact match ≥ 0.99 at length 20", _best_at_least(f"reverse-L20-{SEQ2SEQ_ATTENTION}", 0.99), SEQ2SEQ_FAMILIES),
    Check(3, "reverse", "attention clearly beats no attention at length 40+", "for every family, the interval with attention lies above the one without on lengths 40–50", _attention_apart("reverse-L40-50"), SEQ2SEQ_FAMILIES),
)  # fmt: skip
"""The ``seq2seq`` suite's targets."""

TARGETS: dict[str, tuple[Check, ...]] = {"medium": MEDIUM_TARGETS, "seq2seq": SEQ2SEQ_TARGETS}
"""Per suite: targets its report checks besides its expected orderings."""

ORDERINGS: dict[str, tuple[Check, ...]] = {"seq2seq": SEQ2SEQ_CHECKS}
"""Per suite: the expected orderings its report checks, where they are not :data:`CHECKS`."""


def run_checks(
    summaries: Summaries, checks: Sequence[Check] = CHECKS
) -> list[tuple[Check, CheckResult]]:
    return [(check, check(summaries)) for check in checks]
