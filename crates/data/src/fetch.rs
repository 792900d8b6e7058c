//! `url:` sources: downloaded once into the stage's work directory and verified against the
//! digest the workflow pins them by, so that a URL can never silently change a result.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::Digest as _;
use sluice_stage::StageError;

/// The digest a URL source is pinned by: lowercase hex.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pin {
    Sha256(String),
    Blake3(String),
}

impl Pin {
    fn algorithm(&self) -> &'static str {
        match self {
            Pin::Sha256(_) => "sha256",
            Pin::Blake3(_) => "blake3",
        }
    }

    fn hex(&self) -> &str {
        match self {
            Pin::Sha256(h) | Pin::Blake3(h) => h,
        }
    }
}

/// Whether `hex` looks like a 256-bit digest.
pub fn is_digest(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Hashes everything written through it with the pinned algorithm.
enum Hasher {
    Sha256(Box<sha2::Sha256>),
    Blake3(Box<blake3::Hasher>),
}

impl Hasher {
    fn new(pin: &Pin) -> Hasher {
        match pin {
            Pin::Sha256(_) => Hasher::Sha256(Box::default()),
            Pin::Blake3(_) => Hasher::Blake3(Box::default()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Blake3(h) => {
                h.update(bytes);
            }
        }
    }

    fn hex(self) -> String {
        match self {
            Hasher::Sha256(h) => h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
            Hasher::Blake3(h) => h.finalize().to_hex().to_string(),
        }
    }
}

/// Copies `from` into `to` (when given) and returns the digest of what passed.
fn copy_hashing(pin: &Pin, mut from: impl Read, mut to: Option<&mut File>) -> io::Result<String> {
    let mut hasher = Hasher::new(pin);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        if let Some(to) = to.as_deref_mut() {
            to.write_all(&buf[..n])?;
        }
    }
    Ok(hasher.hex())
}

fn verify(url: &str, pin: &Pin, actual: &str) -> Result<(), StageError> {
    if actual.eq_ignore_ascii_case(pin.hex()) {
        Ok(())
    } else {
        Err(StageError::failed(format!(
            "{url}: {} mismatch: the workflow pins {}, the download has {actual}",
            pin.algorithm(),
            pin.hex()
        )))
    }
}

/// A local file with a verified digest: the file behind a `file://` URL, or the download of an
/// http(s) URL kept under `work_dir/downloads`.
pub fn fetch(url: &str, pin: &Pin, work_dir: &Path) -> Result<PathBuf, StageError> {
    if let Some(path) = url.strip_prefix("file://") {
        let path = PathBuf::from(percent_decode(path));
        let file =
            File::open(&path).map_err(|e| StageError::failed(format!("cannot read {url}: {e}")))?;
        let actual = copy_hashing(pin, file, None)
            .map_err(|e| StageError::failed(format!("cannot read {url}: {e}")))?;
        verify(url, pin, &actual)?;
        return Ok(path);
    }

    let downloads = work_dir.join("downloads");
    let target = downloads.join(format!("{}-{}", pin.algorithm(), pin.hex().to_lowercase()));
    if let Ok(file) = File::open(&target) {
        // A previous run's download: trusted only if it still verifies.
        if copy_hashing(pin, file, None).is_ok_and(|a| a.eq_ignore_ascii_case(pin.hex())) {
            return Ok(target);
        }
        let _ = std::fs::remove_file(&target);
    }
    std::fs::create_dir_all(&downloads)
        .map_err(|e| StageError::failed(format!("cannot create {}: {e}", downloads.display())))?;
    let partial = target.with_extension("partial");
    let mut file = File::create(&partial)
        .map_err(|e| StageError::failed(format!("cannot create {}: {e}", partial.display())))?;
    let actual = download(url, pin, &mut file);
    drop(file);
    let result = actual.and_then(|actual| verify(url, pin, &actual));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, &target)
        .map_err(|e| StageError::failed(format!("cannot store the download of {url}: {e}")))?;
    Ok(target)
}

#[cfg(feature = "url")]
fn download(url: &str, pin: &Pin, to: &mut File) -> Result<String, StageError> {
    let failed =
        |e: &dyn std::fmt::Display| StageError::failed(format!("cannot download {url}: {e}"));
    let response = ureq::get(url).call().map_err(|e| failed(&e))?;
    let reader = response.into_body().into_reader();
    copy_hashing(pin, reader, Some(to)).map_err(|e| failed(&e))
}

#[cfg(not(feature = "url"))]
fn download(url: &str, _pin: &Pin, _to: &mut File) -> Result<String, StageError> {
    Err(StageError::failed(format!(
        "cannot download {url}: this build reads only file:// URLs (cargo feature `url` is off)"
    )))
}

/// Decodes `%20` and friends in a `file://` path.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2]))
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("/a%20b/c%2"), "/a b/c%2");
        assert_eq!(percent_decode("/plain"), "/plain");
    }
}
