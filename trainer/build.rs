// The worker must find libtorch at run time without LD_LIBRARY_PATH: record its lib folder
// as an rpath in every binary of this package (the worker and the test binaries).
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Ok(libtorch) = std::env::var("LIBTORCH") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{libtorch}/lib");
    }
}
