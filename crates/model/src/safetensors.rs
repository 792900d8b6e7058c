//! Reading and writing safetensors files. Files we write carry `{"format": "pt"}` metadata, which
//! `transformers` requires, and list tensors in name order so that the same weights give the same
//! bytes.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::error::{ModelError, Result};

/// Writes `tensors` (as f32, little-endian) to `path` through a temporary file and a rename.
pub fn save(tensors: &BTreeMap<String, Tensor>, path: &Path) -> Result<()> {
    let mut data: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let bytes: Vec<u8> = t.iter().flat_map(|v| v.to_le_bytes()).collect();
        data.push((name.clone(), bytes, tensors[name].dims().to_vec()));
    }
    let views: Vec<(String, ::safetensors::tensor::TensorView<'_>)> = data
        .iter()
        .map(|(name, bytes, shape)| {
            let view = ::safetensors::tensor::TensorView::new(
                ::safetensors::Dtype::F32,
                shape.clone(),
                bytes,
            )
            .map_err(|e| ModelError::file(path, e))?;
            Ok((name.clone(), view))
        })
        .collect::<Result<_>>()?;
    let mut metadata = HashMap::new();
    metadata.insert("format".to_owned(), "pt".to_owned());
    let tmp = path.with_extension("safetensors.tmp");
    ::safetensors::serialize_to_file(views, Some(metadata), &tmp)
        .map_err(|e| ModelError::file(path, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ModelError::file(path, e))?;
    Ok(())
}

/// Reads every tensor of `path`, converted to f32.
pub fn load(path: &Path, device: &Device) -> Result<BTreeMap<String, Tensor>> {
    let map = candle_core::safetensors::load(path, device)
        .map_err(|e| ModelError::file(path, format!("cannot read safetensors: {e}")))?;
    map.into_iter()
        .map(|(k, v)| Ok((k, v.to_dtype(DType::F32)?)))
        .collect()
}
