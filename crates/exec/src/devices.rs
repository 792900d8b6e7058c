//! The device inventory: the GPUs stages can be placed on, detected with `nvidia-smi` or given
//! by the user (`--devices gpu:0=80GiB,gpu:1=80GiB`, or `cpu` for none) so that placement can be
//! exercised on machines without a GPU; and the host's CPU count and memory.

use std::fmt;
use std::process::Command;

use serde::Serialize;
use sluice_plan::ByteSize;

/// One GPU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Gpu {
    /// The index the driver uses (what `CUDA_VISIBLE_DEVICES` names).
    pub id: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Total memory in bytes, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_total: Option<u64>,
    /// Free memory in bytes when sluice started, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_free: Option<u64>,
}

impl Gpu {
    /// Free memory, or total memory when only that is known.
    pub fn memory_available(&self) -> Option<u64> {
        self.memory_free.or(self.memory_total)
    }
}

/// What this machine offers stages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Inventory {
    /// Logical CPUs.
    pub cpus: usize,
    /// Host memory in bytes, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    pub gpus: Vec<Gpu>,
    /// Where the GPU list came from: `nvidia-smi`, `--devices`, `SLUICE_DEVICES`, or `none`.
    pub source: String,
}

impl fmt::Display for Gpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gpu:{}", self.id)
    }
}

impl Inventory {
    /// The host, with GPUs from `nvidia-smi` when it is installed and answers.
    pub fn detect() -> Inventory {
        Inventory::detect_with("", Vec::new)
    }

    /// The host, with GPUs from `nvidia-smi`; when it is missing or lists none, from `probe`
    /// (the binary passes the CUDA driver's list when built with the `cuda` feature), recorded
    /// as coming from `probe_name`.
    pub fn detect_with(probe_name: &str, probe: impl FnOnce() -> Vec<Gpu>) -> Inventory {
        let smi = visible(
            detect_gpus(),
            std::env::var("CUDA_VISIBLE_DEVICES").ok().as_deref(),
        );
        let (gpus, source) = if !smi.is_empty() {
            (smi, "nvidia-smi")
        } else {
            let probed = probe();
            if probed.is_empty() {
                (probed, "none")
            } else {
                (probed, probe_name)
            }
        };
        Inventory::host(gpus, source)
    }

    /// The host, with the GPUs a `--devices` value lists.
    pub fn given(spec: &str, source: &str) -> Result<Inventory, String> {
        Ok(Inventory::host(parse_devices(spec)?, source))
    }

    fn host(gpus: Vec<Gpu>, source: &str) -> Inventory {
        Inventory {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory: host_memory(),
            gpus,
            source: source.to_owned(),
        }
    }

    /// `gpu:0, gpu:1` or `none`.
    pub fn gpu_list(&self) -> String {
        if self.gpus.is_empty() {
            return "none".to_owned();
        }
        self.gpus
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Parses `gpu:0=80GiB,gpu:1=80GiB`, `gpu:0,gpu:1` or `cpu` (no GPUs).
pub fn parse_devices(spec: &str) -> Result<Vec<Gpu>, String> {
    let mut gpus: Vec<Gpu> = Vec::new();
    let items: Vec<&str> = spec
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if items.is_empty() {
        return Err(
            "empty device list: write `cpu`, or GPUs like `gpu:0,gpu:1` or `gpu:0=80GiB`".into(),
        );
    }
    for item in items {
        if item.eq_ignore_ascii_case("cpu") {
            continue;
        }
        let (device, memory) = match item.split_once('=') {
            Some((d, m)) => (d.trim(), Some(ByteSize::parse(m)?.0)),
            None => (item, None),
        };
        let id = device
            .strip_prefix("gpu:")
            .or_else(|| device.strip_prefix("cuda:"))
            .and_then(|n| n.parse::<u32>().ok())
            .ok_or_else(|| {
                format!("invalid device `{item}`: write `gpu:N` or `gpu:N=80GiB`, or `cpu`")
            })?;
        if gpus.iter().any(|g| g.id == id) {
            return Err(format!("device gpu:{id} is listed twice"));
        }
        gpus.push(Gpu {
            id,
            name: None,
            memory_total: memory,
            memory_free: memory,
        });
    }
    Ok(gpus)
}

/// Parses `nvidia-smi --query-gpu=index,name,memory.total,memory.used --format=csv,noheader`.
pub fn parse_nvidia_smi(text: &str) -> Vec<Gpu> {
    let mib = |s: &str| -> Option<u64> {
        let n: u64 = s.trim().trim_end_matches("MiB").trim().parse().ok()?;
        Some(n << 20)
    };
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let [index, name, total, used] = fields.as_slice() else {
                return None;
            };
            let total = mib(total);
            let used = mib(used);
            Some(Gpu {
                id: index.parse().ok()?,
                name: Some((*name).to_owned()),
                memory_total: total,
                memory_free: total.zip(used).map(|(t, u)| t.saturating_sub(u)),
            })
        })
        .collect()
}

/// The GPUs of `nvidia-smi`'s list (which ignores `CUDA_VISIBLE_DEVICES`) that
/// `CUDA_VISIBLE_DEVICES` leaves visible when it lists indices: a sluice started on part of a
/// machine places stages on that part only. Other forms (UUIDs) are left to the driver.
fn visible(gpus: Vec<Gpu>, cuda_visible: Option<&str>) -> Vec<Gpu> {
    match cuda_visible.and_then(sluice_stage::parse_cuda_visible) {
        Some(ids) => gpus.into_iter().filter(|g| ids.contains(&g.id)).collect(),
        None => gpus,
    }
}

fn detect_gpus() -> Vec<Gpu> {
    let out = Command::new("nvidia-smi")
        .args([
            "--query-gpu=index,name,memory.total,memory.used",
            "--format=csv,noheader",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => parse_nvidia_smi(&String::from_utf8_lossy(&o.stdout)),
        _ => Vec::new(),
    }
}

fn host_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_lists() {
        let g = parse_devices("gpu:0=80GiB, gpu:1=40GiB").unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g[1].id, 1);
        assert_eq!(g[1].memory_free, Some(40 << 30));
        assert_eq!(parse_devices("gpu:0,gpu:3").unwrap()[1].id, 3);
        assert!(parse_devices("cpu").unwrap().is_empty());
        assert!(
            parse_devices("tpu:0")
                .unwrap_err()
                .contains("invalid device `tpu:0`")
        );
        assert!(parse_devices("gpu:0,gpu:0").unwrap_err().contains("twice"));
        assert!(
            parse_devices("gpu:0=lots")
                .unwrap_err()
                .contains("invalid size")
        );
        assert!(parse_devices("").is_err());
    }

    #[test]
    fn cuda_visible_devices_narrows_the_inventory() {
        let all = parse_devices("gpu:0,gpu:1,gpu:2").unwrap();
        let ids = |g: Vec<Gpu>| g.iter().map(|g| g.id).collect::<Vec<_>>();
        assert_eq!(ids(visible(all.clone(), None)), [0, 1, 2]);
        assert_eq!(ids(visible(all.clone(), Some("2, 0"))), [0, 2]);
        assert!(visible(all.clone(), Some("")).is_empty());
        assert_eq!(ids(visible(all, Some("GPU-1a2b"))), [0, 1, 2]);
    }

    #[test]
    fn parses_nvidia_smi() {
        let g = parse_nvidia_smi(
            "0, NVIDIA H100 80GB HBM3, 81559 MiB, 1024 MiB\n1, NVIDIA H100 80GB HBM3, 81559 MiB, 0 MiB\n",
        );
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].name.as_deref(), Some("NVIDIA H100 80GB HBM3"));
        assert_eq!(g[0].memory_total, Some(81559 << 20));
        assert_eq!(g[0].memory_free, Some((81559 - 1024) << 20));
        assert!(parse_nvidia_smi("garbage\n").is_empty());
    }
}
