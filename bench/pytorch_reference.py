"""PyTorch eager reference for `cargo bench -p trainer --bench throughput`: the same training
steps (u8 images on the device, normalise, random flip, forward, cross-entropy, backward, SGD
with momentum 0.9 and weight decay 5e-4) with torchvision's ResNet-18 and timm's DeiT-Small.

    python bench/pytorch_reference.py   # settings as the Rust bench: FORGETLAB_BENCH_*
"""
import os
import time

import timm
import torch
import torch.nn.functional as F
import torchvision


def setting(name, default):
    return os.environ.get(name, default)


def main():
    size = int(setting("FORGETLAB_BENCH_SIZE", "64"))
    batch = int(setting("FORGETLAB_BENCH_BATCH", "32"))
    steps = int(setting("FORGETLAB_BENCH_STEPS", "20"))
    threads = int(setting("FORGETLAB_BENCH_THREADS", str(os.cpu_count())))
    amp = setting("FORGETLAB_BENCH_AMP", "0") == "1"
    torch.set_num_threads(threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    samples = batch * 8
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1)
    for arch in setting("FORGETLAB_BENCH_ARCHS", "resnet18,deit_small").split(","):
        torch.manual_seed(0)
        if arch == "resnet18":
            model = torchvision.models.resnet18(num_classes=10)
        else:
            model = timm.create_model("deit_small_patch16_224", num_classes=10, img_size=size, drop_path_rate=0.0)
        model = model.to(device).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        images = torch.randint(0, 256, (samples, 3, size, size), dtype=torch.uint8, device=device)
        labels = torch.randint(0, 10, (samples,), device=device)
        order = torch.randperm(samples, device=device)
        data_time = total = 0.0
        for step in range(steps + 3):
            started = time.perf_counter()
            index = order[(step % 8) * batch:(step % 8 + 1) * batch]
            x = (images[index].float() / 255.0 - mean) / std
            flip = torch.rand(batch, 1, 1, 1, device=device) < 0.5
            x = torch.where(flip, x.flip(3), x)
            y = labels[index]
            if device.type == "cuda":
                torch.cuda.synchronize()
            data_done = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if step >= 3:
                data_time += data_done - started
                total += time.perf_counter() - started
        rate = steps * batch / total
        print(f"pytorch {arch} size {size} batch {batch} device {device} threads {torch.get_num_threads()} amp {amp}: "
              f"{rate:.1f} img/s, data {100 * data_time / total:.2f}% of step time")


if __name__ == "__main__":
    main()
