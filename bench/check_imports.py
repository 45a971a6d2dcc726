"""Checks `forgetlab-worker predict` against the frameworks the weights come from: builds
torchvision's ResNet-18 and timm's DeiT-Small (random weights, seeded: no download), saves
them as .safetensors, runs both frameworks and forgetlab on the same normalised inputs, and
prints the largest logit difference. A correct import differs by float rounding only.

    FORGETLAB_WORKER=target/debug/forgetlab-worker python bench/check_imports.py
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import timm
import torch
import torchvision
from safetensors.torch import save_file


def check(name, arch, model, size, worker, folder):
    model.eval()
    torch.manual_seed(1)
    x = torch.randn(4, 3, size, size)
    with torch.no_grad():
        reference = model(x).numpy()
    weights = os.path.join(folder, f"{name}.safetensors")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights)
    inputs = os.path.join(folder, f"{name}-x.npy")
    np.save(inputs, x.numpy().astype(np.float32))
    out = os.path.join(folder, f"{name}-logits.npy")
    subprocess.run([worker, "predict", "--arch", arch, "--device", "cpu", "--weights", weights, "--input", inputs, "--out", out], check=True)
    ours = np.load(out)
    diff = float(np.abs(ours - reference).max())
    scale = float(np.abs(reference).max())
    print(f"{name}: logits {ours.shape}, largest difference {diff:.3g} (largest logit {scale:.3g})")
    return diff <= 1e-4 * max(1.0, scale)


def main():
    worker = os.environ.get("FORGETLAB_WORKER", "target/debug/forgetlab-worker")
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        ok = check("torchvision-resnet18", "resnet18", torchvision.models.resnet18(num_classes=7), 64, worker, folder)
        ok &= check("timm-deit_small_patch16_224", "deit_small", timm.create_model("deit_small_patch16_224", num_classes=5), 224, worker, folder)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
