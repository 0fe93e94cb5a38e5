"""The diffusion process of diffusion_generation/: schedule, the variational-bound term against closed forms, and
sampling through diffusers' schedulers (guidance, seeds)."""
import math

import pytest
import torch
from diffusers import DDPMScheduler
from torch.distributions import Normal, kl_divergence

from diffusion_generation.config import DiffusionConfig
from diffusion_generation.diffusion import GaussianDiffusion, guided_output, make_scheduler, sample
from diffusion_generation.dit import DiT

CFG = DiffusionConfig()


def closed_form(t: int):
    """beta_t, alpha-bar_t, alpha-bar_{t-1} of 1000 linear betas, from the definition."""
    betas = [1e-4 + (0.02 - 1e-4) * i / 999 for i in range(1000)]
    ab = math.prod(1 - b for b in betas[: t + 1])
    ab_prev = math.prod(1 - b for b in betas[:t])
    return betas[t], ab, ab_prev


def test_schedule_matches_diffusers_ddpm_scheduler():
    d = GaussianDiffusion(CFG)
    s = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
    assert torch.allclose(d.sqrt_ac.float() ** 2, s.alphas_cumprod, rtol=1e-5)


@pytest.mark.parametrize("t", [1, 37, 500, 999])
def test_vb_term_is_the_kl_between_gaussians_in_closed_form(t):
    d = GaussianDiffusion(CFG)
    g = torch.Generator().manual_seed(t)
    x0 = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    eps = noise + 0.3 * torch.randn(x0.shape, generator=g, dtype=torch.float64)  # an imperfect prediction
    v = torch.rand(x0.shape, generator=g, dtype=torch.float64) * 2 - 1
    tt = torch.full((2,), t)
    xt = d.q_sample(x0, tt, noise)
    beta, ab, ab_prev = closed_form(t)
    # q(x_{t-1} | x_t, x_0) and the model's p(x_{t-1} | x_t), from the formulas of DDPM / improved DDPM
    q_var = (1 - ab_prev) / (1 - ab) * beta
    q_mean = math.sqrt(ab_prev) * beta / (1 - ab) * x0 + math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab) * xt
    x0_hat = (xt - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
    p_mean = math.sqrt(ab_prev) * beta / (1 - ab) * x0_hat + math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab) * xt
    p_logvar = (v + 1) / 2 * math.log(beta) + (1 - v) / 2 * math.log(q_var)
    expected = kl_divergence(Normal(q_mean, math.sqrt(q_var)), Normal(p_mean, (0.5 * p_logvar).exp()))
    expected = expected.mean(dim=(1, 2, 3)) / math.log(2)
    assert torch.allclose(d.vb_term(x0, xt, tt, eps, v), expected, rtol=1e-6, atol=1e-9)


def test_vb_term_at_t0_is_the_gaussian_negative_log_likelihood():
    d = GaussianDiffusion(CFG)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64)
    noise, eps = torch.randn(x0.shape, generator=g, dtype=torch.float64), torch.randn(x0.shape, dtype=torch.float64)
    v = torch.zeros_like(x0)
    t = torch.zeros(3, dtype=torch.long)
    xt = d.q_sample(x0, t, noise)
    beta, ab, _ = closed_form(0)
    beta1, ab1, ab1_prev = closed_form(1)
    logvar = 0.5 * math.log(beta) + 0.5 * math.log((1 - ab1_prev) / (1 - ab1) * beta1)  # clipped posterior log-var
    mean = (xt - math.sqrt(1 - ab) * eps) / math.sqrt(ab)  # at t = 0 the posterior mean is x0-hat
    expected = -Normal(mean, math.exp(0.5 * logvar)).log_prob(x0).mean(dim=(1, 2, 3)) / math.log(2)
    assert torch.allclose(d.vb_term(x0, xt, t, eps, v), expected, rtol=1e-6)


def test_vb_term_is_zero_for_the_true_noise_and_posterior_variance():
    d = GaussianDiffusion(CFG)
    x0, noise = torch.randn(4, 8, 4, 4, dtype=torch.float64), torch.randn(4, 8, 4, 4, dtype=torch.float64)
    t = torch.tensor([1, 10, 300, 999])
    xt = d.q_sample(x0, t, noise)
    vb = d.vb_term(x0, xt, t, noise, -torch.ones_like(x0))
    assert vb.abs().max() < 1e-9


def test_training_loss_trains_the_variance_only_through_vb():
    torch.manual_seed(0)
    model = DiT(in_channels=4, patch_size=2, hidden_size=32, depth=1, num_heads=2, num_classes=3)
    with torch.no_grad():
        model.final.linear.weight.normal_(0, 0.1)
    x0 = torch.randn(4, 4, 4, 4)
    t, y = torch.tensor([5, 50, 500, 900]), torch.tensor([0, 1, 2, 0])
    terms = GaussianDiffusion(CFG).training_losses(model, x0, t, y, torch.randn_like(x0))
    assert set(terms) == {"mse", "vb", "loss"} and torch.allclose(terms["loss"], terms["mse"] + terms["vb"])
    # the MSE has no gradient through the variance channels: the vb gradient reaches only them (detached mean)
    w = model.final.linear.weight  # rows ordered (p, q, c): channel c < 4 is eps, >= 4 the variance
    eps_rows = torch.tensor([(i % 8) < 4 for i in range(w.shape[0])])
    (g_vb,) = torch.autograd.grad(terms["vb"].mean(), w, retain_graph=True)
    (g_mse,) = torch.autograd.grad(terms["mse"].mean(), w)
    assert g_vb[eps_rows].abs().max() == 0 and g_vb[~eps_rows].abs().max() > 0
    assert g_mse[~eps_rows].abs().max() == 0 and g_mse[eps_rows].abs().max() > 0


def _model(num_classes=4):
    torch.manual_seed(0)
    model = DiT(in_channels=4, patch_size=2, hidden_size=32, depth=2, num_heads=2, num_classes=num_classes)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def test_guidance_scale_one_equals_conditional_and_zero_unconditional():
    model = _model()
    x, t, y = torch.randn(3, 4, 4, 6), torch.tensor([10, 400, 999]), torch.tensor([0, 2, 3])
    with torch.no_grad():
        cond = model(x, t, y)
        uncond = model(x, t, torch.full_like(y, 4))
        assert torch.allclose(guided_output(model, x, t, y, 1.0), cond, atol=1e-5)
        zero = guided_output(model, x, t, y, 0.0)
        assert torch.allclose(zero[:, :4], uncond[:, :4], atol=1e-5)
        assert torch.allclose(zero[:, 4:], cond[:, 4:], atol=1e-5)  # variance from the conditional half
        three = guided_output(model, x, t, y, 3.0)
        assert torch.allclose(three[:, :4], uncond[:, :4] + 3 * (cond[:, :4] - uncond[:, :4]), atol=1e-5)


def test_cfg_sampling_at_scale_one_equals_conditional_sampling():
    model = _model()
    labels = torch.tensor([1, 3])
    a = sample(model, make_scheduler(CFG, True, "ddpm", 8), (2, 4, 4, 4), labels, 1.0, torch.Generator().manual_seed(0))
    # the guided path with s = 1 + tiny: the same samples up to that difference
    b = sample(model, make_scheduler(CFG, True, "ddpm", 8), (2, 4, 4, 4), labels, 1.0 + 1e-7,
               torch.Generator().manual_seed(0))
    assert torch.allclose(a, b, atol=1e-4)
    c = sample(model, make_scheduler(CFG, True, "ddpm", 8), (2, 4, 4, 4), labels, 4.0, torch.Generator().manual_seed(0))
    assert (a - c).abs().max() > 1e-3


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_same_seed_same_samples(sampler):
    model = _model()
    def run(seed):
        return sample(model, make_scheduler(CFG, True, sampler, 10), (2, 4, 4, 6), torch.tensor([0, 1]), 2.0,
                      torch.Generator().manual_seed(seed))

    a, b, c = run(0), run(0), run(1)
    assert a.shape == (2, 4, 4, 6) and torch.isfinite(a).all()
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3


def test_ddpm_uses_the_learned_variance_and_linspace_spacing():
    s = make_scheduler(CFG, True, "ddpm", 250)
    assert s.config.variance_type == "learned_range" and s.timesteps[0] == 999 and s.timesteps[-1] == 0
    assert len(s.timesteps) == 250
    model = _model()
    # the variance channels change DDPM samples (they are used), not DDIM ones (eps only)
    shifted = _model()
    with torch.no_grad():
        out = shifted.final.linear
        rows = torch.tensor([(i % 8) >= 4 for i in range(out.weight.shape[0])])
        out.bias[rows] += 0.5
    for sampler, differs in (("ddpm", True), ("ddim", False)):
        a = sample(model, make_scheduler(CFG, True, sampler, 5), (1, 4, 4, 4), torch.tensor([1]), 1.0,
                   torch.Generator().manual_seed(0))
        b = sample(shifted, make_scheduler(CFG, True, sampler, 5), (1, 4, 4, 4), torch.tensor([1]), 1.0,
                   torch.Generator().manual_seed(0))
        assert ((a - b).abs().max() > 1e-4) == differs


def test_unconditional_model_refuses_guidance():
    model = _model(num_classes=0)
    x = sample(model, make_scheduler(CFG, True, "ddim", 3), (2, 4, 4, 4), None, 1.0, torch.Generator().manual_seed(0))
    assert x.shape == (2, 4, 4, 4)
    with pytest.raises(ValueError, match="guidance"):
        sample(model, make_scheduler(CFG, True, "ddim", 3), (2, 4, 4, 4), None, 2.0)


def test_ddim_steps_to_the_next_timestep_of_its_schedule():
    """With the exact noise of a known x0 as the model's output, one DDIM step (eta 0) must land on the noise level
    of the next scheduled timestep; diffusers' own step goes to t - T // steps, which a linspace schedule of 50
    steps is not for many of them."""
    s = make_scheduler(CFG, True, "ddim", 50)
    steps = s.timesteps.tolist()
    assert sum(a - b != CFG.train_steps // 50 for a, b in zip(steps, steps[1:])) > 0  # the case that went wrong
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 4, 4, 4, generator=g), torch.randn(2, 4, 4, 4, generator=g)
    noisy = lambda t: s.alphas_cumprod[t].sqrt() * x0 + (1 - s.alphas_cumprod[t]).sqrt() * eps  # noqa: E731
    for t, t_next in zip(steps, steps[1:]):
        torch.testing.assert_close(s.step(eps, torch.tensor(t), noisy(t)).prev_sample, noisy(t_next),
                                   atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(s.step(eps, torch.tensor(steps[-1]), noisy(steps[-1])).prev_sample, x0,
                               atol=1e-5, rtol=1e-5)
