"""A method added as one file plus one registration line (tests/toy_method.py) is picked up
everywhere without other edits: the registry, accounting, the contract tests, the CLI, the demo
and the causal-LM recipes."""
import ranklab
from ranklab.accounting import budget, module_params

from . import test_contract


def test_toy_is_registered_by_its_one_line():
    assert "toy" in ranklab.available_methods()
    assert ranklab.make_config("toy", k=2).k == 2


def test_toy_is_counted_from_its_layer():
    # k (d_in + d_out) for A and B, plus k learned scales
    assert module_params("toy", 48, 32, k=3) == {"A": 3 * 48, "B": 32 * 3, "scales": 3}
    assert budget("toy", [(48, 32)] * 4, k=2)["total"] == 4 * (2 * 80 + 2)


def test_toy_is_in_every_contract_test():
    ids = {case.id for case in test_contract.CASES}
    assert "toy-0" in ids
    contract_tests = [name for name in dir(test_contract) if name.startswith("test_")]
    assert len(contract_tests) >= 6  # each of them is parametrised over CASES
    for name in contract_tests:
        marks = getattr(getattr(test_contract, name), "pytestmark", [])
        assert any(m.name == "parametrize" and m.args[1] is test_contract.CASES for m in marks), name


def test_toy_has_its_cli_flags():
    from ranklab.cli import build_parser
    from ranklab.train.commands import config_from_args

    config = config_from_args(build_parser().parse_args(["train", "--method", "toy", "--k", "2", "--alpha", "4"]))
    assert config.adapter_config().to_dict()["k"] == 2 and config.adapter_config().alpha == 4.0


def test_toy_reaches_the_causal_lm_recipes_and_the_demo():
    from ranklab.demo import demo_methods
    from ranklab.experiments.protocol.causal_lm import causal_lm_configs

    config, = causal_lm_configs("toy", "smoke")
    assert config.adapter_config().k == 4 and config.adapter_config().target_modules == "all-linear"  # at_rank(4)
    assert "toy" in demo_methods()
