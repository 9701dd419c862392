#!/usr/bin/python3
"""Images in, end to end, against PyTorch: generates a PNG and a JPEG (no downloads), runs
`d3-run --model M.onnx --image F --output O` and compares O with torchvision's
Compose([Resize(256), CenterCrop(224), ToTensor(), Normalize(ImageNet mean, std)]) of the same
file through the same PyTorch model (rebuilt with tools/export_models.py's seeded initialisation,
so it is the model the ONNX file was exported from). Passes when every output is within 1e-4
relative (max |d3 - torch| / max |torch|) and the top-1 class agrees.

  check_image_input.py --d3-run BIN --models-dir DIR [--models resnet18,mobilenet_v2] [--seed 2021]
"""
import argparse
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def make_images(directory):
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(7)
    files = []
    # Landscape and portrait, smooth structure plus noise, sizes that need down- and upscaling.
    for name, (h, w) in {"landscape": (300, 400), "portrait": (333, 500), "small": (180, 120)}.items():
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([128 + 100 * np.sin(xx / 17.0), 128 + 100 * np.cos(yy / 23.0), (xx + yy) % 256], axis=-1)
        img = (img + rng.normal(0, 25, img.shape)).clip(0, 255).astype(np.uint8)
        png = os.path.join(directory, name + ".png")
        Image.fromarray(img).save(png)
        files.append(png)
    jpg = os.path.join(directory, "landscape.jpg")
    Image.open(files[0]).save(jpg, quality=90)
    files.append(jpg)
    return files


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--d3-run", required=True)
    ap.add_argument("--models-dir", required=True)
    ap.add_argument("--models", default="resnet18,mobilenet_v2")
    ap.add_argument("--seed", type=int, default=2021)
    args = ap.parse_args()
    import numpy as np
    import torch
    import torchvision
    from PIL import Image
    from torchvision import transforms
    import export_models as em

    torch.set_num_threads(1)
    transform = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                                    transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        images = make_images(tmp)
        for name in args.models.split(","):
            onnx_path = os.path.join(args.models_dir, name + ".onnx")
            if not os.path.exists(onnx_path):
                print(f"check_image_input: FAIL: {onnx_path} missing (the onnx_models_export fixture makes it)")
                return 1
            model = em.build_model(torchvision, name)
            em.reinitialise(torch, torchvision, model, args.seed)
            model.eval()
            for image in images:
                out_path = os.path.join(tmp, "out.bin")
                run = subprocess.run([args.d3_run, "--model", onnx_path, "--image", image, "--repeat", "1",
                                      "--output", out_path], capture_output=True, text=True)
                if run.returncode != 0:
                    print(f"check_image_input: FAIL: d3-run on {image}: {run.stderr.strip()}")
                    failures += 1
                    continue
                d3 = np.fromfile(out_path, dtype="<f4")
                with torch.no_grad():
                    ref = model(transform(Image.open(image).convert("RGB")).unsqueeze(0)).numpy().reshape(-1)
                rel = float(np.abs(d3 - ref).max() / max(np.abs(ref).max(), 1e-30))
                same_top = int(d3.argmax()) == int(ref.argmax())
                ok = d3.shape == ref.shape and rel <= 1e-4 and same_top
                print(f"check_image_input: {name} {os.path.basename(image)}: max relative difference {rel:.2e}, "
                      f"top-1 {int(d3.argmax())} vs torch {int(ref.argmax())}: {'ok' if ok else 'FAIL'}")
                failures += 0 if ok else 1
    print("check_image_input: " + ("passed" if failures == 0 else f"{failures} failure(s)"))
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
