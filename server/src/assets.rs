//! The browser bundle (`pkg/`: wasm, JS, CSS), served compressed once at the best levels.
//!
//! The wasm is most of what a page costs to load (bench/RESULTS.md), and the response layer's
//! on-the-fly gzip is tuned for pages, not for a file of megabytes sent unchanged to every
//! browser.
//! So each bundle file gets two companions beside it, brotli at quality 11 (`forgetlab.wasm.br`)
//! and gzip at level 9 (`.gz`), written in the background when missing or older than the file
//! (that is, after every frontend build; seconds), and `ServeDir` sends the one the
//! browser accepts. Browsers offer brotli over HTTPS and to localhost only; elsewhere they get
//! the gzip copy.
//!
//! A companion older than its file is never sent: until it is rewritten the request is answered
//! from the file itself, compressed on the fly like a page.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use tower::ServiceExt;
use tower_http::services::ServeDir;

/// Files worth compressing; the bundle's type declarations and anything else are sent as they are.
const COMPRESSED_EXTENSIONS: [&str; 3] = ["wasm", "js", "css"];

/// brotli's best quality and its largest window (16 MB): smallest output; 4 s for the release
/// wasm (1.7 MB, brotli and gzip together) on this project's machine, once per build.
const BROTLI_QUALITY: i32 = 11;
const BROTLI_WINDOW_BITS: i32 = 24;

/// A companion file: its suffix and the `Accept-Encoding` token that asks for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Companion {
    Brotli,
    Gzip,
}

impl Companion {
    const ALL: [Companion; 2] = [Companion::Brotli, Companion::Gzip];

    fn suffix(self) -> &'static str {
        match self {
            Companion::Brotli => "br",
            Companion::Gzip => "gz",
        }
    }

    fn token(self) -> &'static str {
        match self {
            Companion::Brotli => "br",
            Companion::Gzip => "gzip",
        }
    }

    fn path(self, file: &Path) -> PathBuf {
        let mut name = file.as_os_str().to_owned();
        name.push(".");
        name.push(self.suffix());
        PathBuf::from(name)
    }

    fn compress(self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Companion::Brotli => {
                let params =
                    brotli::enc::BrotliEncoderParams { quality: BROTLI_QUALITY, lgwin: BROTLI_WINDOW_BITS, size_hint: data.len(), ..Default::default() };
                let mut out = Vec::with_capacity(data.len() / 3);
                brotli::BrotliCompress(&mut &data[..], &mut out, &params)?;
                Ok(out)
            }
            Companion::Gzip => {
                let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 2), flate2::Compression::best());
                encoder.write_all(data)?;
                encoder.finish()
            }
        }
    }
}

/// The `pkg/` folder and the companions being written now.
struct Assets {
    dir: PathBuf,
    serve: ServeDir,
    writing: Mutex<HashSet<String>>,
}

/// The routes under `/pkg`. Starts writing every missing or stale companion at once, so the
/// first browser already gets them.
pub fn router(pkg_dir: PathBuf) -> Router {
    let assets = Arc::new(Assets { serve: ServeDir::new(&pkg_dir).precompressed_br().precompressed_gzip(), dir: pkg_dir, writing: Mutex::default() });
    if let Ok(entries) = std::fs::read_dir(&assets.dir) {
        for name in entries.flatten().filter_map(|entry| entry.file_name().into_string().ok()) {
            if compressible(&name) && fresh_companions(&assets.dir.join(&name)).stale_or_missing() {
                write_companions(&assets, name);
            }
        }
    }
    Router::new().fallback(serve).with_state(assets)
}

async fn serve(State(assets): State<Arc<Assets>>, mut request: Request) -> Response {
    let name = request.uri().path().trim_start_matches('/').to_owned();
    let vary = compressible(&name);
    if vary {
        let fresh = fresh_companions(&assets.dir.join(&name));
        if fresh.stale_or_missing() {
            write_companions(&assets, name);
        }
        // ServeDir picks a companion by the request's Accept-Encoding alone: offer it only
        // the fresh ones. The response layer saw the browser's own header already and
        // compresses the plain file if nothing fresh is left.
        let accepted = request.headers().get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let offered = accepted
            .split(',')
            .map(str::trim)
            .filter(|coding| fresh.fresh.iter().any(|c| coding.split(';').next().is_some_and(|token| token.trim() == c.token())))
            .collect::<Vec<_>>()
            .join(", ");
        let offered = if offered.is_empty() {
            HeaderValue::from_static("identity")
        } else {
            HeaderValue::from_str(&offered).unwrap_or(HeaderValue::from_static("identity"))
        };
        request.headers_mut().insert(header::ACCEPT_ENCODING, offered);
    }
    let mut response = match assets.serve.clone().oneshot(request).await {
        Ok(response) => response.map(Body::new),
        Err(infallible) => match infallible {},
    };
    // The answer depends on Accept-Encoding: caches must keep one copy per encoding.
    if vary && !response.headers().contains_key(header::VARY) {
        response.headers_mut().insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    response
}

/// A bundle file's own name: no folders, no hidden files, one of the compressed types.
fn compressible(name: &str) -> bool {
    !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && name.rsplit_once('.').is_some_and(|(_, extension)| COMPRESSED_EXTENSIONS.contains(&extension))
}

/// Which companions of `file` are at least as new as it.
struct Freshness {
    fresh: Vec<Companion>,
}

impl Freshness {
    fn stale_or_missing(&self) -> bool {
        self.fresh.len() < Companion::ALL.len()
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn fresh_companions(file: &Path) -> Freshness {
    let Some(source) = modified(file) else { return Freshness { fresh: Vec::new() } };
    let fresh = Companion::ALL.into_iter().filter(|c| modified(&c.path(file)).is_some_and(|written| written >= source)).collect();
    Freshness { fresh }
}

/// Writes `name`'s companions on a blocking thread, unless that is under way already.
fn write_companions(assets: &Arc<Assets>, name: String) {
    if !assets.writing.lock().unwrap_or_else(|e| e.into_inner()).insert(name.clone()) {
        return;
    }
    let assets = assets.clone();
    tokio::task::spawn_blocking(move || {
        let file = assets.dir.join(&name);
        if let Err(error) = write_companions_now(&file) {
            tracing::warn!("compressing {}: {error} (it is sent compressed on the fly instead)", file.display());
        }
        assets.writing.lock().unwrap_or_else(|e| e.into_inner()).remove(&name);
    });
}

fn write_companions_now(file: &Path) -> std::io::Result<()> {
    let before = modified(file);
    let data = std::fs::read(file)?;
    for companion in Companion::ALL {
        let target = companion.path(file);
        let partial = target.with_extension(format!("{}.partial", companion.suffix()));
        std::fs::write(&partial, companion.compress(&data)?)?;
        // A rename, so ServeDir never sends a half-written file.
        std::fs::rename(&partial, &target)?;
    }
    // Rebuilt while being read: the companions may hold the old bundle; drop them, the next
    // request writes them again.
    if modified(file) != before {
        for companion in Companion::ALL {
            let _ = std::fs::remove_file(companion.path(file));
        }
        return Ok(());
    }
    tracing::info!("{}: brotli and gzip copies written", file.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_bundle_names_are_compressed() {
        assert!(compressible("forgetlab.wasm"));
        assert!(compressible("forgetlab.js"));
        assert!(compressible("forgetlab.css"));
        assert!(!compressible("forgetlab.d.ts"));
        assert!(!compressible("forgetlab.wasm.br"));
        assert!(!compressible("../forgetlab.wasm"));
        assert!(!compressible("sub/forgetlab.wasm"));
        assert!(!compressible(".hidden.js"));
    }

    #[test]
    fn companions_decompress_to_the_file_and_go_stale_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("forgetlab.js");
        let text = "console.log('forgetlab');\n".repeat(500);
        std::fs::write(&file, &text).unwrap();
        assert!(fresh_companions(&file).fresh.is_empty());
        write_companions_now(&file).unwrap();
        assert_eq!(fresh_companions(&file).fresh, Companion::ALL.to_vec());

        let mut unbrotli = Vec::new();
        brotli::BrotliDecompress(&mut std::fs::File::open(Companion::Brotli.path(&file)).unwrap(), &mut unbrotli).unwrap();
        assert_eq!(unbrotli, text.as_bytes());
        let mut ungzip = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(std::fs::File::open(Companion::Gzip.path(&file)).unwrap()), &mut ungzip).unwrap();
        assert_eq!(ungzip, text);

        // A rebuilt file, one second newer than its companions (file systems with coarse times).
        let later = SystemTime::now() + std::time::Duration::from_secs(2);
        std::fs::File::options().write(true).open(&file).unwrap().set_modified(later).unwrap();
        assert!(fresh_companions(&file).fresh.is_empty());
    }
}
