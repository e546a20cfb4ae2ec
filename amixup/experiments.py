"""The paper's experiments as lists of run configurations, and a runner that skips finished runs.

Notebooks call these; each run is an engine run with its own record, so an interrupted
experiment continues where it stopped.
"""

from __future__ import annotations

import ast
from pathlib import Path

from . import progress as progress_bars
from .config import RunConfig
from .data import DataNotFoundError
from .data.copies import data_copy_label  # noqa: F401 (the label of a data-copy run; experiments.data_copy_label)
from .engine import record_path, train
from .records import read_record
from .tables import CHOICE_DEFAULTS, CHOICES, TABLE2_CHOICES
from .tables import table2_pattern_verdict  # noqa: F401 (notebook 01 names it here too)
from .recipes import (ABLATION_ROWS, COARSE_TO_FINE_AUGMENTATION, FINE_OF_COARSE, TABLE4_BETA, TABLE5_BETA,
                      TABLE8_BETA, TABLE8_DATASETS, TABLE8_NETWORKS, benchmark_recipe, make_config)

METHODS = ("ce", "mixup", "manifold_mixup", "am_mixup")
#: AM-mixup's beta values of the beta-sensitivity sweep (notebook 04). Eq. 6 gives lambda = exp(-beta * acc)
#: with acc in [0, 1], so lambda can fall below 0.5 (and the one-sided label flip to the partner's class,
#: Eq. 5) only when beta > ln 2 = 0.693: here 1.0 and 1.5. beta = 0 keeps lambda at 1 (no mixing).
BETA_SWEEP = (0.0, 0.1, 0.2, 0.34, 0.5, 0.67, 1.0, 1.5)
#: Runs of the data-copy experiment (results/data_copy/<profile>/): CIFAR-10-LT at imbalance 100 with the
#: Table 3 recipe, on the CIFAR-10 copy as it is ("original") and on that copy JPEG-encoded once more ("q75").
DATA_COPY_DATASET, DATA_COPY_IMB = "cifar10_lt", 100


def as_list(value) -> list:
    """A notebook list parameter, also when papermill passed it as text (``-p seeds "[0,1,2]"``)."""
    if isinstance(value, str):
        value = ast.literal_eval(value) if value.strip().startswith(("[", "(")) else [v for v in value.split(",") if v]
    if isinstance(value, (int, float)):
        return [value]
    return list(value)


def table2_configs(profile: str, methods=METHODS, seeds=(0,), beta: float = 0.34, device: str = "auto",
                   **overrides) -> list[RunConfig]:
    """Table 2: CNN-Vis2D on Mini-CIFAR-LT (imbalance 200), one run per method and seed."""
    return [make_config("motivation", profile, dataset="mini_cifar_lt", method=m, seed=s, beta=beta,
                        device=device, experiment="table2", **overrides)
            for m in methods for s in seeds]


def table2_choice_overrides(**choices) -> dict:
    """The config fields of one combination of :data:`~amixup.tables.TABLE2_CHOICES` (choices left out keep ours;
    empty for ours, so its run is Table 2's)."""
    unknown = sorted(set(choices) - set(TABLE2_CHOICES))
    if unknown:
        raise ValueError(f"combinations: {unknown} are not choices; the choices are {list(TABLE2_CHOICES)}")
    combo = {**CHOICE_DEFAULTS, **choices}
    overrides = {} if combo["augmentation"] else dict(crop_padding=0, flip=False)
    options = {name: combo[name] for name in CHOICES if name != "augmentation" and combo[name] != CHOICE_DEFAULTS[name]}
    if options:
        overrides["model_options"] = options
    return overrides


def table2_choice_combinations() -> list[dict]:
    """Every combination of :data:`~amixup.tables.TABLE2_CHOICES` (the full 2^4 factorial), ours first, then by how many
    choices differ from ours."""
    import itertools

    names = list(TABLE2_CHOICES)
    combos = [dict(zip(names, values)) for values in itertools.product(*TABLE2_CHOICES.values())]
    return sorted(combos, key=lambda c: sum(c[n] != TABLE2_CHOICES[n][0] for n in names))


def table2_choice_configs(profile: str, methods=("ce",), seeds=(0, 1), combinations=None, beta: float = 0.34,
                          device: str = "auto", **overrides) -> list[RunConfig]:
    """Table 2's silent choices measured: the Table 2 run of each method and seed under each combination
    (dicts of :data:`~amixup.tables.TABLE2_CHOICES` values; default the full factorial). Our combination is Table
    2's own run (experiment "table2", the same record); the others are experiment "table2_choices"."""
    combinations = table2_choice_combinations() if combinations is None else list(combinations)
    configs = []
    for combo in combinations:
        choice = table2_choice_overrides(**combo)
        experiment = "table2_choices" if choice else "table2"
        configs += [make_config("motivation", profile, dataset="mini_cifar_lt", method=m, seed=s, beta=beta,
                                device=device, experiment=experiment, **choice, **overrides)
                    for m in methods for s in seeds]
    return configs


def beta_sweep_configs(profile: str, betas=BETA_SWEEP, seeds=(0, 1), device: str = "auto",
                       **overrides) -> list[RunConfig]:
    """Beta sensitivity (notebook 04): AM-mixup on Mini-CIFAR-LT with the Table 2 recipe (CNN-Vis2D),
    one run per beta and seed, experiment "beta_sweep"."""
    return [make_config("motivation", profile, dataset="mini_cifar_lt", method="am_mixup", seed=s, beta=float(b),
                        device=device, experiment="beta_sweep", **overrides)
            for b in betas for s in seeds]


def data_copy_configs(profile: str, copy: str = "original", seeds=(0, 1), methods=("ce", "am_mixup"),
                      quality: int = 75, device: str = "auto", **overrides) -> list[RunConfig]:
    """The data-copy experiment: ResNet32 on CIFAR-10-LT (imbalance 100, the Table 3 recipe) per method and
    seed, on the copy as it is (``copy="original"``) or re-encoded once more (``copy="reencoded"`` at
    ``quality``, or ``copy="q75"``); ``extra.data_copy`` ("original" / "q75") is part of the run id, so
    the two copies never share a record. Which images a run reads is set by the environment
    (AMIXUP_DATA_PATH, AMIXUP_CACHE_DIR): run them with :func:`amixup.data_copy.run`, which sets it and
    checks every record's data source."""
    label = data_copy_label(copy, quality)
    return [make_config("cifar_lt", profile, dataset=DATA_COPY_DATASET, imb_factor=DATA_COPY_IMB, method=m, seed=s,
                        device=device, experiment="data_copy", extra={"data_copy": label}, **overrides)
            for m in methods for s in seeds]


def ldam_drw_control_configs(profile: str, seeds=(0,), device: str = "auto", **overrides) -> list[RunConfig]:
    """The LDAM-DRW control (notebook 02): CE on CIFAR-10-LT at imbalance 100 with the ERM recipe of LDAM-DRW's
    code (``recipes.LDAM_DRW_ERM``), per seed, experiment "ldam_drw_control"."""
    return [make_config("ldam_drw_erm", profile, dataset=DATA_COPY_DATASET, imb_factor=DATA_COPY_IMB, seed=s,
                        device=device, experiment="ldam_drw_control", **overrides)
            for s in seeds]


def table1_configs(profile: str, methods=METHODS, seeds=(0,), beta: float = 0.34, device: str = "auto",
                   **overrides) -> list[tuple[RunConfig, RunConfig]]:
    """Table 1: (pre-training on Mini-CIFAR-Coarse with the method, fine-tuning a new head on the
    four Mini-CIFAR classes with the encoder frozen) pairs, per method and seed."""
    pairs = []
    for m in methods:
        for s in seeds:
            coarse = make_config("motivation", profile, dataset="mini_cifar_coarse", method=m, seed=s,
                                 beta=beta, device=device, experiment="table1_coarse", **overrides)
            fine = make_config("motivation_finetune", profile, dataset="mini_cifar", seed=s, device=device,
                               beta=beta,  # no effect on the CE head: the pre-training's, shown in the tables
                               experiment="table1", finetune_from=coarse.run_id(),
                               extra={"pretrain_method": m}, **overrides)
            pairs.append((coarse, fine))
    return pairs


def table6_configs(profile: str, methods=("ce", "mixup", "am_mixup"), seeds=(0,), beta: float = 0.34,
                   device: str = "auto", datasets=tuple(FINE_OF_COARSE), **overrides) -> list[tuple[RunConfig, RunConfig]]:
    """Table 6: (ViT pre-training on the coarse labels with the method, a new linear head on the fine
    labels over the frozen encoder) pairs, per coarse dataset, method and seed."""
    pairs = []
    for d in datasets:
        for m in methods:
            for s in seeds:
                coarse = make_config("coarse_to_fine", profile, dataset=d, method=m, seed=s, beta=beta, device=device,
                                     experiment="table6_coarse", **{**COARSE_TO_FINE_AUGMENTATION[d], **overrides})
                fine = make_config("coarse_to_fine_transfer", profile, dataset=FINE_OF_COARSE[d], seed=s,
                                   beta=beta,  # no effect on the CE head: the pre-training's, shown in the tables
                                   device=device, experiment="table6", finetune_from=coarse.run_id(),
                                   extra={"pretrain_method": m, "coarse_dataset": d}, **overrides)
                pairs.append((coarse, fine))
    return pairs


def table3_configs(profile: str, methods=METHODS, seeds=(0,), beta: float = 0.34, device: str = "auto",
                   datasets=("cifar10_lt", "cifar100_lt"), imb_factors=(100, 50, 10), **overrides) -> list[RunConfig]:
    """Table 3: ResNet32 on CIFAR-10/100-LT at each imbalance factor, per method and seed."""
    return [make_config("cifar_lt", profile, dataset=d, imb_factor=i, method=m, seed=s, beta=beta,
                        device=device, experiment="table3", **overrides)
            for d in datasets for i in imb_factors for m in methods for s in seeds]


def table4_configs(profile: str, methods=METHODS, seeds=(0,), networks=tuple(TABLE4_BETA), betas=None,
                   device: str = "auto", **overrides) -> list[RunConfig]:
    """Table 4: torchvision ResNets on ImageNet-LT, per network, method and seed; AM-mixup's beta
    per network from ``betas`` (default: the paper's, ``recipes.TABLE4_BETA``)."""
    betas = {**TABLE4_BETA, **(betas or {})}
    return [make_config("imagenet_lt", profile, model=n, method=m, seed=s, beta=betas[n], device=device,
                        experiment="table4", **overrides)
            for n in networks for m in methods for s in seeds]


def table5_configs(profile: str, methods=METHODS, seeds=(0,), beta: float = TABLE5_BETA, device: str = "auto",
                   **overrides) -> list[RunConfig]:
    """Table 5: Places-LT, per method and seed (AM-mixup beta 0.1 as in the paper), with the cited setup's
    network: a frozen ImageNet ResNet-152 and a new bottleneck block (``recipes.PLACES_LT``; ``finetune_from``
    in ``overrides`` names other ImageNet weights, e.g. a file when offline)."""
    return [make_config("places_lt", profile, method=m, seed=s, beta=beta, device=device,
                        experiment="table5", **overrides)
            for m in methods for s in seeds]


def table7_configs(profile: str, rows=tuple(ABLATION_ROWS), seeds=(0,), beta: float = 0.34, device: str = "auto",
                   dataset: str = "cifar100_lt", imb_factor: float = 100, **overrides) -> list[RunConfig]:
    """Table 7: the ablation rows (mixup rate, one-sided labels, last layer) of AM-mixup on CIFAR-100-LT."""
    return [make_config("cifar_lt", profile, dataset=dataset, imb_factor=imb_factor, method="am_mixup", seed=s,
                        beta=beta, device=device, experiment="table7", extra={"ablation_row": r},
                        **ABLATION_ROWS[r], **overrides)
            for r in rows for s in seeds]


def table8_configs(profile: str, methods=METHODS, seeds=(0,), datasets=TABLE8_DATASETS,
                   networks=tuple(TABLE8_NETWORKS), beta: float = TABLE8_BETA, device: str = "auto",
                   **overrides) -> list[RunConfig]:
    """Table 8: the image-classification benchmarks (CIFAR-10, CIFAR-100, Tiny-ImageNet) with VGG11,
    ResNet-50 and DenseNet-BC, per dataset, network, method and seed; each (dataset, network) pair
    has its recipe (``recipes.benchmark_recipe``). AM-mixup's beta is 0.67 as in the paper's table."""
    return [make_config(benchmark_recipe(d, n), profile, dataset=d, model=n, method=m, seed=s, beta=beta,
                        device=device, experiment="table8", **overrides)
            for d in datasets for n in networks for m in methods for s in seeds]


def data_available(configs) -> dict[str, str | None]:
    """Per dataset of the configs: None if it can be loaded here, else why not (its first line)."""
    from . import data

    found: dict[str, str | None] = {}
    for item in configs:
        name = _final(item).dataset
        if name not in found:
            try:
                data.build_dataset(name, "test", imb_factor=_final(item).imb_factor)
                found[name] = None
            except data.DataNotFoundError as err:
                found[name] = str(err).splitlines()[0].split(". Places looked")[0]
    return found


def run_configs(configs, results_dir, *, progress: bool = True, train_missing: bool = True) -> list[dict]:
    """Records of every config (or (pre-train, fine-tune) pair), training those not finished yet;
    a run whose data is not here is skipped (:func:`missing_report` says so) and the others run.

    With ``train_missing=False`` nothing is trained: the records that exist are returned, so a
    table fills in as runs finish elsewhere (see :func:`missing_runs`).
    """
    results_dir = Path(results_dir)
    if not train_missing:
        paths = [record_path(_final(item), results_dir) for item in configs]
        return [read_record(p) for p in paths if p.exists()]
    configs = list(configs)
    return _train_all(configs, results_dir, progress)


def missing_runs(configs, results_dir) -> list[str]:
    """Run ids of the configs whose record does not exist yet."""
    return [_final(item).run_id() for item in configs if not record_path(_final(item), results_dir).exists()]


def missing_report(configs, results_dir, *, check_data: bool = True):
    """Why each run without a record is missing, as a DataFrame (run_id, dataset, epochs_done, epochs, status).

    status: "running or interrupted: k of N epochs done (...)", "data not found: ..."
    (the dataset cannot be located here; checked once per dataset when ``check_data``),
    "weights not here: ..." (torchvision weights its ``finetune_from`` names are not in torch's hub cache:
    downloaded when the run starts where this machine is online), or "not started".
    """
    import pandas as pd

    from .checkpoints import epochs_done
    from .weights import TORCHVISION_WEIGHTS, torchvision_weights_location
    from .records import CorruptFileError

    results_dir = Path(results_dir)
    found: dict[str, str | None] = {}
    rows = []
    for item in configs:
        config = _final(item)
        if record_path(config, results_dir).exists():
            continue
        try:
            done = epochs_done(config, results_dir)
        except CorruptFileError as err:
            rows.append({"run_id": config.run_id(), "dataset": config.dataset, "epochs_done": None,
                         "epochs": config.epochs, "status": f"checkpoint unreadable: {err}"})
            continue
        if done:
            status = f"running or interrupted: {done} of {config.epochs} epochs done (resumes from its checkpoint)"
        else:
            if check_data and config.dataset not in found:
                found.update(data_available([config]))
            problem = found.get(config.dataset)
            weights, invalid = None, None
            try:
                if (config.finetune_from or "").startswith(TORCHVISION_WEIGHTS):
                    weights = torchvision_weights_location(config.finetune_from, config.model)
            except ValueError as err:  # a name torchvision does not have: the run would stop with this message
                invalid = str(err)
            status = (f"data not found: {problem}" if problem else f"cannot start: {invalid}" if invalid else
                      f"weights not here: {weights[0]} (from {weights[1]}; downloaded when the run starts where "
                      "this machine is online, else put the file there)" if weights and not weights[0].is_file()
                      else "not started")
        rows.append({"run_id": config.run_id(), "dataset": config.dataset, "epochs_done": done,
                     "epochs": config.epochs, "status": status})
    return pd.DataFrame(rows, columns=["run_id", "dataset", "epochs_done", "epochs", "status"])


def _final(item) -> RunConfig:
    return item[-1] if isinstance(item, tuple) else item


#: What each profile's numbers are, in the notebooks' captions.
PROFILE_LABELS = {
    "smoke": "smoke profile: 2 epochs on a few hundred images, CI's check; not comparable with the paper",
    "quick": "quick profile: shortened runs; not comparable with the paper",
    "paper": "paper profile: the paper's full recipe",
}


def profile_label(profile: str) -> str:
    """The caption words of ``profile``'s numbers (a custom profile: its name)."""
    return PROFILE_LABELS.get(profile, f"{profile} profile")


def profile_note(profile: str, notebook: str) -> str:
    """Markdown for the top of a notebook's outputs: which profile they come from and where the executed
    notebooks of the other profiles are (``results/<notebook>/<profile>/<notebook>.ipynb``)."""
    root = Path(__file__).resolve().parents[1]
    executed = sorted(p for p in (root / "results" / notebook).glob(f"*/{notebook}.ipynb") if p.parent.name != profile)
    rank = {"paper": 0, "quick": 1}
    executed.sort(key=lambda p: rank.get(p.parent.name, 2))
    # the smoke outputs are those committed in notebooks/; the others are saved in results/<notebook>/<profile>/
    base = f"../results/{notebook}/" if profile == "smoke" else "../"
    links = ", ".join(f"[{p.parent.name} profile]({base}{p.parent.name}/{p.name}) "
                      f"(`results/{notebook}/{p.parent.name}/{p.name}`)" for p in executed)
    note = f"**These outputs come from the {profile_label(profile)}.**"
    if profile != "paper":
        note += " Their numbers say how the code runs, not what the method does."
    if links:
        note += f" Executed notebooks with results: {links}."
    return note


def _train_all(configs, results_dir: Path, progress: bool) -> list[dict]:
    """Train (or read back) every config or (pre-train, fine-tune) pair; one overall progress bar: runs done /
    total, epochs and time left, the stage (experiment) and the run in progress (amixup.progress.Overall)."""
    from .checkpoints import epochs_done

    def remaining(config):
        try:
            done = epochs_done(config, results_dir)
        except Exception:  # noqa: BLE001 - an unreadable checkpoint: train says so when the run starts
            done = 0
        return None if record_path(config, results_dir).exists() else config.epochs - done

    runs = [c for item in configs for c in (item if isinstance(item, tuple) else (item,))]
    bar = progress_bars.overall(runs, remaining) if progress_bars.enabled(progress) else None
    records = []
    for item in configs:
        pending = list(item if isinstance(item, tuple) else (item,))
        try:
            while pending:
                if bar:
                    bar.start(pending[0])
                record = train(pending[0], results_dir, progress=progress and bar is None,
                               on_epoch_end=bar.epoch if bar else None)
                if bar:
                    bar.finish(pending[0])
                pending.pop(0)
        except DataNotFoundError:  # reported per run by missing_report; the other runs go on
            for config in pending if bar else ():
                bar.finish(config, skipped=True)
            continue
        finally:
            if bar and not bar.left:
                progress_bars.release()
        records.append(record)
    return records


def make_config(*args, **kwargs) -> RunConfig:  # noqa: F811 - replaces the import for the builders
    """recipes.make_config for the builders above: each run they make is planned for the overall progress bar."""
    from .recipes import make_config as build

    return progress_bars.plan(build(*args, **kwargs))
