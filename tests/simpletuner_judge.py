"""Run a SimpleTuner config through SimpleTuner 4.10.1's own checks; print what it said as JSON.

Run by tests/test_simpletuner_real.py with the Python that FLOYDTUI_SIMPLETUNER_PY names (3.12,
simpletuner==4.10.1 installed by scripts/simpletuner-venv.sh), never imported by floydtui:

    python tests/simpletuner_judge.py CONFIG_JSON WORKDIR [CONFIG_JSON WORKDIR ...]
    python tests/simpletuner_judge.py --defaults
    python tests/simpletuner_judge.py --timestep-bias CASES_JSON

It prints one JSON line: a list with one report per config, in order (one process, so that
SimpleTuner and torch load once).

The checks, in SimpleTuner's order: `loader.load_config` (its argument parser and the checks
after it) reading CONFIG_JSON as its json backend does, `parse_validation_resolutions`, the
DeepFloyd model class's `check_user_config()`, `FactoryRegistry.load_configuration()` on the
data_backend_config it names, and each dataset's backend config `validate()`. Relative paths
are read against WORKDIR, as SimpleTuner reads them against its working directory.

`--timestep-bias` runs SimpleTuner's own timestep-bias code (helpers/training/custom_schedule.py)
on each case `{"args": {timestep_bias_*...}, "num_timesteps": N, "batch": B, "draws": D}`: the
weights of `generate_timestep_weights`, and with a batch, the timesteps its training step would
draw D times over (models/common.py: `segmented_timestep_selection` when B > 1 and
disable_segmented_timestep_sampling is false, else `torch.multinomial`).
"""

import contextlib
import io
import json
import os
import sys
import traceback


def judge(config_path: str, workdir: str) -> dict:
    """SimpleTuner's verdict on one config.json, read from `workdir`."""
    os.chdir(workdir)
    os.environ["CONFIG_BACKEND"] = "json"
    os.environ["CONFIG_PATH"] = config_path
    report = {"config": config_path, "errors": [], "args": None, "validation_resolutions": None, "datasets": None,
              "backend_configs": [], "dataset_errors": {}}

    def failed(stage: str, e: BaseException) -> None:
        report["errors"].append({"stage": stage, "message": f"{type(e).__name__}: {e}",
                                 "trace": traceback.format_exc(limit=3)})

    from simpletuner.helpers.configuration.loader import load_config

    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):  # argparse prints its reason, then exits
            args = load_config(exit_on_error=True)
    except BaseException as e:  # argparse exits; load_config raises ValueError
        failed("load_config", e)
        report["errors"][-1]["message"] += " " + " | ".join(
            line for line in said.getvalue().splitlines() if "error" in line.lower())[-2000:]
        return report
    sys.stderr.write(said.getvalue())
    report["args"] = {k: v for k, v in vars(args).items()}

    from simpletuner.helpers.training.validation import parse_validation_resolutions

    try:
        report["validation_resolutions"] = parse_validation_resolutions(args.validation_resolution,
                                                                        model_flavour=args.model_flavour)
    except Exception as e:
        failed("parse_validation_resolutions", e)

    from simpletuner.helpers.models.deepfloyd.model import DeepFloydIF

    model = DeepFloydIF.__new__(DeepFloydIF)  # check_user_config reads only self.config; no weights load
    model.config = args
    try:
        model.check_user_config()
    except Exception as e:
        failed("check_user_config", e)

    from simpletuner.helpers.data_backend.config import create_backend_config
    from simpletuner.helpers.data_backend.factory import FactoryRegistry

    try:
        registry = FactoryRegistry(args, accelerator=None, text_encoders=None, tokenizers=None, model=model)
        datasets = registry.load_configuration()
        report["datasets"] = datasets
    except Exception as e:
        failed("FactoryRegistry.load_configuration", e)
        datasets = []
    for ds in datasets:
        try:
            backend = create_backend_config(ds, vars(args))
            report["backend_configs"].append(backend.to_dict())
            backend.validate(vars(args))
        except Exception as e:
            report["dataset_errors"][str(ds.get("id"))] = f"{type(e).__name__}: {e}"
    return report


def timestep_bias(case: dict) -> dict:
    """SimpleTuner's weights for one case, and the timesteps its training step draws with them."""
    from types import SimpleNamespace

    import torch
    from simpletuner.helpers.training.custom_schedule import generate_timestep_weights, segmented_timestep_selection

    args = SimpleNamespace(**{"refiner_training": False, "disable_segmented_timestep_sampling": False} | case["args"])
    try:
        weights = generate_timestep_weights(args, case["num_timesteps"])
    except ValueError as e:
        return {"error": str(e)}
    out = {"weights": weights.tolist(), "draws": None}
    if case.get("batch"):
        torch.manual_seed(0)
        batch, draws = case["batch"], []
        for _ in range(case["draws"]):  # the branch of ModelFoundation's training step (common.py)
            if batch > 1 and not args.disable_segmented_timestep_sampling:
                drawn = segmented_timestep_selection(case["num_timesteps"], batch, weights.clone(), args)
            else:
                drawn = torch.multinomial(weights, batch, replacement=True)
            draws.extend(drawn.tolist())
        out["draws"] = draws
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["--timestep-bias"]:
        print(json.dumps([timestep_bias(case) for case in json.loads(sys.argv[2])]))
        sys.exit(0)
    if sys.argv[1:] == ["--defaults"]:  # the argument parser's defaults, for the mapping module's table
        from simpletuner.helpers.configuration.cmd_args import get_default_config

        print(json.dumps(get_default_config(), default=str))
        sys.exit(0)
    pairs = sys.argv[1:]
    reports = [judge(os.path.abspath(c), os.path.abspath(w)) for c, w in zip(pairs[::2], pairs[1::2])]
    print(json.dumps(reports, default=str))
