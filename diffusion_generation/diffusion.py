"""Gaussian diffusion as DiT trains it, and sampling through diffusers' schedulers.

Training (`GaussianDiffusion.training_losses`): T = 1000 linear betas, x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps;
the model predicts eps and, in the other half of its channels, v in [-1, 1] that interpolates the reverse-step
log-variance between the posterior's (beta~_t) and beta_t (improved DDPM). loss = MSE(eps) + L_vb, where L_vb
is the KL between the true posterior q(x_{t-1} | x_t, x_0) and the model's p(x_{t-1} | x_t) (at t = 0 the
negative log-likelihood of x_0), in bits per dimension, computed on a detached mean so that it trains only the
variance. Diffusers has no VB loss; this is it, written once.

At t = 0 improved DDPM (and DiT) use a likelihood discretised to 8-bit pixels in [-1, 1]; latents are neither
8-bit nor bounded, so the continuous Gaussian log-density is used there instead.

Sampling (`sample`): diffusers' DDPMScheduler with variance_type="learned_range" and "linspace" spacing
(DiT's 250-step sampler, taking the whole 2C-channel output), or DDIM (eta 0) on the eps half: diffusers'
DDIMScheduler with its step replaced (`ScheduledDDIMScheduler`), because diffusers' DDIM steps from t to
t - T // steps, which is not the next timestep of a "linspace" schedule (at 50 steps 19 of them land elsewhere);
DiT's ddim_sample_loop steps along its schedule.
Classifier-free guidance runs the conditional and unconditional halves as one doubled batch and guides every
eps channel; the variance comes from the conditional half.
"""
from __future__ import annotations

import math

import torch
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.schedulers.scheduling_ddim import DDIMSchedulerOutput
from tqdm.auto import tqdm

from .config import DiffusionConfig


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)), elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def gaussian_nll(x, mean, logvar) -> torch.Tensor:
    """-log N(x; mean, e^logvar), elementwise, in nats."""
    return 0.5 * (math.log(2 * math.pi) + logvar + (x - mean) ** 2 * torch.exp(-logvar))


def _at(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] shaped (N, 1, 1, ...) to broadcast against `like`, in its dtype."""
    return values.to(like.device)[t].to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def _mean_flat(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=tuple(range(1, x.ndim)))


class GaussianDiffusion:
    def __init__(self, cfg: DiffusionConfig):
        self.num_steps = cfg.train_steps
        betas = torch.linspace(cfg.beta_start, cfg.beta_end, cfg.train_steps, dtype=torch.float64)
        alphas = 1.0 - betas
        ac = torch.cumprod(alphas, 0)
        ac_prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
        self.betas = betas
        self.sqrt_ac, self.sqrt_one_minus_ac = ac.sqrt(), (1 - ac).sqrt()
        self.sqrt_recip_ac, self.sqrt_recipm1_ac = (1 / ac).sqrt(), (1 / ac - 1).sqrt()
        posterior_var = betas * (1 - ac_prev) / (1 - ac)
        # beta~_0 is 0: its log is clipped to beta~_1, as in improved DDPM
        self.posterior_logvar = torch.log(torch.cat([posterior_var[1:2], posterior_var[1:]]))
        self.posterior_coef_x0 = betas * ac_prev.sqrt() / (1 - ac)
        self.posterior_coef_xt = (1 - ac_prev) * alphas.sqrt() / (1 - ac)
        self.log_betas = torch.log(betas)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return _at(self.sqrt_ac, t, x0) * x0 + _at(self.sqrt_one_minus_ac, t, x0) * noise

    def q_posterior(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(x_{t-1} | x_t, x_0)."""
        mean = _at(self.posterior_coef_x0, t, xt) * x0 + _at(self.posterior_coef_xt, t, xt) * xt
        return mean, _at(self.posterior_logvar, t, xt).expand_as(xt)

    def p_mean_logvar(self, eps: torch.Tensor, v: torch.Tensor, xt: torch.Tensor,
                      t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's reverse step: mean from predicted eps, log-variance interpolated by v in [-1, 1]."""
        frac = (v + 1) / 2
        logvar = frac * _at(self.log_betas, t, xt) + (1 - frac) * _at(self.posterior_logvar, t, xt)
        x0 = _at(self.sqrt_recip_ac, t, xt) * xt - _at(self.sqrt_recipm1_ac, t, xt) * eps
        mean, _ = self.q_posterior(x0, xt, t)
        return mean, logvar

    def vb_term(self, x0, xt, t, eps, v) -> torch.Tensor:
        """L_vb per sample in bits/dim: KL(q || p) for t > 0, -log p(x_0 | x_1) for t = 0."""
        true_mean, true_logvar = self.q_posterior(x0, xt, t)
        mean, logvar = self.p_mean_logvar(eps, v, xt, t)
        kl = _mean_flat(normal_kl(true_mean, true_logvar, mean, logvar)) / math.log(2.0)
        nll = _mean_flat(gaussian_nll(x0, mean, logvar)) / math.log(2.0)
        return torch.where(t == 0, nll, kl)

    def training_losses(self, model, x0: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None,
                        noise: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-sample "loss" = "mse" (+ "vb" with a learned variance)."""
        xt = self.q_sample(x0, t, noise)
        out = model(xt, t, y).float()
        channels = x0.shape[1]
        eps = out[:, :channels]
        terms = {"mse": _mean_flat((eps - noise) ** 2)}
        if out.shape[1] == 2 * channels:
            terms["vb"] = self.vb_term(x0, xt, t, eps.detach(), out[:, channels:])
            terms["loss"] = terms["mse"] + terms["vb"]
        else:
            terms["loss"] = terms["mse"]
        return terms


# ----------------------------------------------------------------------------- sampling


class ScheduledDDIMScheduler(DDIMScheduler):
    """diffusers' DDIMScheduler (eta 0) stepping from each timestep to the next one of its own schedule."""

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, eta: float = 0.0, *args,
             return_dict: bool = True, **kwargs):
        if eta:
            raise ValueError("ScheduledDDIMScheduler runs DDIM with eta 0 only")
        t = int(timestep)
        later = self.timesteps[self.timesteps < t]
        a_t = self.alphas_cumprod[t].to(sample.device, torch.float32)
        a_prev = (self.alphas_cumprod[int(later.max())] if len(later) else self.final_alpha_cumprod).to(sample.device,
                                                                                                        torch.float32)
        x0 = (sample - (1 - a_t).sqrt() * model_output) / a_t.sqrt()
        prev = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * model_output
        return DDIMSchedulerOutput(prev_sample=prev, pred_original_sample=x0) if return_dict else (prev,)


def make_scheduler(cfg: DiffusionConfig, learn_sigma: bool, sampler: str | None = None,
                   steps: int | None = None) -> DDPMScheduler | DDIMScheduler:
    """The diffusers scheduler for `sampler` ("ddpm" | "ddim", default cfg.sampler) with its timesteps set."""
    sampler = sampler or cfg.sampler
    common = dict(num_train_timesteps=cfg.train_steps, beta_start=cfg.beta_start, beta_end=cfg.beta_end,
                  beta_schedule="linear", clip_sample=False, timestep_spacing="linspace")
    if sampler == "ddpm":
        scheduler = DDPMScheduler(variance_type="learned_range" if learn_sigma else "fixed_small", **common)
    elif sampler == "ddim":
        scheduler = ScheduledDDIMScheduler(**common)
    else:
        raise ValueError(f"sampler must be 'ddpm' or 'ddim', got {sampler!r}")
    steps = cfg.sampling_steps if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= cfg.train_steps:
        raise ValueError(f"sampling steps must be an integer in [1, {cfg.train_steps}], got {steps!r}")
    scheduler.set_timesteps(steps)
    return scheduler


def guided_output(model, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance on one doubled batch [conditional, unconditional]: eps_u + s (eps_c - eps_u) on every
    eps channel, the variance channels (if any) from the conditional half. s = 1 is conditional sampling."""
    channels = x.shape[1]
    null = torch.full_like(labels, model.config.num_classes)  # the "no class" row of the label table
    out = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null])).float()
    cond, uncond = out.chunk(2)
    eps = uncond[:, :channels] + guidance_scale * (cond[:, :channels] - uncond[:, :channels])
    return torch.cat([eps, cond[:, channels:]], 1)


@torch.no_grad()
def sample(model, scheduler, shape: tuple[int, ...], labels: torch.Tensor | None = None, guidance_scale: float = 1.0,
           generator: torch.Generator | None = None, device=None, progress: bool = False) -> torch.Tensor:
    """Latents (scaled, as the model sees them) of shape `shape` = (N, C, ...) by the scheduler's reverse process.

    labels: (N,) class indices for a class-conditional model (None for an unconditional one). guidance_scale
    != 1 runs classifier-free guidance (guided_output); 1 runs the conditional model alone.
    """
    device = device or next(model.parameters()).device
    channels = shape[1]
    if guidance_scale != 1.0 and labels is None:
        raise ValueError("classifier-free guidance needs a class-conditional model and labels")
    labels = labels.to(device) if labels is not None else None
    x = torch.randn(shape, generator=generator, device=generator.device if generator else device).to(device)
    ddpm = isinstance(scheduler, DDPMScheduler)
    for t in tqdm(scheduler.timesteps, desc="sampling", leave=False, disable=not progress):
        t_batch = t.to(device).expand(shape[0])
        if guidance_scale != 1.0:
            out = guided_output(model, x, t_batch, labels, guidance_scale)
        else:
            out = model(x, t_batch, labels).float()
        # DDPM (learned range) takes eps and the variance channels; DDIM the eps half only
        model_output = out if ddpm else out[:, :channels]
        x = scheduler.step(model_output, t, x, generator=generator).prev_sample
    return x
