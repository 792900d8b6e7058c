//! `base: {hub: org/name}`: a model in the local Hugging Face cache (`$HF_HUB_CACHE`, else
//! `$HF_HOME/hub`, else `~/.cache/huggingface/hub`), found through the hf-hub crate. sluice
//! never downloads weights while a pipeline runs; a model not in the cache is an error that
//! says how to get it.

use std::path::PathBuf;

use hf_hub::{Cache, Repo, RepoType};

use crate::error::{ModelError, Result};

/// The snapshot directory of `name` at `revision` (default `main`).
pub fn resolve(name: &str, revision: Option<&str>) -> Result<PathBuf> {
    let revision = revision.unwrap_or("main");
    let cache = Cache::from_env();
    let repo = cache.repo(Repo::with_revision(
        name.to_owned(),
        RepoType::Model,
        revision.to_owned(),
    ));
    match repo.get("config.json") {
        Some(config) => Ok(config.parent().map(PathBuf::from).unwrap_or_default()),
        None => Err(ModelError::Other(format!(
            "model `{name}` (revision `{revision}`) is not in the Hugging Face cache at {}; sluice does not download weights while a pipeline runs: fetch it once with `huggingface-cli download {name}`, or point `base:` at a local directory (`base: models/{}`)",
            cache.path().display(),
            name.rsplit('/').next().unwrap_or(name)
        ))),
    }
}
