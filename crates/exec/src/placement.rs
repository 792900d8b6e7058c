//! Placement: which stage may start now, and on what. CPU slots (`-j N`), host memory and GPUs are
//! reserved while a stage runs and given back when it ends. GPUs are given to one stage at a time,
//! best fit first (the free devices with the least memory that still satisfy the request). A
//! request that can never be met is found before anything runs ([`Pool::feasible`]), so the
//! scheduler never waits for the impossible.

use sluice_plan::{ByteSize, Needs};

use crate::devices::Inventory;

/// What a running stage holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub cpu: u32,
    pub memory: u64,
    pub gpus: Vec<u32>,
    /// A GPU stage running on the CPU because the machine has no GPU (`fallback: cpu`).
    pub fallback: bool,
}

impl Grant {
    /// `cpu`, `gpu:1` or `gpu:0,1`: what the lockfile and summary record.
    pub fn device(&self) -> String {
        if self.gpus.is_empty() {
            "cpu".to_owned()
        } else {
            let ids: Vec<String> = self.gpus.iter().map(u32::to_string).collect();
            format!("gpu:{}", ids.join(","))
        }
    }

    /// The value of `CUDA_VISIBLE_DEVICES` for the command, if it should be set.
    pub fn cuda_visible_devices(&self) -> Option<String> {
        if self.fallback {
            return Some(String::new());
        }
        (!self.gpus.is_empty()).then(|| {
            self.gpus
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        })
    }
}

/// The free resources.
#[derive(Debug)]
pub struct Pool {
    slots: u32,
    free_slots: u32,
    memory: Option<u64>,
    reserved_memory: u64,
    /// (id, available memory, busy)
    gpus: Vec<(u32, Option<u64>, bool)>,
}

impl Pool {
    pub fn new(jobs: usize, inventory: &Inventory) -> Pool {
        let slots = u32::try_from(jobs.max(1)).unwrap_or(u32::MAX);
        Pool {
            slots,
            free_slots: slots,
            memory: inventory.memory,
            reserved_memory: 0,
            gpus: inventory
                .gpus
                .iter()
                .map(|g| (g.id, g.memory_available(), false))
                .collect(),
        }
    }

    fn cpu_for(&self, needs: &Needs) -> u32 {
        needs.cpu.clamp(1, self.slots)
    }

    fn fits(memory: Option<u64>, wanted: Option<u64>) -> bool {
        match (memory, wanted) {
            (Some(have), Some(want)) => have >= want,
            _ => true,
        }
    }

    /// Why `needs` can never be met on this machine, if it cannot.
    pub fn feasible(&self, needs: &Needs, inventory: &Inventory) -> Result<(), String> {
        if let (Some(want), Some(have)) = (needs.memory, self.memory)
            && want > have
        {
            return Err(format!(
                "it asks for {} of memory and this machine has {}",
                ByteSize(want),
                ByteSize(have)
            ));
        }
        if needs.gpu == 0 {
            return Ok(());
        }
        let plural = |n: u32| if n == 1 { "GPU" } else { "GPUs" };
        if self.gpus.is_empty() {
            if needs.fallback_cpu {
                return Ok(());
            }
            return Err(format!(
                "it asks for {} {} and the device inventory has none (from {})",
                needs.gpu,
                plural(needs.gpu),
                inventory.source
            ));
        }
        let usable = self
            .gpus
            .iter()
            .filter(|(_, mem, _)| Pool::fits(*mem, needs.gpu_memory))
            .count();
        if (usable as u64) < u64::from(needs.gpu) {
            let with = needs
                .gpu_memory
                .map(|m| format!(" with {} each", ByteSize(m)))
                .unwrap_or_default();
            return Err(format!(
                "it asks for {} {}{with} and the device inventory has {} that qualify ({})",
                needs.gpu,
                plural(needs.gpu),
                usable,
                inventory.gpu_list()
            ));
        }
        Ok(())
    }

    /// Reserves what `needs` asks for, if it is free now.
    pub fn try_take(&mut self, needs: &Needs) -> Option<Grant> {
        let cpu = self.cpu_for(needs);
        if cpu > self.free_slots {
            return None;
        }
        let memory = needs.memory.unwrap_or(0);
        if let Some(total) = self.memory
            && self.reserved_memory + memory > total
            && self.reserved_memory > 0
        {
            return None;
        }
        let mut gpus = Vec::new();
        let mut fallback = false;
        if needs.gpu > 0 {
            if self.gpus.is_empty() {
                fallback = needs.fallback_cpu;
                if !fallback {
                    return None;
                }
            } else {
                let mut free: Vec<(usize, Option<u64>)> = self
                    .gpus
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, mem, busy))| !busy && Pool::fits(*mem, needs.gpu_memory))
                    .map(|(i, (_, mem, _))| (i, *mem))
                    .collect();
                if free.len() < needs.gpu as usize {
                    return None;
                }
                // Best fit: the smallest devices that satisfy the request, leaving big ones free.
                free.sort_by_key(|(i, mem)| (mem.unwrap_or(u64::MAX), *i));
                for (i, _) in free.into_iter().take(needs.gpu as usize) {
                    self.gpus[i].2 = true;
                    gpus.push(self.gpus[i].0);
                }
                gpus.sort_unstable();
            }
        }
        self.free_slots -= cpu;
        self.reserved_memory += memory;
        Some(Grant {
            cpu,
            memory,
            gpus,
            fallback,
        })
    }

    pub fn give_back(&mut self, grant: &Grant) {
        self.free_slots = (self.free_slots + grant.cpu).min(self.slots);
        self.reserved_memory = self.reserved_memory.saturating_sub(grant.memory);
        for id in &grant.gpus {
            if let Some(g) = self.gpus.iter_mut().find(|(gid, _, _)| gid == id) {
                g.2 = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::parse_devices;

    fn inventory(devices: &str) -> Inventory {
        Inventory {
            cpus: 8,
            memory: Some(16 << 30),
            gpus: parse_devices(devices).unwrap(),
            source: "--devices".into(),
        }
    }

    fn needs(cpu: u32, gpu: u32, gpu_memory: Option<u64>, fallback_cpu: bool) -> Needs {
        Needs {
            cpu,
            gpu,
            gpu_memory,
            fallback_cpu,
            ..Needs::default()
        }
    }

    #[test]
    fn cpu_slots_bound_concurrency() {
        let inv = inventory("cpu");
        let mut pool = Pool::new(2, &inv);
        let a = pool.try_take(&needs(1, 0, None, false)).unwrap();
        let b = pool.try_take(&needs(1, 0, None, false)).unwrap();
        assert_eq!(pool.try_take(&needs(1, 0, None, false)), None);
        pool.give_back(&a);
        // Asking for more slots than exist means all of them.
        assert_eq!(pool.try_take(&needs(5, 0, None, false)), None);
        pool.give_back(&b);
        assert_eq!(pool.try_take(&needs(5, 0, None, false)).unwrap().cpu, 2);
    }

    #[test]
    fn gpus_are_exclusive_and_best_fit() {
        let inv = inventory("gpu:0=80GiB,gpu:1=24GiB,gpu:2=40GiB");
        let mut pool = Pool::new(8, &inv);
        let small = pool.try_take(&needs(1, 1, Some(20 << 30), false)).unwrap();
        assert_eq!(small.device(), "gpu:1");
        assert_eq!(small.cuda_visible_devices().as_deref(), Some("1"));
        let big = pool.try_take(&needs(1, 1, Some(30 << 30), false)).unwrap();
        assert_eq!(big.device(), "gpu:2");
        assert_eq!(pool.try_take(&needs(1, 2, None, false)), None);
        pool.give_back(&small);
        let two = pool.try_take(&needs(1, 2, None, false)).unwrap();
        assert_eq!(two.device(), "gpu:0,1");
        assert_eq!(two.cuda_visible_devices().as_deref(), Some("0,1"));
    }

    #[test]
    fn impossible_requests_are_found_up_front() {
        let inv = inventory("gpu:0,gpu:1");
        let pool = Pool::new(2, &inv);
        let err = pool.feasible(&needs(1, 3, None, false), &inv).unwrap_err();
        assert_eq!(
            err,
            "it asks for 3 GPUs and the device inventory has 2 that qualify (gpu:0, gpu:1)"
        );
        assert!(pool.feasible(&needs(1, 2, None, false), &inv).is_ok());
        let inv = inventory("gpu:0=16GiB");
        let pool = Pool::new(2, &inv);
        let err = pool
            .feasible(&needs(1, 1, Some(20 << 30), false), &inv)
            .unwrap_err();
        assert!(err.contains("with 20GiB each"), "{err}");
        let mut memory = needs(1, 0, None, false);
        memory.memory = Some(64 << 30);
        assert!(
            pool.feasible(&memory, &inv)
                .unwrap_err()
                .contains("64GiB of memory")
        );
    }

    #[test]
    fn fallback_runs_on_the_cpu_only_without_gpus() {
        let inv = inventory("cpu");
        let mut pool = Pool::new(2, &inv);
        assert!(
            pool.feasible(&needs(1, 1, None, false), &inv)
                .unwrap_err()
                .contains("has none")
        );
        assert!(pool.feasible(&needs(1, 1, None, true), &inv).is_ok());
        let g = pool.try_take(&needs(1, 1, None, true)).unwrap();
        assert_eq!(g.device(), "cpu");
        assert_eq!(g.cuda_visible_devices().as_deref(), Some(""));
    }
}
