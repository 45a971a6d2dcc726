//! Pretrained weights uploaded through the API: `PUT /api/v1/weights/{file}.safetensors`
//! streams the body into `$FORGETLAB_DATA_DIR/datasets/weights/` (inside a data root, so a
//! launch names it `weights/{file}`), bounded by `FORGETLAB_MAX_UPLOAD_MB`, checked to be a
//! safetensors file, and never overwriting one already there. `GET /api/v1/weights` lists them.

use std::path::{Path as FsPath, PathBuf};

use axum::body::Body;
use axum::extract::State;
// Path parameters whose refusals are JSON, like every API answer.
use super::PathParams as Path;
use axum::http::StatusCode;
use axum::Json;
use futures::StreamExt;
use protocol::Failure;
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use super::{ApiResult, AppState};
use crate::auth::http::Caller;
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
    if ok { Ok(()) } else { Err(Failure::bad_request(format!("{file:?} is not a weights file name: use letters, digits, '.', '_' or '-', ending in .safetensors"))) }
}

/// A safetensors file starts with the length of its JSON header (u64, little-endian), then the
/// header itself.
fn check_safetensors(head: &[u8], total: u64) -> Result<(), String> {
    let Some(length) = head.get(..8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes"))) else {
        return Err("it is shorter than a safetensors header (8 bytes)".into());
    };
    if length == 0 || length > 100 * 1024 * 1024 || 8 + length > total {
        return Err(format!("its header length ({length} bytes) does not fit the file ({total} bytes)"));
    }
    if head.get(8) != Some(&b'{') {
        return Err("its header is not JSON".into());
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
pub async fn upload(State(state): State<AppState>, Caller(who): Caller, Path(file): Path<String>, body: Body) -> ApiResult<(StatusCode, Json<Weights>)> {
    check_name(&file)?;
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
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Failure::conflict(format!("weights/{file} exists already; upload under another name"))),
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
    let mut head = vec![0u8; 9];
    let mut file = tokio::fs::File::open(path).await.map_err(|e| e.to_string())?;
    let read = file.read(&mut head).await.map_err(|e| e.to_string())?;
    head.truncate(read);
    check_safetensors(&head, total)
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
        assert!(check_safetensors(&good[..9], 10).is_ok());
        assert!(check_safetensors(b"\x02\0\0\0\0\0\0\0[", 10).is_err());
        assert!(check_safetensors(&good[..9], 9).is_err(), "header longer than the file");
        assert!(check_safetensors(b"abc", 3).is_err());
    }
}
