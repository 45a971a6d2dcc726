//! Pretrained weights uploaded through the API: `PUT /api/v1/weights/{file}.safetensors`
//! streams the body into `$FORGETLAB_DATA_DIR/datasets/weights/` (inside a data root, so a
//! launch names it `weights/{file}`), bounded by `FORGETLAB_MAX_UPLOAD_MB`, checked to be a
//! safetensors file, and never overwriting one already there. `GET /api/v1/weights` lists them.

use std::path::{Path as FsPath, PathBuf};

use axum::body::Body;
use axum::extract::State;
// Path parameters whose refusals are JSON, like every API answer.
use super::PathParams as Path;
use axum::Json;
use axum::http::StatusCode;
use futures::StreamExt;
use protocol::Failure;
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use super::Caller;
use super::{ApiResult, AppState};
use crate::db::internal;

#[derive(Serialize)]
pub struct Weights {
    /// What a launch's `weights` field names.
    pub path: String,
    pub bytes: u64,
}

/// `x.safetensors`: letters, digits, '.', '_' and '-', starting with a letter or digit.
fn check_name(file: &str) -> Result<(), Failure> {
    let stem = file.strip_suffix(".safetensors").unwrap_or_default();
    let ok = !stem.is_empty()
        && file.len() <= 128
        && stem.starts_with(|c: char| c.is_ascii_alphanumeric())
        && stem.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Failure::bad_request(format!("{file:?} is not a weights file name: use letters, digits, '.', '_' or '-', ending in .safetensors")))
    }
}

/// The largest safetensors header read (the format's own limit is 100 MB; a real model's is a
/// few hundred kB).
const MAX_HEADER: u64 = 16 * 1024 * 1024;

/// The length of a safetensors file's JSON header: the file starts with it (u64,
/// little-endian), then the header itself.
fn header_length(head: &[u8], total: u64) -> Result<u64, String> {
    let Some(length) = head.get(..8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes"))) else {
        return Err("it is shorter than a safetensors header (8 bytes)".into());
    };
    if length < 2 || length > MAX_HEADER || 8 + length > total {
        return Err(format!("its header length ({length} bytes) does not fit the file ({total} bytes) or passes {MAX_HEADER} bytes"));
    }
    if head.get(8) != Some(&b'{') {
        return Err("its header is not JSON".into());
    }
    Ok(length)
}

/// Checks a safetensors header against the file: every tensor has a known dtype, a shape whose
/// size times the dtype's equals its byte range, and a range inside the data that follows the
/// header (issue 19, item 4). The worker reads the file the same way; a member learns here.
fn check_header(header: &[u8], data_bytes: u64) -> Result<(), String> {
    let parsed: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(header).map_err(|e| format!("its header is not a JSON object: {e}"))?;
    for (name, tensor) in parsed.iter().filter(|(name, _)| *name != "__metadata__") {
        let dtype = tensor.get("dtype").and_then(|d| d.as_str()).unwrap_or_default();
        let width: u64 = match dtype {
            "BOOL" | "U8" | "I8" | "F8_E4M3" | "F8_E5M2" => 1,
            "U16" | "I16" | "F16" | "BF16" => 2,
            "U32" | "I32" | "F32" => 4,
            "U64" | "I64" | "F64" => 8,
            other => return Err(format!("tensor {name:?} has dtype {other:?}, which safetensors does not define")),
        };
        let shape: Option<Vec<u64>> = tensor.get("shape").and_then(|s| s.as_array()).and_then(|dims| dims.iter().map(|d| d.as_u64()).collect());
        let offsets: Option<Vec<u64>> = tensor.get("data_offsets").and_then(|s| s.as_array()).and_then(|o| o.iter().map(|d| d.as_u64()).collect());
        let (Some(shape), Some([begin, end])) = (shape, offsets.as_deref().and_then(|o| <[u64; 2]>::try_from(o).ok())) else {
            return Err(format!("tensor {name:?} needs a shape of whole numbers and data_offsets [begin, end]"));
        };
        let bytes = shape.iter().try_fold(width, |n, &d| n.checked_mul(d));
        if begin > end || end > data_bytes || bytes != Some(end - begin) {
            return Err(format!("tensor {name:?} (shape {shape:?}, {dtype}) does not match its bytes {begin}..{end} of the {data_bytes} after the header"));
        }
    }
    Ok(())
}

pub fn weights_dir(data_dir: &FsPath) -> PathBuf {
    data_dir.join("datasets").join("weights")
}

pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<Weights>>> {
    let mut found = Vec::new();
    if let Ok(mut entries) = tokio::fs::read_dir(weights_dir(&state.settings.data_dir)).await {
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".safetensors") && !name.starts_with('.') {
                let bytes = entry.metadata().await.map(|m| m.len()).unwrap_or(0);
                found.push(Weights { path: format!("weights/{name}"), bytes });
            }
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Json(found))
}

/// `PUT /api/v1/weights/{file}`: the body is the file.
pub async fn upload(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(file): Path<String>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Weights>)> {
    check_name(&file)?;
    state.service.disk.admit(&format!("the upload of {file}"), super::content_length(&headers))?;
    let limit = state.settings.max_upload_bytes;
    let dir = weights_dir(&state.settings.data_dir);
    tokio::fs::create_dir_all(&dir).await.map_err(internal)?;
    let target = dir.join(&file);
    if tokio::fs::try_exists(&target).await.unwrap_or(false) {
        return Err(Failure::conflict(format!("weights/{file} exists already; upload under another name")).into());
    }
    let partial = PartFile(dir.join(format!(".{file}.{}.part", crate::queue::new_token())));
    let result = receive(body, &partial.0, limit).await;
    let outcome = match result {
        Ok(bytes) => match check_file(&partial.0, bytes).await {
            Ok(()) => match tokio::fs::hard_link(&partial.0, &target).await {
                Ok(()) => Ok(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    Err(Failure::conflict(format!("weights/{file} exists already; upload under another name")))
                }
                Err(e) => Err(internal(e)),
            },
            Err(message) => Err(Failure::bad_request(format!("{file} is not a safetensors file: {message}"))),
        },
        Err(failure) => Err(failure),
    };
    drop(partial);
    let bytes = outcome?;
    tracing::info!(file, bytes, by = who.name, "weights uploaded");
    Ok((StatusCode::CREATED, Json(Weights { path: format!("weights/{file}"), bytes })))
}

/// An upload's file while it arrives: removed however the upload ends, including when the
/// client goes away mid-body and the request is dropped (issue 19, item 15).
struct PartFile(PathBuf);

impl Drop for PartFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// An upload that sends nothing for this long is given up.
const UPLOAD_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

async fn receive(body: Body, partial: &FsPath, limit: u64) -> Result<u64, Failure> {
    let mut out = tokio::fs::File::create(partial).await.map_err(internal)?;
    let mut stream = body.into_data_stream();
    let mut bytes = 0u64;
    loop {
        let next = tokio::time::timeout(UPLOAD_IDLE, stream.next())
            .await
            .map_err(|_| Failure::new(408, format!("the upload sent nothing for {} s", UPLOAD_IDLE.as_secs())))?;
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| Failure::bad_request(format!("the upload broke off: {e}")))?;
        bytes += chunk.len() as u64;
        if bytes > limit {
            return Err(Failure::new(413, format!("the upload is larger than {} MB (FORGETLAB_MAX_UPLOAD_MB)", limit / (1024 * 1024))));
        }
        out.write_all(&chunk).await.map_err(internal)?;
    }
    out.flush().await.map_err(internal)?;
    Ok(bytes)
}

async fn check_file(path: &FsPath, total: u64) -> Result<(), String> {
    use tokio::io::AsyncReadExt;
    let mut file = tokio::fs::File::open(path).await.map_err(|e| e.to_string())?;
    let mut head = Vec::with_capacity(9);
    (&mut file).take(9).read_to_end(&mut head).await.map_err(|e| e.to_string())?;
    let length = header_length(&head, total)?;
    // Bounded by MAX_HEADER and by the file's size (header_length checked both).
    let mut header = head[8..].to_vec();
    (&mut file).take(length - 1).read_to_end(&mut header).await.map_err(|e| e.to_string())?;
    check_header(&header, total - 8 - length)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_headers() {
        assert!(check_name("resnet18-imagenet.safetensors").is_ok());
        for bad in ["../x.safetensors", ".hidden.safetensors", "x.bin", ".safetensors", "a/b.safetensors", "x y.safetensors"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        let mut good = 2u64.to_le_bytes().to_vec();
        good.extend(b"{}");
        assert_eq!(header_length(&good[..9], 10), Ok(2));
        assert!(header_length(b"\x02\0\0\0\0\0\0\0[", 10).is_err());
        assert!(header_length(&good[..9], 9).is_err(), "header longer than the file");
        assert!(header_length(b"abc", 3).is_err());
        assert!(header_length(&u64::MAX.to_le_bytes(), u64::MAX).is_err(), "no overflow, and no 16 EiB header");
    }

    #[test]
    fn headers_must_match_their_bytes() {
        let header = |json: &str| check_header(json.as_bytes(), 24);
        assert!(header(r#"{"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, "__metadata__": {"a": "b"}}"#).is_ok());
        assert!(header(r#"{"w": {"dtype": "F32", "shape": [2, 4], "data_offsets": [0, 24]}}"#).is_err(), "shape and bytes differ");
        assert!(header(r#"{"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [8, 32]}}"#).is_err(), "past the data");
        assert!(header(r#"{"w": {"dtype": "F32", "shape": [4294967296, 4294967296, 4294967296], "data_offsets": [0, 24]}}"#).is_err(), "overflowing shape");
        assert!(header(r#"{"w": {"dtype": "Q4", "shape": [1], "data_offsets": [0, 1]}}"#).is_err());
        assert!(header(r#"{"w": {"dtype": "U8", "shape": [-1], "data_offsets": [0, 1]}}"#).is_err());
        assert!(header(r#"[1, 2]"#).is_err());
    }
}
