//! The dataset readers fuzzed over mutated real files (issue 19, item 4): Fashion-MNIST's
//! t10k IDX files (their first images, plain and gzipped), MedMNIST-shaped `.npz` archives
//! of those pixels (stored and deflated), PNG and JPEG files in ImageFolder and CUB layouts,
//! and synthetic specs. Each case mutates one file of one fixture (bit flips, bytes
//! overwritten at header offsets, truncation, length fields inflated, list lines rewritten),
//! then inspects and loads it confined to its folder.
//!
//! Every call must return, `Ok` or `Err`: a panic is reported with the case that made it,
//! and an abort (a failed allocation) ends the run. The memory a case allocates on top of
//! what was live before it is measured by a counting allocator and must stay within what
//! the readers promise: no more than deflate's 1032:1 over the bytes present, plus slack.
//!
//! `FORGETLAB_FUZZ_CASES` sets the number of cases (default 1200), `FORGETLAB_FUZZ_SEED`
//! the first case's seed (default 0): case `n` is reproducible alone from seed `n`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use datasets::{Format, Options, Roots, Source, Split, inspect, load};

/// Counts live bytes and their peak, for every thread.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
    LARGEST.fetch_max(bytes, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            grew(layout.size());
        }
        pointer
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let pointer = unsafe { System.alloc_zeroed(layout) };
        if !pointer.is_null() {
            grew(layout.size());
        }
        pointer
    }
    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        unsafe { System.dealloc(pointer, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Held by each test for its whole run, so that one test's allocations do not count in
/// another's peak.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// One stream per case, from forgetlab's one seeded generator.
struct Rng(dynamics::rng::SplitMix64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

/// What a file is, for the mutations that know its layout.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Idx,
    Gzip,
    Zip,
    Png,
    Jpeg,
    Text,
}

/// A dataset on disk: its files (relative path, bytes, kind) and how to read it.
#[derive(Clone)]
struct Fixture {
    name: &'static str,
    format: Format,
    /// Relative to the case folder: where the source points.
    source: &'static str,
    files: Vec<(String, Vec<u8>, Kind)>,
}

fn gunzip(path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()).read_to_end(&mut out).unwrap();
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// The first `count` images and labels of Fashion-MNIST's t10k files (as shipped by Debian's
/// dataset-fashion-mnist), or generated ones of the same shape where it is not installed.
fn real_pixels(count: usize) -> (Vec<u8>, Vec<u8>, bool) {
    let images = format!("{FASHION_MNIST}/t10k-images-idx3-ubyte.gz");
    let labels = format!("{FASHION_MNIST}/t10k-labels-idx1-ubyte.gz");
    if Path::new(&images).is_file() && Path::new(&labels).is_file() {
        let images = gunzip(&images);
        let labels = gunzip(&labels);
        (images[16..16 + count * 784].to_vec(), labels[8..8 + count].to_vec(), true)
    } else {
        let pixels = (0..count * 784).map(|i| (i * 37 % 251) as u8).collect();
        (pixels, (0..count).map(|i| (i % 10) as u8).collect(), false)
    }
}

fn npy(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let shape_text = match shape {
        [single] => format!("({single},)"),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    npy_with_shape(descr, &shape_text, data)
}

/// A version 1 `.npy` file whose header says `shape` as written (hostile ones included).
fn npy_with_shape(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn npz(members: &[(&str, Vec<u8>)], stored: bool) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let method = if stored { zip::CompressionMethod::Stored } else { zip::CompressionMethod::Deflated };
    for (name, bytes) in members {
        let options = zip::write::SimpleFileOptions::default().compression_method(method).large_file(stored);
        zip.start_file(format!("{name}.npy"), options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fn encoded(width: u32, height: u32, colour: bool, seed: u8, format: image::ImageFormat) -> Vec<u8> {
    let channels = if colour { 3 } else { 1 };
    let pixels: Vec<u8> = (0..width * height * channels).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed.wrapping_mul(17))).collect();
    let image = if colour {
        image::DynamicImage::ImageRgb8(image::RgbImage::from_raw(width, height, pixels).unwrap())
    } else {
        image::DynamicImage::ImageLuma8(image::GrayImage::from_raw(width, height, pixels).unwrap())
    };
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn fixtures() -> (Vec<Fixture>, bool) {
    let (pixels, labels, real) = real_pixels(48);
    let idx = |dims: &[u32], data: &[u8]| {
        let mut out = vec![0, 0, 0x08, dims.len() as u8];
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(data);
        out
    };
    let idx_files = |gzipped: bool| -> Vec<(String, Vec<u8>, Kind)> {
        let (train, val) = (&pixels[..32 * 784], &pixels[32 * 784..]);
        let files = [
            ("train-images-idx3-ubyte", idx(&[32, 28, 28], train)),
            ("train-labels-idx1-ubyte", idx(&[32], &labels[..32])),
            ("t10k-images-idx3-ubyte", idx(&[16, 28, 28], val)),
            ("t10k-labels-idx1-ubyte", idx(&[16], &labels[32..])),
        ];
        files
            .into_iter()
            .map(|(name, bytes)| match gzipped {
                true => (format!("idx/{name}.gz"), gzip(&bytes), Kind::Gzip),
                false => (format!("idx/{name}"), bytes, Kind::Idx),
            })
            .collect()
    };
    let npz_file = |stored: bool| {
        let members = [
            ("train_images", npy("|u1", &[24, 28, 28], &pixels[..24 * 784])),
            ("train_labels", npy("<i8", &[24, 1], &labels[..24].iter().flat_map(|&l| i64::from(l).to_le_bytes()).collect::<Vec<_>>())),
            ("val_images", npy("|u1", &[16, 28, 28], &pixels[24 * 784..40 * 784])),
            ("val_labels", npy("|u1", &[16], &labels[24..40])),
            ("test_images", npy("|u1", &[8, 28, 28], &pixels[40 * 784..])),
            ("test_labels", npy("<u2", &[8], &labels[40..].iter().flat_map(|&l| u16::from(l).to_le_bytes()).collect::<Vec<_>>())),
        ];
        vec![("data.npz".to_owned(), npz(&members, stored), Kind::Zip)]
    };
    let (png, jpeg) = (image::ImageFormat::Png, image::ImageFormat::Jpeg);
    let folder = vec![
        ("folder/train/cat/a.png".to_owned(), encoded(12, 10, true, 1, png), Kind::Png),
        ("folder/train/cat/b.jpg".to_owned(), encoded(16, 12, true, 2, jpeg), Kind::Jpeg),
        ("folder/train/dog/c.png".to_owned(), encoded(9, 9, false, 3, png), Kind::Png),
        ("folder/train/dog/deep/d.jpeg".to_owned(), encoded(10, 14, false, 4, jpeg), Kind::Jpeg),
        ("folder/val/cat/e.png".to_owned(), encoded(8, 8, true, 5, png), Kind::Png),
        ("folder/val/dog/f.jpg".to_owned(), encoded(11, 13, true, 6, jpeg), Kind::Jpeg),
    ];
    let mut split_file = folder.clone();
    split_file.push((
        "folder/split.csv".to_owned(),
        b"path,split\n# by hand\ntrain/cat/a.png,train\ntrain/dog/c.png,val\nval/dog/f.jpg,test\ntrain/cat/b.jpg,train\n".to_vec(),
        Kind::Text,
    ));
    let mut cub = Vec::new();
    let (mut listing, mut classes, mut splits) = (String::new(), String::new(), String::new());
    for (id, (path, class, train)) in [("001.A/a_1.jpg", 1, 1), ("001.A/a_2.png", 1, 0), ("002.B/b_1.jpg", 2, 1), ("002.B/b_2.jpg", 2, 0)].iter().enumerate() {
        let id = id + 1;
        let format = if path.ends_with("png") { png } else { jpeg };
        cub.push((
            format!("cub/images/{path}"),
            encoded(10 + id as u32, 8 + id as u32, true, id as u8, format),
            if format == png { Kind::Png } else { Kind::Jpeg },
        ));
        listing.push_str(&format!("{id} {path}\n"));
        classes.push_str(&format!("{id} {class}\n"));
        splits.push_str(&format!("{id} {train}\n"));
    }
    cub.push(("cub/images.txt".to_owned(), listing.into_bytes(), Kind::Text));
    cub.push(("cub/image_class_labels.txt".to_owned(), classes.into_bytes(), Kind::Text));
    cub.push(("cub/train_test_split.txt".to_owned(), splits.into_bytes(), Kind::Text));
    cub.push(("cub/classes.txt".to_owned(), b"1 001.A\n2 002.B\n".to_vec(), Kind::Text));
    let fixtures = vec![
        Fixture { name: "idx", format: Format::Idx, source: "idx", files: idx_files(false) },
        Fixture { name: "idx.gz", format: Format::Idx, source: "idx", files: idx_files(true) },
        Fixture { name: "npz stored", format: Format::Npz, source: "data.npz", files: npz_file(true) },
        Fixture { name: "npz deflated", format: Format::Npz, source: "data.npz", files: npz_file(false) },
        Fixture { name: "image folder", format: Format::ImageFolder, source: "folder", files: folder },
        Fixture { name: "image folder + split.csv", format: Format::ImageFolder, source: "folder", files: split_file },
        Fixture { name: "cub", format: Format::Cub, source: "cub", files: cub },
    ];
    (fixtures, real)
}

/// Offsets of the header fields that say how much follows, by kind of file.
fn length_fields(kind: Kind, bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut fields = Vec::new();
    match kind {
        // The dimension count and up to three big-endian dimension sizes.
        Kind::Idx => fields.extend([(3, 1), (4, 4), (8, 4), (12, 4)]),
        // PNG: IHDR width and height (the CRC is fixed up below), then chunk lengths.
        Kind::Png => {
            fields.extend([(16, 4), (20, 4), (24, 1), (25, 1)]);
            let mut at = 8;
            while at + 8 <= bytes.len() {
                fields.push((at, 4));
                let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
                at = at.saturating_add(12).saturating_add(len);
            }
        }
        // JPEG: the length of every marker segment, and SOF's height and width.
        Kind::Jpeg => {
            for at in 0..bytes.len().saturating_sub(8) {
                if bytes[at] == 0xff && (0xc0..=0xfe).contains(&bytes[at + 1]) && bytes[at + 1] != 0xd8 {
                    fields.push((at + 2, 2));
                    if bytes[at + 1] == 0xc0 {
                        fields.extend([(at + 5, 2), (at + 7, 2)]);
                    }
                }
            }
        }
        // Zip: sizes in every local header and central directory entry, and the EOCD counts.
        Kind::Zip => {
            for at in 0..bytes.len().saturating_sub(4) {
                match &bytes[at..at + 4] {
                    b"PK\x03\x04" => fields.extend([(at + 18, 4), (at + 22, 4), (at + 26, 2), (at + 28, 2)]),
                    b"PK\x01\x02" => fields.extend([(at + 20, 4), (at + 24, 4), (at + 28, 2), (at + 42, 4)]),
                    b"PK\x05\x06" => fields.extend([(at + 8, 2), (at + 10, 2), (at + 12, 4), (at + 16, 4)]),
                    b"PK\x06\x06" => fields.extend([(at + 32, 8), (at + 40, 8), (at + 48, 8)]),
                    b"\x93NUM" => fields.extend([(at + 8, 2)]),
                    _ => {}
                }
            }
            // Zip64 extra fields hold the real sizes of NumPy's stored members.
            for at in 0..bytes.len().saturating_sub(4) {
                if bytes[at..at + 2] == [0x01, 0x00] && bytes[at + 2] >= 8 && bytes[at + 3] == 0 {
                    fields.extend([(at + 4, 8), (at + 12, 8)]);
                }
            }
        }
        // gzip: the ISIZE trailer.
        Kind::Gzip => fields.push((bytes.len().saturating_sub(4), 4)),
        Kind::Text => {}
    }
    fields.retain(|&(at, width)| at + width <= bytes.len());
    fields
}

const BIG: [u64; 8] = [0, 1, 0x7f, 0xff, 0xffff, 0x7fff_ffff, 0xffff_ffff, u64::MAX];

/// One mutation of `bytes`, described.
fn mutate(rng: &mut Rng, kind: Kind, bytes: &mut Vec<u8>) -> String {
    if bytes.is_empty() {
        bytes.push(rng.next() as u8);
        return "grew an empty file".into();
    }
    let fields = length_fields(kind, bytes);
    match rng.below(if kind == Kind::Text { 8 } else { 6 }) {
        0 => {
            let at = rng.below(bytes.len() * 8);
            bytes[at / 8] ^= 1 << (at % 8);
            format!("flipped bit {at}")
        }
        1 => {
            let at = rng.below(bytes.len().min(64));
            let value = rng.next() as u8;
            bytes[at] = value;
            format!("byte {at} (header) = {value:#04x}")
        }
        2 => {
            let len = rng.below(bytes.len());
            bytes.truncate(len);
            format!("truncated to {len} bytes")
        }
        3 | 4 if !fields.is_empty() => {
            let &(at, width) = rng.pick(&fields);
            let value = if rng.below(2) == 0 { *rng.pick(&BIG) } else { rng.next() >> rng.below(64) };
            // Big-endian for IDX, PNG and JPEG; little-endian for zip, npy and gzip.
            let field: Vec<u8> = match kind {
                Kind::Idx | Kind::Png | Kind::Jpeg => value.to_be_bytes()[8 - width..].to_vec(),
                _ => value.to_le_bytes()[..width].to_vec(),
            };
            bytes[at..at + width].copy_from_slice(&field);
            if kind == Kind::Png && at < 33 && bytes.len() >= 33 {
                let crc = crc32fast::hash(&bytes[12..29]);
                bytes[29..33].copy_from_slice(&crc.to_be_bytes());
            }
            format!("length field at {at} ({width} bytes) = {value:#x}")
        }
        5 if kind == Kind::Zip => mutate_npy_header(rng, bytes),
        5 if kind == Kind::Idx || kind == Kind::Gzip => mutate_idx_dims(rng, kind, bytes),
        _ if kind == Kind::Text => {
            let lines: Vec<&str> = std::str::from_utf8(bytes).unwrap_or("").lines().collect();
            let line = rng.below(lines.len().max(1));
            let replacement = *rng.pick(&[
                "1 ../../../../etc/passwd",
                "2 /etc/hostname",
                "../../../etc/hostname,train",
                "/etc/passwd,val",
                "18446744073709551616 001.A/a_1.jpg",
                "1 4294967296",
                "3 001.A/a_1.jpg",
                "",
                "1",
                "\u{0} \u{0}",
            ]);
            let mut rebuilt: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            if line < rebuilt.len() {
                rebuilt[line] = replacement.to_owned();
            } else {
                rebuilt.push(replacement.to_owned());
            }
            *bytes = rebuilt.join("\n").into_bytes();
            format!("line {} = {replacement:?}", line + 1)
        }
        _ => {
            let start = rng.below(bytes.len());
            let len = rng.below(16).min(bytes.len() - start);
            for byte in &mut bytes[start..start + len] {
                *byte = rng.next() as u8;
            }
            format!("{len} random bytes at {start}")
        }
    }
}

/// Shape entries and dtypes that headers should not be trusted with.
const SHAPES: [&str; 10] = [
    "(1099511627776, 28, 28)",
    "(18446744073709551615, 28, 28)",
    "(4611686018427387904, 4611686018427387904)",
    "(2, 0, 28)",
    "(0, 100000, 100000)",
    "()",
    "(2305843009213693952,)",
    "(16, 28, 28, 3)",
    "(16, 28, 28, 2)",
    "(-1, 28, 28)",
];
const DTYPES: [&str; 5] = ["|u1", "<i8", ">u4", "<f4", "|b1"];

/// Rewrites one member's npy header (a shape and dtype from [`SHAPES`] and [`DTYPES`], or
/// a header length inflated) and writes the archive again, so that the zip around it stays
/// valid and the header itself is what is tested.
fn mutate_npy_header(rng: &mut Rng, bytes: &mut Vec<u8>) -> String {
    let Ok(mut archive) = zip::ZipArchive::new(std::io::Cursor::new(bytes.clone())) else { return "not a zip any more".into() };
    let mut members = Vec::new();
    let mut stored = true;
    for index in 0..archive.len() {
        let Ok(mut member) = archive.by_index(index) else { return "unreadable member".into() };
        stored &= member.compression() == zip::CompressionMethod::Stored;
        let mut data = Vec::new();
        if member.read_to_end(&mut data).is_err() {
            return "unreadable member".into();
        }
        let Ok(name) = member.name() else { return "unnamed member".into() };
        members.push((name.trim_end_matches(".npy").to_owned(), data));
    }
    if members.is_empty() {
        return "empty archive".into();
    }
    let target = rng.below(members.len());
    let (name, data) = &mut members[target];
    let header_len = data.get(8..10).map_or(0, |len| u16::from_le_bytes([len[0], len[1]]) as usize);
    let body = data.get(10 + header_len..).unwrap_or_default().to_vec();
    let described = if rng.below(4) == 0 {
        let claimed = *rng.pick(&[0u16, 1, 0x7fff, 0xffff]);
        if data.len() >= 10 {
            data[8..10].copy_from_slice(&claimed.to_le_bytes());
        }
        format!("{name}: header length = {claimed}")
    } else {
        let (shape, descr) = (*rng.pick(&SHAPES), *rng.pick(&DTYPES));
        *data = npy_with_shape(descr, shape, &body);
        format!("{name}: shape {shape}, dtype {descr}")
    };
    let members: Vec<(&str, Vec<u8>)> = members.iter().map(|(name, data)| (name.as_str(), data.clone())).collect();
    *bytes = npz(&members, stored);
    described
}

/// Rewrites an IDX header's dimensions (gzipped again when it was), keeping or cutting the
/// data, so that the claim is tested rather than the gzip stream.
fn mutate_idx_dims(rng: &mut Rng, kind: Kind, bytes: &mut Vec<u8>) -> String {
    let mut raw = if kind == Kind::Gzip {
        let mut raw = Vec::new();
        if flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut raw).is_err() {
            return "not gzip any more".into();
        }
        raw
    } else {
        bytes.clone()
    };
    if raw.len() < 8 {
        return "too short for a header".into();
    }
    let dims = usize::from(raw[3]).min(3);
    let start = 4 + 4 * dims;
    let choice =
        *rng.pick(&[[u32::MAX, u32::MAX, u32::MAX], [2, 28, 0], [0, 100_000, 100_000], [1, 1, u32::MAX], [60_000, 28, 28], [1 << 31, 1, 1], [0, 0, 0]]);
    for (d, value) in choice.iter().take(dims).enumerate() {
        if 8 + 4 * d <= raw.len() {
            raw[4 + 4 * d..8 + 4 * d].copy_from_slice(&value.to_be_bytes());
        }
    }
    let expected = choice.iter().take(dims).fold(1u64, |product, &d| product.saturating_mul(u64::from(d)));
    if expected < (raw.len().saturating_sub(start)) as u64 && rng.below(2) == 0 {
        raw.truncate(start + expected as usize);
    }
    *bytes = if kind == Kind::Gzip { gzip(&raw) } else { raw };
    format!("dims = {:?}", &choice[..dims])
}

fn write_fixture(dir: &Path, files: &[(String, Vec<u8>, Kind)]) -> usize {
    let mut total = 0;
    for (relative, bytes, _) in files {
        let path = dir.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        total += bytes.len();
    }
    total
}

/// What a case found wrong.
struct Finding {
    case: u64,
    what: String,
}

/// Runs `call` and reports a panic as a finding.
fn survive<T>(case: u64, call: &str, findings: &mut Vec<Finding>, run: impl FnOnce() -> T) -> Option<T> {
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(value) => Some(value),
        Err(panic) => {
            let message = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
            findings.push(Finding { case, what: format!("{call} panicked: {}", message.unwrap_or_default()) });
            None
        }
    }
}

#[test]
fn mutated_real_files_never_panic_abort_or_allocate_past_their_bytes() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let cases: u64 = std::env::var("FORGETLAB_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1200);
    let first_seed: u64 = std::env::var("FORGETLAB_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let (fixtures, real) = fixtures();
    let work = tempfile::tempdir().unwrap();
    let roots = Roots::new([work.path()]);
    let started = std::time::Instant::now();
    let mut findings = Vec::new();
    let (mut oks, mut errs) = (0usize, 0usize);
    let mut worst = (0usize, 0usize, 0u64); // (bytes over the bound's base, input bytes, case)

    for case in first_seed..first_seed + cases {
        let mut rng = Rng(dynamics::rng::SplitMix64::new(case));
        let fixture = &fixtures[rng.below(fixtures.len())];
        let mut files = fixture.files.clone();
        let target = rng.below(files.len());
        let mut described = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let (name, bytes, kind) = &mut files[target];
            described.push(format!("{name}: {}", mutate(&mut rng, *kind, bytes)));
        }
        let dir = work.path().join(format!("case-{case}"));
        let input_bytes = write_fixture(&dir, &files);
        let options = Options {
            val_fraction: 0.25,
            seed: case,
            bad_images: if case % 2 == 0 { Default::default() } else { datasets::BadImages::Skip },
            group_pattern: None,
        };
        let source = Source::new(fixture.format, dir.join(fixture.source)).with_options(options).confined_to(roots.clone());

        let baseline = LIVE.load(Ordering::Relaxed);
        PEAK.store(baseline, Ordering::Relaxed);
        let mut results = Vec::new();
        let before = findings.len();
        results.extend(survive(case, "inspect", &mut findings, || inspect(&source).map(|_| ())));
        for (split, size) in [(Split::Train, None), (Split::Val, Some(8)), (Split::Test, Some(5))] {
            results.extend(survive(case, &format!("load {split} {size:?}"), &mut findings, || load(&source, split, size).map(|_| ())));
        }
        let peak = PEAK.load(Ordering::Relaxed).saturating_sub(baseline);
        for finding in &mut findings[before..] {
            finding.what = format!("{} [{}: {}]", finding.what, fixture.name, described.join("; "));
        }
        // What the readers promise: no more than deflate's ratio over the bytes present,
        // plus a fixed slack for buffers, decoders and threads.
        let bound = 1032 * input_bytes + (64 << 20);
        if peak > bound {
            findings
                .push(Finding { case, what: format!("allocated {peak} bytes for {input_bytes} bytes of input [{}: {}]", fixture.name, described.join("; ")) });
        }
        if peak > worst.0 {
            worst = (peak, input_bytes, case);
        }
        for result in results {
            match result {
                Ok(()) => oks += 1,
                Err(_) => errs += 1,
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    let elapsed = started.elapsed();
    println!(
        "{cases} cases (seeds {first_seed}..{}) over {} fixtures ({} Fashion-MNIST pixels) in {:.1} s: {oks} calls Ok, {errs} Err, {} findings; \
         largest peak {} bytes (case {}, {} input bytes), largest single allocation {} bytes",
        first_seed + cases,
        fixtures.len(),
        if real { "real" } else { "generated, not" },
        elapsed.as_secs_f64(),
        findings.len(),
        worst.0,
        worst.2,
        worst.1,
        LARGEST.load(Ordering::Relaxed),
    );
    for finding in &findings {
        println!("case {}: {}", finding.case, finding.what);
    }
    assert!(findings.is_empty(), "{} cases found panics or allocations past the bound (above)", findings.len());
}

#[test]
fn a_gzip_bomb_behind_a_small_idx_header_is_not_inflated() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // A header promising 4 images of 2x2 pixels, then 256 MiB of zeros (a 256 KiB file).
    // The old code inflated all of it before looking at the header.
    let dir = tempfile::tempdir().unwrap();
    let mut raw = vec![0, 0, 0x08, 3];
    for d in [4u32, 2, 2] {
        raw.extend_from_slice(&d.to_be_bytes());
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&raw).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        encoder.write_all(&zeros).unwrap();
    }
    std::fs::write(dir.path().join("train-images-idx3-ubyte.gz"), encoder.finish().unwrap()).unwrap();
    std::fs::write(dir.path().join("train-labels-idx1-ubyte"), [0, 0, 8, 1, 0, 0, 0, 4, 0, 1, 0, 1]).unwrap();
    drop(zeros);

    let baseline = LIVE.load(Ordering::Relaxed);
    PEAK.store(baseline, Ordering::Relaxed);
    let err = datasets::load_idx_split(dir.path(), Split::Train).unwrap_err().to_string();
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(baseline);
    assert!(err.contains("header promises 16 data bytes, file holds more"), "{err}");
    assert!(peak < 1 << 20, "allocated {peak} bytes");
}
