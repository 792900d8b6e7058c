//! `sluice serve`: a model bundle (or any model directory) behind the OpenAI-compatible server,
//! with optional A/B variants, until Ctrl-C or SIGTERM. A classifier bundle answers
//! `POST /v1/classify`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use sluice_model::classifier_backend::ClassifierBackend;
use sluice_model::config::Arch;
use sluice_model::deploy::{DEPLOYMENT_JSON, Deployment};
use sluice_model::generate::ModelBackend;
use sluice_serve::{Backend, ServeConfig, Variant, Variants};

use crate::cli::ServeArgs;
use crate::exit;

/// The directory to serve for `dir`: itself, or — for a deployment name's directory
/// (`deployments/support-bot`), which holds versions rather than a model — its newest version.
fn model_dir(dir: &Path) -> Result<PathBuf> {
    if dir.join(sluice_model::hf::CONFIG).exists() {
        return Ok(dir.to_owned());
    }
    let versions = sluice_model::deploy::versions(dir)
        .with_context(|| format!("cannot read the bundles in {}", dir.display()))?;
    let Some((newest, d)) = versions.last() else {
        return Ok(dir.to_owned());
    };
    eprintln!(
        "serving {}: the newest of {} version{} of `{}` ({})",
        newest.display(),
        versions.len(),
        if versions.len() == 1 { "" } else { "s" },
        d.name,
        d.created
    );
    Ok(newest.clone())
}

/// Loads a model directory — a causal LM that generates, or a classifier that answers
/// `/v1/classify` — and names it: a bundle is `<name>/<version>`, any other directory its path
/// as given. A deployment name's directory serves its newest bundle.
fn backend(dir: &Path) -> Result<(String, Arc<dyn Backend>)> {
    let dir = &model_dir(dir)?;
    let record = dir.join(DEPLOYMENT_JSON);
    let name = if record.is_file() {
        let text = std::fs::read_to_string(&record)
            .with_context(|| format!("cannot read {}", record.display()))?;
        let d: Deployment = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a deployment record", record.display()))?;
        format!("{}/{}", d.name, d.version)
    } else {
        dir.display()
            .to_string()
            .trim_end_matches('/')
            .replace(|c: char| !c.is_ascii_graphic(), "_")
    };
    let load = || -> sluice_model::error::Result<Arc<dyn Backend>> {
        Ok(match sluice_model::hf::arch(dir)? {
            Arch::Llama => Arc::new(ModelBackend::open(name.clone(), dir)?),
            Arch::Bert => Arc::new(ClassifierBackend::open(name.clone(), dir)?),
        })
    };
    let backend = load().with_context(|| format!("cannot load the model in {}", dir.display()))?;
    Ok((name, backend))
}

async fn shutdown() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    eprintln!("shutting down: finishing the requests in flight");
}

pub async fn serve(args: ServeArgs) -> Result<u8> {
    let (name, main) = backend(&args.bundle)?;
    let mut others = Vec::new();
    for spec in &args.variants {
        let (path, weight) = sluice_serve::parse_variant(spec)?;
        let (name, backend) = backend(Path::new(&path))?;
        others.push(Variant {
            name,
            weight,
            backend,
        });
    }
    let classifies = main.labels().is_some();
    if let Some(v) = others
        .iter()
        .find(|v| v.backend.labels().is_some() != classifies)
    {
        bail!(
            "variant `{}` {} but `{name}` {}: A/B variants must all generate text or all classify",
            v.name,
            if classifies {
                "generates text"
            } else {
                "is a classifier"
            },
            if classifies {
                "is a classifier"
            } else {
                "generates text"
            },
        );
    }
    let variants = Variants::new(name.clone(), main, others)?;
    let config = ServeConfig {
        host: args.host.clone(),
        port: args.port,
        max_concurrent: args.concurrency,
        max_queue: args.queue,
        seed: args.seed,
        ..ServeConfig::default()
    };
    if config.max_concurrent == 0 {
        bail!("--concurrency must be at least 1");
    }
    let listener = config.bind().await?;
    let addr = listener
        .local_addr()
        .context("cannot read the bound address")?;
    for v in variants.as_slice() {
        eprintln!("model `{}`: {:.0}% of requests", v.name, v.weight * 100.0);
    }
    if classifies {
        eprintln!("a classifier: POST /v1/classify with {{\"model\": …, \"input\": [texts]}}");
    }
    eprintln!("listening on http://{addr}");
    sluice_serve::serve(listener, config, variants, shutdown()).await?;
    Ok(exit::OK)
}
