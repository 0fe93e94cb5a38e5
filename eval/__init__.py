"""Evaluation: reconstruction metrics (PSNR, SSIM, LPIPS) and distribution metrics."""
