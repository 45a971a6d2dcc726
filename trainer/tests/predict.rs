//! `forgetlab-worker predict` as a user runs it: weights saved in the torchvision scheme,
//! inputs in a .npy file, logits back in a .npy file that equal an in-process forward pass.

use std::process::Command;

use protocol::Arch;
use tch::{Device, Kind, Tensor, nn};
use trainer::models::{Shape, build};

#[test]
fn predict_writes_the_logits_of_the_imported_weights() {
    let dir = tempfile::tempdir().unwrap();
    tch::manual_seed(9);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = build(Arch::Resnet18, &vs.root(), Shape { channels: 3, classes: 7, image_size: 32, drop_path: 0.0 }).unwrap();
    let weights = dir.path().join("resnet18.safetensors");
    trainer::weights::save(&vs, &weights).unwrap();
    let x = Tensor::randn([5, 3, 32, 32], (Kind::Float, Device::Cpu));
    let values = Vec::<f32>::try_from(x.flatten(0, -1)).unwrap();
    let input = dir.path().join("x.npy");
    std::fs::write(&input, datasets::encode_f32_array(&[5, 3, 32, 32], &values)).unwrap();
    let out = dir.path().join("logits.npy");

    let predict = || {
        Command::new(env!("CARGO_BIN_EXE_forgetlab-worker"))
            .args(["predict", "--arch", "resnet18", "--device", "cpu", "--weights"])
            .arg(&weights)
            .arg("--input")
            .arg(&input)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
    };
    let status = predict();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let (shape, logits) = datasets::read_f32_array(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(shape, vec![5, 7], "the class count comes from the weights' head");
    let expected = Vec::<f32>::try_from(tch::no_grad(|| model.forward_t(&x, false)).flatten(0, -1)).unwrap();
    for (a, b) in logits.iter().zip(&expected) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }

    // Inputs of the wrong rank are refused with what was expected.
    std::fs::write(&input, datasets::encode_f32_array(&[5, 3], &values[..15])).unwrap();
    let refused = predict();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("expected images as [N, C, H, W]"));
}
