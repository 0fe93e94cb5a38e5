"""Metric primitives that training and evaluation share: PSNR, SSIM (reconstruction.py) and LPIPS (lpips.py)."""
