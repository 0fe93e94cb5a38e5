"""Checks every model of the project gets, in the spirit of diffusers' tester mixins: a test class sets a few
hooks and inherits the tests.

    class TestMyModel(ModelTesterMixin):
        def make_model(self): return MyModel(tiny_config)
        def make_inputs(self): return {"x": torch.randn(2, 8, 4, 4), "t": torch.tensor([1, 2])}
        # optional: def output(self, out): ...   (the tensor to compare / differentiate; default: out or out[0])
        # optional: def prepare(self, model): ...  (make the model's state complete, e.g. initialise a codebook)
        # optional: zero_initialised = ("adaLN", "final")  (names of parameters that start at zero: randomised
        #           before the gradient check, or everything upstream of them gets no gradient and passes unseen)

The model must have `save_pretrained(folder)` and a classmethod `from_pretrained(folder)` (diffusers' or
transformers'), and be deterministic in eval mode.
"""
from __future__ import annotations

import torch


class ModelTesterMixin:
    def make_model(self):
        raise NotImplementedError("a test class sets make_model()")

    def make_inputs(self) -> dict:
        raise NotImplementedError("a test class sets make_inputs()")

    def output(self, out) -> torch.Tensor:
        if isinstance(out, torch.Tensor):
            return out
        if hasattr(out, "logits"):
            return out.logits
        if hasattr(out, "sample"):
            return out.sample
        return out[0]

    zero_initialised: tuple[str, ...] = ()

    def prepare(self, model) -> None:
        """Bring the model to a complete state before saving (default: nothing to do)."""

    def randomise_zero_initialised(self, model) -> None:
        """Small random values in every parameter whose name holds one of `zero_initialised`."""
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if any(part in name for part in self.zero_initialised):
                    p.copy_(torch.randn(p.shape, generator=g) * 0.1)

    def loss(self, model, out) -> torch.Tensor:
        return self.output(out).float().pow(2).mean()

    def test_save_load_round_trip_gives_identical_outputs(self, tmp_path):
        torch.manual_seed(0)
        model = self.make_model()
        self.prepare(model)
        model.eval()
        model.save_pretrained(tmp_path / "saved")
        assert not list((tmp_path / "saved").glob("*.bin")) and not list((tmp_path / "saved").glob("*.pt"))
        loaded = type(model).from_pretrained(str(tmp_path / "saved")).eval()
        inputs = self.make_inputs()
        with torch.no_grad():
            torch.testing.assert_close(self.output(loaded(**inputs)), self.output(model(**inputs)), rtol=0, atol=0)

    def test_every_parameter_gets_a_gradient(self):
        torch.manual_seed(0)
        model = self.make_model()
        self.prepare(model)
        self.randomise_zero_initialised(model)
        if self.zero_initialised:  # the hook must have found what it names
            assert any(any(part in n for part in self.zero_initialised) for n, _ in model.named_parameters())
        model.train()
        self.loss(model, model(**self.make_inputs())).backward()
        dead = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not torch.any(p.grad != 0))]
        assert not dead, f"parameters without a gradient: {dead}"
