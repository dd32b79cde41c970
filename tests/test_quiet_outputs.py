"""Expected warnings and progress bars of our dependencies are silenced where ranklab calls them;
everything else still shows."""
import warnings

from ranklab.backbones import load_backbone
from ranklab.compat import quiet_peft
from ranklab.train.adalora import AdaLoraOptions, build_adalora


def test_loading_a_backbone_shows_no_weight_loading_bar_and_restores_the_setting(capsys):
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()
    load_backbone("tiny-random", 2)
    assert "Loading weights" not in capsys.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # the user's setting is back


def test_building_peft_adalora_raises_no_deprecation_warning_of_peft_itself():
    model, _ = load_backbone("tiny-random", 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_adalora(model, AdaLoraOptions.from_dict({"init_r": 4, "target_r": 2}), 20, "classifier")
    assert not [w for w in caught if issubclass(w.category, FutureWarning)], [str(w.message) for w in caught]


def test_other_warnings_still_show():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_peft():
            warnings.warn("something else is deprecated", FutureWarning)
    assert [str(w.message) for w in caught] == ["something else is deprecated"]
