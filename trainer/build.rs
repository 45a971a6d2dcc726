// The worker must find libtorch at run time without LD_LIBRARY_PATH: record its lib folder
// as an rpath in every binary of this package (the worker and the test binaries).
//
// A CUDA libtorch (the set-up writes `cuda` to `$LIBTORCH/variant`, FORGETLAB_TORCH=cuda):
// nothing in the worker calls into libtorch_cuda.so directly (its kernels register themselves
// when it loads), so the linker's --as-needed would drop it and the worker would train on the
// CPU. Link it with --no-as-needed, as tch's own examples are built.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Ok(libtorch) = std::env::var("LIBTORCH") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{libtorch}/lib");
        let variant = format!("{libtorch}/variant");
        println!("cargo:rerun-if-changed={variant}");
        if std::fs::read_to_string(&variant).is_ok_and(|v| v.trim() == "cuda") {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
    }
}
