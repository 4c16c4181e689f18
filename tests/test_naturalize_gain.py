"""benchmarks/naturalize_gain.py's pure parts: version-stamped reuse (never deleting), the seed's split and subsample,
the arms' shares, paired differences with t-intervals. The benchmark's figures live in BENCHMARKS.md."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import naturalize_gain as ng  # noqa: E402

from naturalize.fsio import UserError  # noqa: E402


def test_stamped_dir_reuses_a_matching_stamp_and_builds_anew_otherwise(tmp_path: Path) -> None:
    built = []

    def build(tmp: Path) -> None:
        built.append(tmp)
        (tmp / "x.txt").write_text(str(len(built)))

    a = ng.stamped_dir(tmp_path, {"code": "v1", "n": 3}, build)
    assert ng.stamped_dir(tmp_path, {"n": 3, "code": "v1"}, build) == a  # same stamp (key order irrelevant)
    assert len(built) == 1 and (a / "x.txt").read_text() == "1"
    b = ng.stamped_dir(tmp_path, {"code": "v2", "n": 3}, build)  # new code version: rebuilt elsewhere
    assert b != a and (b / "x.txt").read_text() == "2"
    assert (a / "x.txt").read_text() == "1"  # the old one is kept
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_stamped_dir_refuses_a_folder_it_did_not_stamp(tmp_path: Path) -> None:
    stamp = {"code": "v1"}
    (tmp_path / ng.stamp_key(stamp)).mkdir()
    with pytest.raises(UserError, match="stamp"):
        ng.stamped_dir(tmp_path, stamp, lambda tmp: None)


def test_stamped_json_computes_once_per_stamp(tmp_path: Path) -> None:
    calls = []
    compute = lambda: calls.append(1) or {"macro_f1": 0.5}  # noqa: E731
    assert ng.stamped_json(tmp_path, {"seed": 0}, compute) == {"macro_f1": 0.5}
    assert ng.stamped_json(tmp_path, {"seed": 0}, compute) == {"macro_f1": 0.5}
    ng.stamped_json(tmp_path, {"seed": 1}, compute)
    assert len(calls) == 2


def _parts() -> dict[str, dict[str, list[Path]]]:
    return {
        part: {c: [Path(f"{c}/{part}_{i}.jpg") for i in range(n)] for c in ("PMY", "MY")}
        for part, n in (("bank", 15), ("dev", 4), ("test", 4))
    }


def test_seed_split_resplits_bank_and_test_and_never_reads_dev() -> None:
    parts = _parts()
    pool, test = ng.seed_split(parts, ["PMY", "MY"], 0, "test", pool_size=10)
    for c in ("PMY", "MY"):
        assert len(pool[c]) == 10 and len(test[c]) == 9  # the pool's rest is tested with the test part
        assert set(pool[c]) | set(test[c]) == set(parts["bank"][c] + parts["test"][c])
        assert not set(pool[c]) & set(test[c])
    again, test_again = ng.seed_split(parts, ["PMY", "MY"], 0, "test", pool_size=10)
    assert again == pool and test_again == test  # same seed, same split
    other, other_test = ng.seed_split(parts, ["PMY", "MY"], 1, "test", pool_size=10)
    assert other_test != test and other != pool  # the seed varies the split and the subsample's order


def test_seed_split_dev_mode_tests_on_the_dev_part_and_the_banks_rest() -> None:
    parts = _parts()
    pool, test = ng.seed_split(parts, ["PMY", "MY"], 3, "dev", pool_size=10)
    for c in ("PMY", "MY"):
        assert test[c][:4] == parts["dev"][c] and len(pool[c]) == 10
        assert sorted(pool[c] + test[c][4:]) == sorted(parts["bank"][c])  # the test part is never read


def test_arm_counts_share_the_extra_images() -> None:
    assert ng.arm_counts("real", 150) == []
    assert ng.arm_counts("flip", 150) == [("flip", 150)]
    assert ng.arm_counts("transplant+flip", 151) == [("transplant", 76), ("flip", 75)]
    assert all(src in ng.EXTRAS for arm in ng.ARMS for src, _ in ng.arm_counts(arm, 10))


def test_paired_difference_and_t_interval() -> None:
    flip = [{"seed": s, "macro_f1": 0.5} for s in range(3)]
    arm = [{"seed": s, "macro_f1": 0.5 + d} for s, d in enumerate((0.1, 0.2, 0.3))]
    d = ng.paired(arm, flip)
    assert d["per_seed"] == [0.1, 0.2, 0.3] and d["mean"] == pytest.approx(0.2)
    # mean 0.2, sd 0.1, t(0.975, 2) = 4.303: 0.2 -+ 0.2484
    assert d["ci95"] == pytest.approx([-0.0484, 0.4484], abs=1e-4)


def test_summary_says_whether_the_target_is_met() -> None:
    f1 = {c: 0.5 for c in ("PMY",)}
    rows = lambda vals: [{"seed": s, "macro_f1": v, "f1": f1} for s, v in enumerate(vals)]  # noqa: E731
    runs = {"50": {"flip": rows([0.50, 0.50, 0.50]), "transplant": rows([0.54, 0.55, 0.56])}}
    s = ng.summary(runs, ["PMY"], 50)
    assert s["target_met"] and s["vs_flip"]["50"]["transplant"]["mean"] == pytest.approx(0.05)
    runs["50"]["transplant"] = rows([0.60, 0.50, 0.49])
    assert not ng.summary(runs, ["PMY"], 50)["target_met"]  # mean +0.03 but the interval reaches below 0


def test_pick_donors_takes_n_per_class_by_seed_and_every_donor_arm_names_compose_settings() -> None:
    by_class = {c: [Path(f"{c}_{i}.jpg") for i in range(30)] for c in ng.DONOR_CLASSES}
    picked = ng.pick_donors(by_class, 10, seed=0)
    assert len(picked) == 10 * len(ng.DONOR_CLASSES) == len(set(picked))
    for c in ng.DONOR_CLASSES:
        assert sum(p.name.startswith(f"{c}_") for p in picked) == 10
    assert picked == ng.pick_donors(by_class, 10, seed=0)  # the seed decides, nothing else
    assert picked != ng.pick_donors(by_class, 10, seed=1)
    assert len(ng.pick_donors(by_class, 50, seed=0)) == 30 * len(ng.DONOR_CLASSES)  # more than a class has: all
    from naturalize.compose.params import ComposeParams

    for settings in ng.EXTRAS.values():  # every compose setting but "donors" is a ComposeParams field
        if settings is not None:
            ComposeParams(**{k: v for k, v in settings.items() if k != "donors"})
    assert ng.EXTRAS["transplant-donors"]["donors"] > 0 and ("transplant-donors", 1.0) in ng.ARMS["transplant+donors"]
