//! `forgetlab-worker train --config run.toml --out DIR` as a user runs it: Parquet records
//! per epoch, per-sample statistics, epoch metrics; a rerun resumes and changes nothing; a
//! config with a mistake says which field to fix.

use std::process::Command;

use parquet::file::reader::{FileReader, SerializedFileReader};

fn rows(path: &std::path::Path) -> i64 {
    SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap().metadata().file_metadata().num_rows()
}

fn train(config: &std::path::Path, out: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_forgetlab-worker")).arg("train").arg("--config").arg(config).arg("--out").arg(out).output().unwrap()
}

#[test]
fn a_local_run_writes_parquet_records_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("run.toml");
    std::fs::write(
        &config,
        r#"
arch = "small_cnn"
epochs = 2
warmup_epochs = 1
batch_size = 16
lr = 0.05
seed = 3
device = "cpu"
[dataset]
name = "shapes"
format = "synthetic"
path = "classes=3,train_per_class=20,val_per_class=5,size=12,channels=1,seed=1"
"#,
    )
    .unwrap();
    let out = dir.path().join("out");
    let first = train(&config, &out);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    for epoch in 1..=3 {
        assert_eq!(rows(&out.join(format!("records/epoch-{epoch:04}.parquet"))), 60, "epoch {epoch}: one row per sample");
    }
    assert_eq!(rows(&out.join("samples.parquet")), 60);
    let epochs = std::fs::read_to_string(out.join("epochs.csv")).unwrap();
    assert_eq!(epochs.lines().count(), 4, "a header and three epochs:\n{epochs}");
    assert!(epochs.lines().nth(1).unwrap().starts_with("1,warmup,"));
    let records = std::fs::read(out.join("records/epoch-0003.parquet")).unwrap();

    // A rerun finds every epoch checkpointed: nothing is trained or rewritten.
    let second = train(&config, &out);
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    assert_eq!(std::fs::read(out.join("records/epoch-0003.parquet")).unwrap(), records);

    std::fs::write(
        &config,
        "arch = \"vgg\"\nepochs = 1\n[dataset]\nformat = \"synthetic\"\npath = \"classes=2,train_per_class=2,val_per_class=1,size=8,channels=1,seed=1\"\n",
    )
    .unwrap();
    let refused = train(&config, &dir.path().join("other"));
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("arch: unknown value \"vgg\""), "{message}");
}
