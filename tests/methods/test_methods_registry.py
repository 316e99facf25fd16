"""The method registry: names, aliases, option errors, self-descriptions and the `recon methods` listing."""

from __future__ import annotations

import json

import pytest
import torch

from recon import methods
from recon.cli import main
from recon.methods import REGISTRY, UnknownMethodError

METHODS = sorted(REGISTRY)


@pytest.mark.parametrize("spelling, name", [
    ("joint", "joint"), ("Baseline", "joint"), ("PCGrad", "pcgrad"), ("CAGrad", "cagrad"),
    ("Graddrop", "graddrop"), ("GradDrop", "graddrop"), ("MGDA", "mgda"), ("MGD", "mgda"), ("mgd", "mgda"),
])
def test_resolve_paper_spellings(spelling, name):
    assert methods.resolve(spelling).name == name
    assert isinstance(methods.build(spelling), REGISTRY[name].cls)


def test_unknown_method_lists_registered():
    with pytest.raises(UnknownMethodError, match="unknown method 'pcgrd'; registered methods: cagrad, graddrop, "
                                                  "joint, mgda, pcgrad; did you mean 'pcgrad'"):
        methods.build("pcgrd")


def test_unknown_option_lists_options():
    with pytest.raises(UnknownMethodError, match="method 'cagrad' has no option 'beta'; its options: alpha, rescale"):
        methods.build("cagrad", beta=1)
    with pytest.raises(UnknownMethodError, match="method 'mgda' has no option 'alpha'; its options: none"):
        methods.build("mgda", alpha=0.5)


@pytest.mark.parametrize("name", METHODS)
def test_spec_describes_itself(name):
    spec = REGISTRY[name]
    assert spec.summary
    assert spec.paper
    for option_name, option in spec.options.items():
        assert option.help, option_name
        assert isinstance(option.default, option.type), option_name


@pytest.mark.parametrize("name", [n for n in METHODS if n != "joint"])
def test_method_cites_paper(name):
    spec = REGISTRY[name]
    arxiv = spec.paper.split("arXiv ")[1]
    assert arxiv in spec.cls.__doc__


@pytest.mark.parametrize("name", METHODS)
def test_default_options_build(name):
    spec = REGISTRY[name]
    method = methods.build(name, **{key: option.default for key, option in spec.options.items()})
    assert isinstance(method, spec.cls)


@pytest.mark.parametrize("name", METHODS)
def test_generator_accepted_by_every_method(name):
    # The trainer passes its generator whatever the method; methods that draw nothing ignore it.
    method = methods.build(name, generator=torch.Generator().manual_seed(0))
    assert (method.state_dict() != {}) == REGISTRY[name].random


def test_methods_command_lists_everything(capsys):
    assert main(["methods"]) == 0
    output = capsys.readouterr().out

    for name, spec in REGISTRY.items():
        assert name in output
        assert spec.paper in output
        for option_name, option in spec.options.items():
            assert f"{option_name} ({option.type.__name__}, default {option.default!r}): {option.help}" in output
    assert "mgda (aliases: mgd)" in output
    assert "arXiv 2110.14048" in output


def test_methods_command_json(capsys):
    assert main(["methods", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)

    assert sorted(listing) == METHODS
    assert listing["cagrad"]["options"]["alpha"] == {
        "type": "float", "default": 0.5, "help": REGISTRY["cagrad"].options["alpha"].help}
    assert listing["pcgrad"]["random"] is True
    assert listing["joint"]["aliases"] == ["baseline"]
