"""Writes the ImageNet weights of forgetlab's pretrained architectures as .safetensors, in
the tensor names forgetlab reads (trainer/src/weights.rs): torchvision's for ResNet-18, timm's
for DeiT-Small. Run it through scripts/export-weights, which makes its venv.

--random writes seeded random weights instead (no download); --check WORKER then runs each
file through `WORKER predict` and the framework it came from on the same inputs, and fails
unless the logits agree to float rounding (1e-4 of the largest logit).
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import timm
import torch
import torchvision
from safetensors.torch import save_file

# forgetlab's architecture, the file it is written to, and how the model is made.
MODELS = [
    ("resnet18", "resnet18-imagenet.safetensors", 224,
     lambda pretrained: torchvision.models.resnet18(weights="IMAGENET1K_V1" if pretrained else None)),
    ("deit_small", "deit_small-imagenet.safetensors", 224,
     lambda pretrained: timm.create_model("deit_small_patch16_224.fb_in1k", pretrained=pretrained)),
]


def export(model, path):
    """Every tensor of the state dict, contiguous, under its framework name."""
    tensors = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    partial = path + ".partial"
    save_file(tensors, partial, metadata={"format": "pt"})
    os.replace(partial, path)
    return len(tensors), sum(t.numel() for t in tensors.values())


def check(arch, model, size, path, worker, folder):
    """The largest logit difference between the framework and `worker predict`, and whether
    it is float rounding."""
    model.eval()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, size, size, generator=generator)
    with torch.no_grad():
        reference = model(x).numpy()
    inputs, out = os.path.join(folder, f"{arch}-x.npy"), os.path.join(folder, f"{arch}-logits.npy")
    np.save(inputs, x.numpy().astype(np.float32))
    subprocess.run([worker, "predict", "--arch", arch, "--device", "cpu", "--weights", path, "--input", inputs, "--out", out], check=True)
    ours = np.load(out)
    if ours.shape != reference.shape:
        return f"logits of shape {ours.shape}, expected {reference.shape}", False
    diff, scale = float(np.abs(ours - reference).max()), float(np.abs(reference).max())
    return f"logits {ours.shape}, largest difference {diff:.3g} (largest logit {scale:.3g})", diff <= 1e-4 * max(1.0, scale)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="folder to write to (default: the data directory's datasets/weights)")
    parser.add_argument("--default-out", help=argparse.SUPPRESS)
    parser.add_argument("--random", action="store_true", help="seeded random weights instead of ImageNet's (no download)")
    parser.add_argument("--check", metavar="WORKER", help="check each file's logits against `WORKER predict`")
    parser.add_argument("--arch", choices=[m[0] for m in MODELS], action="append", help="only this architecture (repeatable)")
    args = parser.parse_args()
    out = args.out or args.default_out
    if not out:
        parser.error("--out is needed")
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    ok = True
    with tempfile.TemporaryDirectory() as folder:
        for arch, name, size, make in MODELS:
            if args.arch and arch not in args.arch:
                continue
            path = os.path.join(out, name.replace("imagenet", "random") if args.random else name)
            try:
                model = make(not args.random)
            except Exception as error:  # a failed download names what to fetch
                sys.exit(f"export-weights: could not get {arch}'s ImageNet weights ({error}); "
                         "this needs network access to download.pytorch.org (torchvision) and huggingface.co (timm)")
            count, numbers = export(model, path)
            print(f"{path}: {count} tensors, {numbers / 1e6:.1f} M numbers ({'random, seeded' if args.random else 'ImageNet'})")
            if args.check:
                text, good = check(arch, model, size, path, args.check, folder)
                print(f"  {arch} against `{os.path.basename(args.check)} predict`: {text}: {'ok' if good else 'DIFFERENT'}")
                ok &= good
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
